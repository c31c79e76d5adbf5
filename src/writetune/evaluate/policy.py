"""The tokenisation policy: how text crosses between a set's files and a model, and how an answer is put into the
form the set's references have before it is scored."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from writetune.data.evalsets import EvalSet
from writetune.data.readers import Example
from writetune.data.sources import WncPrePostSource
from writetune.data.tokenization import project_onto_source, tokenize_ptb

_POSSESSIVE = re.compile(r"(?<!\S)'s(?!\S)")


@dataclass(frozen=True)
class TokenizationPolicy:
    """How text crosses between a set's files and a model: the model sees `input` text (`detokenized` for
    PTB-tokenized sets, `raw` otherwise), and its answer is scored as `hypothesis`: `ptb` (tokenized with
    `writetune.data.tokenization.tokenize_ptb`, as the M2 scorer and JFLEG's GLEU script expect), `ptb+hyphens`
    (also splitting intra-word hyphens, as CWEB's spaCy tokenization does) or `raw` (whitespace collapsed only, as
    EASSE expects); `lowercase` when the set's references are lower-cased.

    A tokenized answer is projected onto its source (`project_onto_source`): what the model left unchanged keeps
    the source's own tokens, and only the changed stretches are tokenized, so copying the source scores exactly
    what the reference scorer gives the source file."""

    input: str
    hypothesis: str
    lowercase: bool = False

    def model_input(self, example: Example) -> str:
        return example.detokenized().source if self.input == "detokenized" else example.source

    def tokenize(self, text: str) -> str:
        """Text in the set's token conventions."""
        text = tokenize_ptb(text, split_hyphens="+hyphens" in self.hypothesis)
        if "+possessive" in self.hypothesis:  # the WNC sample writes the possessive as "kgb ' s"
            text = _POSSESSIVE.sub("' s", text)
        return text

    def apply(self, output: str, example: Example) -> str:
        """The answer to `example` as it is scored."""
        text = " ".join(output.split())
        if self.hypothesis.startswith("ptb"):
            if self.input == "detokenized":
                text = project_onto_source(text, example.source, self.tokenize)
            else:
                text = self.tokenize(text)
        return text.lower() if self.lowercase else text

    def describe(self) -> str:
        projected = "+projected" if self.hypothesis.startswith("ptb") and self.input == "detokenized" else ""
        return f"input:{self.input}|hyp:{self.hypothesis}{projected}" + ("+lowercased" if self.lowercase else "")


def tokenization_policy(evalset: EvalSet, examples: Sequence[Example]) -> TokenizationPolicy:
    """The policy of a set: its registered tokenisation (`ptb` or `raw`), refined by the conventions of its files:
    CWEB (spaCy) and the WNC sample split intra-word hyphens, the WNC sample also splits the possessive, and
    lower-cased references get lower-cased hypotheses. Measured on the copy system, the refinements raise the share
    of sources that survive detokenisation and re-tokenisation unchanged from 55 to 85 of the 100 on `wnc_dev`."""
    refs = [r for e in examples for r in e.references]
    lowercase = bool(refs) and all(r == r.lower() for r in refs) and any(r != r.upper() for r in refs)
    if evalset.tokenization != "ptb":
        return TokenizationPolicy("raw", "raw", lowercase)
    hypothesis = "ptb"
    if isinstance(evalset.source, WncPrePostSource):
        hypothesis = "ptb+hyphens+possessive"
    elif any(f.startswith("cweb/") for f in evalset.files):
        hypothesis = "ptb+hyphens"
    return TokenizationPolicy("detokenized", hypothesis, lowercase)
