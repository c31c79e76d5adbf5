"""Sentence fingerprints: SHA-256 digests of normalised sentences, so that a mix can be kept free of an evaluation
set whose text may not be redistributed (the held-back test splits, or a user's own benchmark).

A fingerprint file lists one lowercase hex digest per line. A sentence's fingerprint is
`sha256(normalise(s).encode("utf-8"))`, where `normalise` applies Unicode NFKC, lower-cases, and keeps only letters
and digits, so PTB-tokenized and plain forms of a sentence (`do n't` / `don't`) share it; a sentence whose
normalised form is shorter than `MIN_CHARS` has none (such strings are common phrases, not test items). This is the
convention of the fingerprints shipped beside the corpora (`test_fingerprints/README.md`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from writetune.data.errors import DataFormatError
from writetune.data.readers import read_text

MIN_CHARS = 20
SUFFIX = ".sha256"
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def normalise(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def fingerprint(text: str) -> str | None:
    """The sentence's fingerprint, or None when its normalised form is shorter than MIN_CHARS."""
    norm = normalise(text)
    return hashlib.sha256(norm.encode("utf-8")).hexdigest() if len(norm) >= MIN_CHARS else None


def fingerprint_files(path: Path) -> list[Path]:
    """The fingerprint files a recipe entry names: the file itself, or every `*.sha256` file of a directory."""
    return sorted(path.glob(f"*{SUFFIX}")) if path.is_dir() else [path]


def read_fingerprints(path: Path) -> set[str]:
    """The digests of one fingerprint file (blank lines ignored); a line that is not a digest is a
    `DataFormatError` naming the file and line."""
    digests = set()
    for number, line in enumerate(read_text(path).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not _DIGEST_RE.match(line):
            raise DataFormatError(path, number, f"expected a lowercase SHA-256 hex digest, got {line[:40]!r}")
        digests.add(line)
    return digests
