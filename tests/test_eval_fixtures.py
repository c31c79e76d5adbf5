"""A small data directory laid out as the original releases of the `writing` suite's test files (M2, parallel text
with N reference files, IteraTeR JSON lines, WNC TSV, STS-B CSV), plus a few training-side files for few-shot
prompts, and fake generators for the evaluation tests. Also checks that every registered `writing` set reads it."""

from __future__ import annotations

import json
from pathlib import Path

from writetune.data.tokenization import detokenize
from writetune.data.evalsets import load_eval_set, suite
from writetune.generate import DecodingConfig, Request

# (tokenized source, tokenized correction, M2 edit of the correction: start, end, replacement, type)
GEC = [
    ("This are a good idea .", "This is a good idea .", (1, 2, "is", "R:VERB:SVA")),
    ("He go to school every day .", "He goes to school every day .", (1, 2, "goes", "R:VERB:SVA")),
    ("I have many informations about it .", "I have much information about it .", (2, 4, "much information", "R:NOUN")),
    ("She do n't like the in-house coffee .", "She does n't like the in-house coffee .",
     (1, 2, "does", "R:VERB:SVA")),
    ("We discussed about the problem yesterday .", "We discussed the problem yesterday .", (2, 3, "", "U:PREP")),
]
SIMPLE = [
    ("The committee deliberated extensively before reaching a verdict.", "The committee talked a lot before deciding."),
    ("He was subsequently appointed to the position of director.", "He was later made director."),
    ("The municipality possesses numerous recreational facilities.", "The town has many places to play."),
    ("Precipitation is anticipated throughout the afternoon.", "Rain is expected all afternoon."),
]
BIASED = [
    ("The brilliant senator gave a speech.", "The senator gave a speech."),
    ("The infamous company released a product.", "The company released a product."),
    ("He is a truly great writer of novels.", "He is a writer of novels."),
]
PARAPHRASES = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion.", 4.4),
    ("The cat sleeps on the mat.", "A dog runs in the park.", 0.2),
    ("Two kids are playing in the sand.", "Two children play in the sand.", 4.6),
]


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _m2(path: Path, annotators: int) -> None:
    blocks = []
    for source, _, (start, end, correction, kind) in GEC:
        if "cweb" in str(path):  # CWEB is tokenized by spaCy, which splits hyphens
            source = source.replace("in-house", "in - house")
        lines = [f"S {source}"]
        for a in range(annotators):
            if a == 1 and start == 2:  # the second annotator leaves some sentences alone
                lines.append(f"A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||{a}")
            else:
                lines.append(f"A {start} {end}|||{kind}|||{correction or '-NONE-'}|||REQUIRED|||-NONE-|||{a}")
        blocks.append("\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def write_writing_data(root: Path, *, with_pools: bool = True) -> Path:
    """Every file of the `writing` suite (and, with `with_pools`, the few-shot pools) in the releases' layout."""
    _m2(root / "conll2014/official-2014.combined.m2", 2)
    _m2(root / "wi+locness/m2/ABCN.dev.gold.bea19.m2", 1)
    _m2(root / "cweb/m2/CWEB-G.test.m2", 2)
    _m2(root / "cweb/m2/CWEB-S.test.m2", 2)
    for folder, stem, refs in (("jfleg/test", "test.src", "test.ref"), ("gmeg_wiki/test", "source", "ref")):
        _write(root / folder / stem, [s for s, _, _ in GEC])
        for k in range(4):
            _write(root / folder / f"{refs}{k}", [c for _, c, _ in GEC])
    easse = root / "turkcorpus/easse_truecase_detok"
    _write(easse / "test.truecase.detok.orig", [s for s, _ in SIMPLE])
    for k in range(8):
        _write(easse / f"test.truecase.detok.simp.{k}", [c for _, c in SIMPLE])
    _write(root / "asset/dataset/asset.test.orig", [s for s, _ in SIMPLE])
    for k in range(10):
        _write(root / f"asset/dataset/asset.test.simp.{k}", [c for _, c in SIMPLE])
    records = []
    for intent in ("fluency", "clarity", "coherence"):
        for source, target in SIMPLE[:3]:
            records.append(json.dumps({"before_sent": f"{source} ({intent})", "after_sent": f"{target} ({intent})",
                                       "labels": intent, "doc_id": "1", "revision_depth": 1}))
    _write(root / "iterater_human_sent/test.json", records)
    wnc = [f"{i}\t{s.lower()}\t{t.lower()}\t{s.lower()}\t{t.lower()}\tDT NN\tDT NN" for i, (s, t) in enumerate(BIASED)]
    _write(root / "wnc/bias_data/WNC/biased.word.test", wnc)
    _write(root / "stsb_en/stsb-en-test.csv", [f'"{a}","{b}",{s}' for a, b, s in PARAPHRASES])
    if with_pools:  # training sides for few-shot prompts (jfleg dev; the others are absent on purpose)
        pool = [("Me and him goes there .", "He and I go there ."), ("She have two cat .", "She has two cats ."),
                ("They was happy yesterday .", "They were happy yesterday ."),
                ("This are a good idea .", "This is a good idea ."),  # an evaluation item: never a shot
                ("It rain a lot in here every winter .", "It rains a lot here every winter .")]
        _write(root / "jfleg/dev/dev.src", [s for s, _ in pool])
        for k in range(4):
            _write(root / f"jfleg/dev/dev.ref{k}", [c for _, c in pool])
    return root


def oracle_answers() -> dict[str, str]:
    """Model input (plain text) -> a perfect answer (plain text), for every fixture item."""
    answers = {detokenize(s): detokenize(c) for s, c, _ in GEC}
    answers.update({s: t for s, t in SIMPLE})
    for intent in ("fluency", "clarity", "coherence"):
        answers.update({f"{s} ({intent})": f"{t} ({intent})" for s, t in SIMPLE})
    answers.update({s.lower(): t.lower() for s, t in BIASED})
    answers.update({a: b for a, b, _ in PARAPHRASES})
    return answers


class RecordingGenerator:
    """A fake model: answers from a table (the input itself when absent), recording every call."""

    def __init__(self, answers: dict[str, str] | None = None):
        self.answers = answers or {}
        self.calls: list[tuple[list[Request], DecodingConfig]] = []
        self.tokens_generated = 0

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        self.calls.append((list(requests), decoding))
        if on_batch is not None:
            on_batch(len(requests))
        return [self.answers.get(r.input, r.input) for r in requests]

    def describe(self) -> str:
        return "recording"

    @property
    def requests(self) -> list[Request]:
        return [r for batch, _ in self.calls for r in batch]


class Factory:
    """`make` for `Evaluation`: `oracle` is a RecordingGenerator with perfect answers, `copy` the real copy
    generator, anything else a RecordingGenerator that copies. Counts the generators it builds."""

    def __init__(self):
        self.built: list[str] = []
        self.generators: dict[str, RecordingGenerator] = {}

    def __call__(self, spec, backend="auto", **options):
        from writetune.generate import make_generator

        self.built.append(spec)
        if spec == "copy":
            return make_generator("copy")
        generator = RecordingGenerator(oracle_answers() if spec == "oracle" else None)
        self.generators[spec] = generator
        return generator

    def requests(self) -> int:
        return sum(len(g.requests) for g in self.generators.values())


def test_every_writing_set_reads_the_fixture(tmp_path):
    root = write_writing_data(tmp_path)
    for evalset in suite("writing"):
        examples = load_eval_set(evalset, root)
        assert examples, evalset.name
        assert all(len(e.references) == evalset.n_references for e in examples), evalset.name
