"""Tokenisation conventions of the corpora, in one place: `detokenize` turns PTB-style tokenized text (`do n't`,
`word .`, `-lrb-`) into plain text for training and prompting, and `tokenize_ptb` does the inverse for scoring model
output against tokenized references (JFLEG, CoNLL-2014, CWEB, GMEG).

`detokenize` first undoes the Penn Treebank conventions that Moses does not know (bracket tokens such as `-lrb-`,
``` `` ``` / `''` quotes, split clitics `n't 's 're 've 'll 'm 'd`, the split possessive `' s`, hyphens split as
`on - air`), then hands the tokens to sacremoses' `MosesDetokenizer` (English), which attaches punctuation and pairs
straight double quotes. `tokenize_ptb` is a small set of Treebank-style regular expressions that keep the characters
themselves (straight quotes and round brackets, as the GEC references have them), split off punctuation and clitics,
keep numbers such as `1,000` and `10:30` whole, and split only a text-final period (`U.S.` stays whole).

Detokenizing and re-tokenizing is not the identity (``` `` rich '' ``` comes back as `" rich "`, `house . )` as
`house. )`), so scoring model output against tokenized references uses `project_onto_source`: the stretches of an
output that the model left as they were get the source's own tokens back, and only what it changed is tokenized.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from functools import lru_cache

from sacremoses import MosesDetokenizer

__all__ = ["detokenize", "match_key", "project_onto_source", "tokenize_ptb"]

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


def _token_groups(round_trip: Sequence[str], source: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """Pairs of stretches `(i1, i2, j1, j2)`: `round_trip[i1:i2]` stands for `source[j1:j2]`. Tokens the two share
    are pairs of one token each; where they differ (`"` for ``` `` ```, `house.` for `house .`) the differing
    stretches form one pair. A source stretch with no round-trip counterpart joins the pair before it."""
    groups: list[list[int]] = []
    matcher = SequenceMatcher(None, round_trip, source, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            groups.extend([i1 + k, i1 + k + 1, j1 + k, j1 + k + 1] for k in range(i2 - i1))
        elif i1 == i2 and groups:
            groups[-1][3] = j2
        else:
            groups.append([i1, i2, j1, j2])
    if groups and groups[0][0] == groups[0][1] and len(groups) > 1:  # a leading source-only stretch
        first = groups.pop(0)
        groups[0][2] = first[2]
    return [tuple(g) for g in groups]  # type: ignore[misc]


def project_onto_source(output: str, source_tokens: str, tokenize: Callable[[str], str] = tokenize_ptb) -> str:
    """The tokens of `output` with every stretch that the model did not change written as the source has it.

    `source_tokens` is a tokenized source as its file has it, and `output` a model's answer to its detokenized form
    (`detokenize`). Both that form and the output are tokenized with `tokenize` and aligned token by token; each
    stretch of the source that survives the round trip unchanged and is aligned, whole, with an unchanged stretch of
    the output is emitted as the source's original tokens. Everything else comes from the tokenized output. An
    output equal to the detokenized source (up to whitespace) therefore comes back as the source itself, byte for
    byte (whitespace collapsed to single spaces)."""
    source = source_tokens.split()
    hyp = tokenize(output).split()
    round_trip = tokenize(detokenize(source_tokens)).split()
    groups = _token_groups(round_trip, source)
    group_at = {g[0]: g for g in groups if g[0] < g[1]}
    out: list[str] = []
    if groups and groups[0][0] == groups[0][1]:  # the source has no round-trip tokens at all
        return " ".join(hyp)
    matcher = SequenceMatcher(None, round_trip, hyp, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.extend(hyp[j1:j2])
            continue
        i = i1
        while i < i2:
            group = group_at.get(i)
            if group is not None and group[1] <= i2:
                out.extend(source[group[2]:group[3]])
                i = group[1]
            else:  # a differing stretch that is only partly unchanged: the output's tokens
                out.append(hyp[j1 + i - i1])
                i += 1
    return " ".join(out)


_NON_WORD_RE = re.compile(r"[\W_]+")


def match_key(text: str) -> str:
    """The form in which texts are compared for deduplication and contamination: PTB bracket tokens mapped back,
    Unicode NFKC, case-folded, and every character that is not a letter or digit removed. Tokenized and plain
    versions of a sentence get the same key (`do n't .` and `don't.`, `(1904 - 1961)` and `(1904-1961)`)."""
    text = _BRACKET_RE.sub(lambda m: _BRACKETS[m.group(0).lower()], text)
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).casefold())
