"""Errors learned from real corrections: what is learned from M2 edits and ERRANT-typed pairs, how the injector
inverts them in clean sentences (deterministically, never on quotes, always reading back as its tokens), that
evaluation items are left out of the learning, and the `learned_errors` source in a real mix build."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from writetune.data.build import build_mix
from writetune.data.learned_errors import ErrorPattern, ErrorPatterns, LearnedErrorInjector, patterns_from_m2
from writetune.data.m2format import parse_m2
from writetune.data.sources import LearnedErrorsSource
from writetune.data.tokenization import tokenize_ptb

M2 = """S She have a cat .
A 1 2|||R:VERB:SVA|||has|||REQUIRED|||-NONE-|||0
A 1 2|||R:VERB:SVA|||has|||REQUIRED|||-NONE-|||1

S He went in the school yesterday
A 2 3|||R:PREP|||to|||REQUIRED|||-NONE-|||0
A 6 6|||M:PUNCT|||.|||REQUIRED|||-NONE-|||0
A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||1

S They said the the answer was " no " .
A 3 4|||U:DET|||-NONE-|||REQUIRED|||-NONE-|||0
A 6 7|||R:PUNCT|||'|||REQUIRED|||-NONE-|||0
"""


def learned(text: str = M2) -> ErrorPatterns:
    patterns = ErrorPatterns()
    patterns_from_m2(parse_m2(text), patterns)
    return patterns


def test_patterns_from_m2_count_types_density_and_skip_quotes():
    patterns = learned()
    assert patterns.sentences == 5  # annotators 0 and 1 of blocks 1-2, annotator 0 of block 3
    assert patterns.counts[ErrorPattern("R:VERB:SVA", ("have",), ("has",))] == 2
    assert patterns.counts[ErrorPattern("M:PUNCT", (), (".",))] == 1
    assert patterns.counts[ErrorPattern("U:DET", ("the",), (), "answer")] == 1  # re-inserted before "answer"
    assert not any('"' in p.wrong or "'" in p.right for p in patterns.counts)
    assert patterns.density == Counter({1: 3, 2: 1})
    assert patterns.summary()["types"]["R:VERB:SVA"] == pytest.approx(2 / 5)
    skipped = ErrorPatterns()
    patterns_from_m2(parse_m2(M2), skipped, skip={1})
    assert skipped.sentences == 3 and ErrorPattern("R:VERB:SVA", ("have",), ("has",)) not in skipped.counts


def test_injector_inverts_the_patterns_deterministically():
    injector = LearnedErrorInjector(learned().pruned(1), seed=3)
    out = injector.corrupt("She has a dog and he went to the park.", key="k1")
    assert out is not None and out.text != "She has a dog and he went to the park."
    assert out.text == injector.corrupt("She has a dog and he went to the park.", key="k1").text
    seen = {injector.corrupt("She has a dog.", key=f"k{i}").text for i in range(40)}
    assert "She have a dog." in seen  # R:VERB:SVA inverted
    assert "She has a dog" in seen  # M:PUNCT inverted: the period deleted
    assert any(t != "She has a dog." and t.lower().count("dog") == 1 for t in seen)
    for i in range(40):
        result = injector.corrupt('He read "the book" today.', key=f"q{i}")
        if result is not None:
            assert result.text.count('"') == 2 and tokenize_ptb(result.text).split()  # quotes are never edited


def test_injector_refuses_sentences_it_cannot_change():
    injector = LearnedErrorInjector(ErrorPatterns(Counter({ErrorPattern("R:PREP", ("in",), ("to",)): 3}),
                                                  Counter({1: 1}), 1), seed=0)
    assert injector.corrupt("Nothing applies here", key="a") is None
    assert injector.corrupt("He went to Rome.", key="a").text == "He went in Rome."
    with pytest.raises(ValueError, match="no error patterns"):
        LearnedErrorInjector(ErrorPatterns(), seed=0)


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "cweb/m2/CWEB-G.dev.m2").is_file(), reason="the shared data folder is absent")
def test_evaluation_items_are_left_out_of_the_learning():
    from writetune.data.evalsets import get_eval_set, load_eval_set

    spec = LearnedErrorsSource.model_validate({
        "format": "learned_errors", "edits": [{"format": "m2", "path": "cweb/m2/CWEB-G.dev.m2"}],
        "clean": {"format": "wikisplit_tsv", "path": "wikisplit/tune.tsv"}, "min_count": 1})
    patterns = spec.patterns(SHARED)
    document = parse_m2((SHARED / "cweb/m2/CWEB-G.dev.m2").read_text(encoding="utf-8"))
    carved = {int(e.id.rsplit(":", 1)[1]) for e in load_eval_set(get_eval_set("cweb_g_dev"), SHARED)}
    assert len(carved) == 200
    kept = [s for s in document if s.line not in carved]
    assert patterns.sentences == sum(len(s.coders) for s in kept)
    everything = ErrorPatterns()
    patterns_from_m2(document, everything)
    assert everything.sentences > patterns.sentences


def test_learned_errors_source_in_a_mix_build(tmp_path):
    data = tmp_path / "data"
    (data / "gec").mkdir(parents=True)
    (data / "gec/train.m2").write_text(M2, encoding="utf-8")
    clean = [f"She has {n} cats and he went to the market on day {n}." for n in range(30)]
    (data / "clean.tsv").write_text("".join(f"{c}\t{c} <::::> Done.\n" for c in clean), encoding="utf-8")
    recipe = {
        "name": "learned", "seed": 5, "data_dir": str(data), "dev": {"fraction": 0.0, "max_per_source": 0},
        "unchanged_share": 0.0, "holdout_suites": [],
        "sources": [{"name": "learned_gec", "task": "grammar", "read": {
            "format": "learned_errors", "edits": [{"format": "m2", "path": "gec/train.m2"}],
            "clean": {"format": "wikisplit_tsv", "path": "clean.tsv"}, "side": "source", "min_count": 1, "seed": 2}}],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = build_mix(path, tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out/train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert result.manifest["inputs"].keys() == {"gec/train.m2", "clean.tsv"}
    assert rows and all(r["output"] in clean and r["input"] != r["output"] for r in rows)
    again = build_mix(path, tmp_path / "again")
    assert (tmp_path / "out/train.jsonl").read_bytes() == (tmp_path / "again/train.jsonl").read_bytes()
    assert again.train == result.train


def test_learned_patterns_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.m2").write_text(M2, encoding="utf-8")
    spec = LearnedErrorsSource.model_validate({
        "format": "learned_errors", "edits": [{"format": "m2", "path": "train.m2"}],
        "clean": {"format": "wikisplit_tsv", "path": "clean.tsv"}, "min_count": 1})
    first = spec.patterns(data)
    calls = []
    monkeypatch.setattr(LearnedErrorsSource, "_learn", lambda self, d, held: calls.append(d) or ErrorPatterns())
    assert spec.patterns(data).counts == first.counts and calls == []  # read back from the cache
    (data / "train.m2").write_text(M2.replace("has", "had"), encoding="utf-8")
    spec.patterns(data)
    assert len(calls) == 1  # a changed edit file is learned again
