"""The evaluation-set registry: names and suites, the writing-dev carvings on the real files, and test splits read
from release layouts written into a temporary data directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from writetune.data import evalsets
from writetune.data.readers import Example
from writetune.data.tokenization import match_key
from writetune.data.evalsets import (
    SHOT_POOLS,
    Carving,
    MissingEvalData,
    UnknownEvalSetError,
    all_eval_sets,
    get_eval_set,
    load_eval_set,
    suite,
)
from writetune.tasks import get_task, writing_tasks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared data folder is not beside the repo ({DATA})")

WRITING = {
    "conll2014", "bea19_dev", "jfleg", "iterater_fluency", "iterater_clarity", "iterater_coherence", "turkcorpus",
    "asset", "wnc", "stsb", "gmeg_wiki", "cweb_g", "cweb_s",
}  # fmt: skip
WRITING_DEV = {
    "jfleg_dev", "asset_dev", "turkcorpus_dev", "gmeg_wiki_dev", "cweb_g_dev", "cweb_s_dev", "wnc_dev", "stsb_dev",
}  # fmt: skip


def test_suites_hold_the_named_sets():
    assert {e.name for e in suite("writing")} == WRITING
    assert {e.name for e in suite("writing-dev")} == WRITING_DEV
    assert {e.name for e in suite("general")} == {"ifbench", "alpaca_heldout"}
    assert {e.name for e in all_eval_sets()} >= WRITING | WRITING_DEV
    with pytest.raises(UnknownEvalSetError, match="unknown suite"):
        suite("reading")
    with pytest.raises(UnknownEvalSetError, match="unknown eval set 'nope'"):
        get_eval_set("nope")


def test_every_writing_set_is_registered_for_a_writing_task():
    writing = {task.name for task in writing_tasks()}
    assert {evalset.task for evalset in suite("writing")} == writing


@pytest.mark.parametrize("evalset", all_eval_sets(), ids=lambda e: e.name)
def test_eval_set_fields_are_consistent(evalset):
    get_task(evalset.task)
    packaged = evalset.reader == "ifbench"  # the prompts ship in a package; the verifiers are the references
    assert (evalset.files or packaged) and all(not Path(f).is_absolute() for f in evalset.files)
    assert evalset.reader == evalset.source.format
    assert evalset.tokenization == ("ptb" if getattr(evalset.source, "tokenized", False) else "raw")
    assert evalset.metrics and (evalset.n_references >= 1 or packaged) and evalset.description
    assert (evalset.max_new_tokens is not None) == (not get_task(evalset.task).writing)
    assert (evalset.carving is not None) == (evalset.suite in ("writing-dev", "general"))


@needs_data
@pytest.mark.parametrize("name", sorted(WRITING_DEV))
def test_dev_carvings_on_the_real_files(name):
    evalset = get_eval_set(name)
    examples = load_eval_set(evalset, DATA)
    assert 0 < len(examples) <= 200
    assert all(len(e.references) == evalset.n_references for e in examples)
    assert all(e.task == evalset.task and e.origin == name for e in examples)
    assert load_eval_set(name, DATA) == examples  # deterministic
    assert len({e.id for e in examples}) == len(examples)


@needs_data
def test_asset_and_turkcorpus_carve_the_same_sentences():
    asset = {match_key(e.source) for e in load_eval_set("asset_dev", DATA)}
    turk = {match_key(e.source) for e in load_eval_set("turkcorpus_dev", DATA)}
    assert asset == turk and len(asset) == 200


@needs_data
def test_wnc_dev_is_the_whole_sample_test_file():
    assert len(load_eval_set("wnc_dev", DATA)) == 100


@needs_data
def test_absent_test_split_names_the_file():
    with pytest.raises(MissingEvalData) as err:
        load_eval_set("jfleg", DATA)
    assert isinstance(err.value, ValueError)
    assert str(DATA / "jfleg/test/test.src") in str(err.value) and "jfleg" in str(err.value)
    assert not get_eval_set("jfleg").available(DATA)
    assert get_eval_set("jfleg_dev").available(DATA)


def test_few_shot_pools_are_writing_tasks_and_never_a_test_split():
    test_files = {f for s in suite("writing") for f in s.files}
    for task, pool in SHOT_POOLS.items():
        assert get_task(task).writing, task
        assert pool.files() and not set(pool.files()) & test_files, task
    # a dev file that is both a set and a pool is named once
    assert SHOT_POOLS["grammaticality"] is get_eval_set("cweb_g_dev").source
    assert SHOT_POOLS["fluency"] is get_eval_set("jfleg_dev").source


def test_carving_depends_only_on_the_text():
    examples = [Example("fluency", f"Sentence number {i}.", ("r",), "x", f"x:{i}") for i in range(500)]
    carving = Carving(50)
    chosen = carving.select(examples)
    assert len(chosen) == 50 and chosen == sorted(chosen, key=examples.index)
    shuffled = examples[:]
    random.Random(0).shuffle(shuffled)
    assert {e.source for e in carving.select(shuffled)} == {e.source for e in chosen}
    assert Carving(50, salt="other").select(examples) != chosen
    assert Carving(None).select(examples) == examples
    assert "sha256" in carving.rule()


def test_carving_keeps_duplicate_sources_together():
    examples = [Example("fluency", f"Sentence {i % 100}.", ("r",), "x", f"x:{i}") for i in range(300)]
    chosen = Carving(30).select(examples)
    assert len(chosen) == 30
    for example in chosen:
        assert sum(e.source == example.source for e in chosen) == 3


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_test_splits_in_release_layouts(tmp_path):
    write(tmp_path, "jfleg/test/test.src", "He go home .\nShe like it .\n")
    for i in range(4):
        write(tmp_path, f"jfleg/test/test.ref{i}", f"He goes home {i} .\nShe likes it .\n")
    jfleg = load_eval_set("jfleg", tmp_path)
    assert [len(e.references) for e in jfleg] == [4, 4] and jfleg[0].tokenized

    write(
        tmp_path,
        "conll2014/official-2014.combined.m2",
        "S He go home .\nA 1 2|||SVA|||goes|||REQUIRED|||-NONE-|||0\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||1\n\n",
    )
    conll = load_eval_set("conll2014", tmp_path)
    assert conll[0].references == ("He goes home .", "He go home .")

    write(tmp_path, "stsb_en/stsb-en-test.csv", "A man plays.,A man is playing.,4.8\nA cat.,A dog.,0.5\n")
    assert [e.source for e in load_eval_set("stsb", tmp_path)] == ["A man plays."]

    row = ["7", "a tok", "b tok", "The brilliant plan.", "The plan.", "DET ADJ NOUN", "x"]
    write(tmp_path, "wnc/bias_data/WNC/biased.word.test", "\t".join(row) + "\n")
    assert load_eval_set("wnc", tmp_path)[0].references == ("The plan.",)

    rows = [
        {"before_sent": "A b.", "after_sent": "A c.", "labels": "clarity", "doc_id": "1", "revision_depth": "1"},
        {"before_sent": "D e.", "after_sent": "D f.", "labels": "coherence", "doc_id": "1", "revision_depth": "1"},
    ]
    write(tmp_path, "iterater_human_sent/test.json", "".join(json.dumps(r) + "\n" for r in rows))
    assert [e.source for e in load_eval_set("iterater_coherence", tmp_path)] == ["D e."]
    assert load_eval_set("iterater_fluency", tmp_path) == []


def test_a_partly_present_set_names_the_missing_reference(tmp_path):
    write(tmp_path, "asset/dataset/asset.test.orig", "A sentence.\n")
    with pytest.raises(MissingEvalData, match=r"asset\.test\.simp\.0: file of eval set 'asset' not found"):
        load_eval_set("asset", tmp_path)


def test_register_eval_set(monkeypatch):
    monkeypatch.setattr(evalsets, "_REGISTRY", dict(evalsets._REGISTRY))
    jfleg = get_eval_set("jfleg")
    with pytest.raises(ValueError, match="already registered"):
        evalsets.register_eval_set(jfleg)
    from dataclasses import replace

    mine = evalsets.register_eval_set(replace(jfleg, name="my_jfleg"))
    assert get_eval_set("my_jfleg") is mine and mine in suite("writing")
    with pytest.raises(ValueError, match="suite must be"):
        evalsets.register_eval_set(replace(jfleg, name="x", suite="other"))
