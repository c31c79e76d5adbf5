"""Tokenisation conventions of the corpora, in one place: `detokenize` turns PTB-style tokenized text (`do n't`,
`word .`, `-lrb-`) into plain text for training and prompting, and `tokenize_ptb` does the inverse for scoring model
output against tokenized references (JFLEG, CoNLL-2014, CWEB, GMEG).

`detokenize` first undoes the Penn Treebank conventions that Moses does not know (bracket tokens such as `-lrb-`,
``` `` ``` / `''` quotes, split clitics `n't 's 're 've 'll 'm 'd`, the split possessive `' s`, hyphens split as
`on - air`), then hands the tokens to sacremoses' `MosesDetokenizer` (English), which attaches punctuation and pairs
straight double quotes. `tokenize_ptb` is a small set of Treebank-style regular expressions that keep the characters
themselves (straight quotes and round brackets, as the GEC references have them), split off punctuation and clitics,
keep numbers such as `1,000` and `10:30` whole, and split only a text-final period (`U.S.` stays whole).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from sacremoses import MosesDetokenizer

__all__ = ["detokenize", "match_key", "tokenize_ptb"]

_BRACKETS = {
    "-lrb-": "(",
    "-rrb-": ")",
    "-lsb-": "[",
    "-rsb-": "]",
    "-lcb-": "{",
    "-rcb-": "}",
}
_BRACKET_RE = re.compile(r"(?<!\S)-(?:lrb|rrb|lsb|rsb|lcb|rcb)-(?!\S)", re.IGNORECASE)
_PTB_QUOTE_RE = re.compile(r"(?<!\S)(?:``|'')(?!\S)")
# split clitics, and the possessive split as "' s" (WNC, GMEG), glued back to the word before them
_CLITIC_RE = re.compile(r"(?<=\w) (n't|'(?:s|re|ve|ll|m|d))(?!\S)", re.IGNORECASE)
_SPLIT_POSSESSIVE_RE = re.compile(r"(?<=\w) ' (s)(?!\S)", re.IGNORECASE)
# "on - air", "quick - paced": a hyphen token between two words; on CWEB-G dev (raw vs spaCy-tokenized) 517 of
# the 597 " - " tokens stand for an intra-word hyphen, so joining is right far more often than not
_HYPHEN_RE = re.compile(r"(?<=[^\W_]) - (?=[^\W_])")
_SPACES_RE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _moses() -> MosesDetokenizer:
    return MosesDetokenizer(lang="en")


@lru_cache(maxsize=1 << 17)
def detokenize(text: str) -> str:
    """Plain text from PTB-style tokenized text. Safe on text that is already plain: it then changes at most
    stray spaces before punctuation. (Cached: corpora repeat sentences, e.g. GEC references equal to the source.)"""
    text = _SPACES_RE.sub(" ", text).strip()
    if not text:
        return text
    text = _BRACKET_RE.sub(lambda m: _BRACKETS[m.group(0).lower()], text)
    text = _PTB_QUOTE_RE.sub('"', text)
    text = _CLITIC_RE.sub(r"\1", text)
    text = _SPLIT_POSSESSIVE_RE.sub(r"'\1", text)
    text = _HYPHEN_RE.sub("-", text)
    out = _moses().detokenize(text.split(" "), unescape=False)
    return _SPACES_RE.sub(" ", out).strip()


_TOKEN_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\.\.\.|…"), r" ... "),
    (re.compile(r"--+|—|–"), lambda m: f" {m.group(0)} "),  # type: ignore[list-item]
    (re.compile(r'([;@#$%&?!()\[\]{}"])'), r" \1 "),
    (re.compile(r",(?!\d)|(?<!\d),"), r" , "),
    (re.compile(r":(?!\d)|(?<!\d):"), r" : "),
    # quotes: an apostrophe that opens a word, or closes one that is not a clitic
    (re.compile(r"(?<!\S)'(?=\S)"), r" ' "),
    (re.compile(r"(?<=\S)'(?!\S)"), r" ' "),
    # clitics
    (re.compile(r"(?i)(\w)(n't)\b"), r"\1 \2"),
    (re.compile(r"(?i)(\w)('(?:s|re|ve|ll|m|d))\b"), r"\1 \2"),
)
_FINAL_PERIOD_RE = re.compile(r"(?<!\.)\.(?=(?:\s*[\"')\]}])*\s*$)")
_HYPHEN_SPLIT_RE = re.compile(r"(?<=[^\W_])-(?=[^\W_])")


def tokenize_ptb(text: str, *, split_hyphens: bool = False) -> str:
    """PTB-style tokens joined by single spaces. `split_hyphens` also splits intra-word hyphens (`in - house`), as
    the spaCy tokenization of CWEB does; JFLEG, CoNLL-2014 and GMEG keep them."""
    text = _SPACES_RE.sub(" ", text).strip()
    if not text:
        return text
    text = _FINAL_PERIOD_RE.sub(" . ", text)
    for pattern, repl in _TOKEN_RULES:
        text = pattern.sub(repl, text)
    if split_hyphens:
        text = _HYPHEN_SPLIT_RE.sub(" - ", text)
    return _SPACES_RE.sub(" ", text).strip()


_NON_WORD_RE = re.compile(r"[\W_]+")


def match_key(text: str) -> str:
    """The form in which texts are compared for deduplication and contamination: PTB bracket tokens mapped back,
    Unicode NFKC, case-folded, and every character that is not a letter or digit removed. Tokenized and plain
    versions of a sentence get the same key (`do n't .` and `don't.`, `(1904 - 1961)` and `(1904-1961)`)."""
    text = _BRACKET_RE.sub(lambda m: _BRACKETS[m.group(0).lower()], text)
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).casefold())
