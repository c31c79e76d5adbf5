"""The mix builder on a small data directory written into tmp_path: output format, determinism, held-out and
contaminated evaluation items, atomic output, unchanged-share control, quotas, recipe errors; and the shipped recipes
against the shared data folder."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from writetune.cli import app
from writetune.config import RecipeError
from writetune.data.build import ContaminationError, OutputExistsError, _allocate, _quotas, build_mix
from writetune.data.recipe import load_mix_recipe, resolve_data_dir
from writetune.data.readers import DataFormatError, MissingDataError
from writetune.data.tokenization import match_key
from writetune.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared data folder is not beside the repo ({DATA})")

HELD_OUT_PAIR = ("the brilliant mayor spoke .", "the mayor spoke .")
PLANTED = "A sentence that the STS-B test split also holds, word for word."


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    """20 changed and 20 unchanged grammar pairs, 30 clarity pairs, 12 neutralization pairs (one of them an item of
    the wnc_dev carving), 30 generic records."""
    root = tmp_path / "data"
    gec_src = [f"Sentence number {i} have a error ." if i % 2 else f"Sentence number {i} is fine ." for i in range(40)]
    gec_ref = [f"Sentence number {i} has an error ." if i % 2 else f"Sentence number {i} is fine ." for i in range(40)]
    write(root, "gec/src", "\n".join(gec_src) + "\n")
    write(root, "gec/ref0", "\n".join(gec_ref) + "\n")
    write(root, "gec/ref1", "\n".join(r.replace("error", "mistake") for r in gec_ref) + "\n")
    write(
        root,
        "split.tsv",
        "".join(f"Clause {i} is long , and clause {i} goes on .\tClause {i} is long . <::::> Clause {i} goes on .\n" for i in range(30)),
    )
    pre = [f"the great writer {i} wrote a book ." for i in range(11)] + [HELD_OUT_PAIR[0]]
    post = [f"the writer {i} wrote a book ." for i in range(11)] + [HELD_OUT_PAIR[1]]
    write(root, "wnc_sample/pre.train", "\n".join(pre) + "\n")
    write(root, "wnc_sample/post.train", "\n".join(post) + "\n")
    write(root, "wnc_sample/pre.test", f"{HELD_OUT_PAIR[0]}\nthe noble cause won .\n")
    write(root, "wnc_sample/post.test", f"{HELD_OUT_PAIR[1]}\nthe cause won .\n")
    records = [{"instruction": f"Question {i}?", "input": "" if i % 3 else f"context {i}", "output": f"Answer {i}.\nLine two."} for i in range(30)]
    write(root, "alpaca.json", json.dumps(records))
    return root


def recipe_dict(**overrides) -> dict:
    recipe = {
        "name": "test-mix",
        "seed": 7,
        "unchanged_share": 0.1,
        "dev": {"fraction": 0.1, "max_per_source": 3},
        "sources": [
            {"name": "gec", "task": "grammar", "targets": "random",
             "read": {"format": "parallel", "source": "gec/src", "references": ["gec/ref0", "gec/ref1"], "tokenized": True}},
            {"name": "split", "task": "clarity", "read": {"format": "wikisplit_tsv", "path": "split.tsv"}},
            {"name": "wnc", "task": "neutralization",
             "read": {"format": "wnc_pre_post", "pre": "wnc_sample/pre.train", "post": "wnc_sample/post.train"}},
            {"name": "alpaca", "task": "generic", "read": {"format": "alpaca_json", "path": "alpaca.json"}},
        ],
    }  # fmt: skip
    recipe.update(overrides)
    return recipe


def write_recipe(tmp_path: Path, data: Path, **overrides) -> Path:
    recipe = recipe_dict(**overrides)
    recipe.setdefault("data_dir", str(data))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def no_env_data_dir(monkeypatch):
    monkeypatch.delenv("WRITETUNE_DATA", raising=False)


def test_build_writes_records_and_manifest(tmp_path, data):
    result = build_mix(write_recipe(tmp_path, data), tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "manifest.json", "train.jsonl"]
    train, dev = rows(out / "train.jsonl"), rows(out / "dev.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.manifest == manifest and (result.train, result.dev) == (len(train), len(dev))
    assert all(list(r) == ["id", "task", "origin", "instruction", "input", "output"] for r in train)
    assert all(list(r) == ["id", "task", "origin", "instruction", "input", "output", "references"] for r in dev)
    assert len({r["id"] for r in train + dev}) == len(train) + len(dev)
    for r in train + dev:
        if r["task"] == "generic":
            assert r["instruction"].startswith("Question")
        else:
            assert r["instruction"] in get_task(r["task"]).instructions
    # detokenized text, tokenized originals recorded
    gec = [r for r in train if r["task"] == "grammaticality"]
    assert gec and all(not r["input"].endswith(" .") and not r["output"].endswith(" .") for r in gec)
    assert manifest["tokenization"]["tokenized_sources"] == ["gec", "split", "wnc"]
    # generic text keeps its line breaks
    assert all("\nLine two." in r["output"] for r in train if r["task"] == "generic")
    # dev rows carry every reference of their source sentence
    assert all(len(r["references"]) == 2 for r in dev if r["task"] == "grammaticality" and "has" in r["output"])
    # the manifest counts what the files hold
    counts = manifest["counts"]
    assert counts["train"] == len(train) and counts["dev"] == len(dev)
    assert sum(counts["train_by_task"].values()) == len(train) == sum(counts["train_by_origin"].values())
    assert set(counts["train_by_task"]) == {"grammaticality", "clarity", "neutralization", "generic"}
    assert sum(sum(c.values()) for c in manifest["instructions"].values()) == len(train)
    assert set(manifest["inputs"]) == {"gec/src", "gec/ref0", "gec/ref1", "split.tsv", "wnc_sample/pre.train", "wnc_sample/post.train", "alpaca.json"}
    assert manifest["seed"] == 7 and manifest["contamination"]["matches"] == 0


def test_held_out_items_never_reach_train_or_dev(tmp_path, data):
    result = build_mix(write_recipe(tmp_path, data), tmp_path / "out")
    report = result.manifest["holdout"]["eval_sets"]
    assert report["wnc_dev"]["status"] == "present" and report["wnc_dev"]["items"] == 2
    assert report["wnc_dev"]["matches"] == 1 and result.manifest["sources"]["wnc"]["held_out"] == 1
    assert report["jfleg_dev"]["status"] == "absent"
    texts = {match_key(r[k]) for f in ("train.jsonl", "dev.jsonl") for r in rows(tmp_path / "out" / f) for k in ("input", "output")}
    assert match_key(HELD_OUT_PAIR[0]) not in texts and match_key(HELD_OUT_PAIR[1]) not in texts


def test_same_recipe_and_seed_give_byte_identical_output(tmp_path, data):
    recipe = write_recipe(tmp_path, data)
    build_mix(recipe, tmp_path / "a")
    build_mix(recipe, tmp_path / "b")
    for name in ("train.jsonl", "dev.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = write_recipe(tmp_path, data, seed=8)
    build_mix(other, tmp_path / "c")
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()


def plant_contamination(data: Path) -> None:
    # the stsb test split (a 'writing' set, not held out) holds a sentence that a training source also has
    write(data, "stsb_en/stsb-en-test.csv", f'"{PLANTED}",Something else entirely.,4.5\nA cat sat.,A cat was sitting.,4.9\n')
    with open(data / "split.tsv", "a", encoding="utf-8") as fh:
        fh.write(f"{PLANTED}\tA sentence . <::::> The test split also holds it .\n")


def test_contamination_is_refused(tmp_path, data):
    plant_contamination(data)
    with pytest.raises(ContaminationError, match=r"1 training records contain evaluation items.*eval set 'stsb'.*--drop-contaminated"):
        build_mix(write_recipe(tmp_path, data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_contamination_is_dropped_by_flag(tmp_path, data):
    plant_contamination(data)
    recipe = write_recipe(tmp_path, data)
    result = build_mix(recipe, tmp_path / "out", drop_contaminated=True)
    report = result.manifest["contamination"]
    assert report["mode"] == "drop" and report["matches"] == report["dropped"] == 1
    assert report["eval_sets"]["stsb"]["status"] == "present" and report["eval_sets"]["stsb"]["matches"] == 1
    assert result.manifest["sources"]["split"]["contaminated"] == 1
    texts = [r["input"] for f in ("train.jsonl", "dev.jsonl") for r in rows(tmp_path / "out" / f)]
    assert PLANTED not in texts
    # the recipe can ask for dropping too
    again = build_mix(write_recipe(tmp_path, data, contamination="drop"), tmp_path / "out2")
    assert again.manifest["contamination"]["dropped"] == 1


def test_failing_build_leaves_no_output(tmp_path, data):
    with open(data / "split.tsv", "a", encoding="utf-8") as fh:
        fh.write("a line without a tab\n")
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=rf"^{data / 'split.tsv'}:31: expected 2 tab-separated fields"):
        build_mix(write_recipe(tmp_path, data), out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "files, read, line, message",
    [
        ({"bad.jsonl": '{"instruction": "a", "output": "b"}\n{"instruction": \n'},
         {"format": "jsonl", "path": "bad.jsonl"}, 2, "bad JSON"),
        ({"bad.tsv": "a\tb\nc\td\te\n"}, {"format": "wikisplit_tsv", "path": "bad.tsv"}, 2, "tab-separated fields"),
        ({"s": "a\nb\nc\n", "r": "A\nB\n"}, {"format": "parallel", "source": "s", "references": ["r"]}, 3, "line counts differ"),
        ({"bad.m2": "S a b .\nA 0 1|||R|||c|||REQUIRED|||-NONE-|||0\n\nA 0 1|||R|||c|||REQUIRED|||-NONE-|||0\n"},
         {"format": "m2", "path": "bad.m2"}, 4, "does not start with an 'S' line"),
        ({"s": b"ok\n\xc3(\n", "r": "A\nB\n"}, {"format": "parallel", "source": "s", "references": ["r"]}, 2, "not valid UTF-8"),
    ],
)  # fmt: skip
def test_malformed_input_stops_the_build_before_anything_is_written(tmp_path, data, files, read, line, message):
    for rel, content in files.items():
        (data / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    bad_file = data / next(iter(files))  # the first file named is the one at fault
    sources = recipe_dict()["sources"] + [{"name": "bad", "task": "generic", "read": read}]
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as err:
        build_mix(write_recipe(tmp_path, data, sources=sources), out)
    assert str(err.value).startswith(f"{bad_file}:{line}: ") and message in str(err.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failing_build_keeps_an_existing_output(tmp_path, data):
    recipe = write_recipe(tmp_path, data)
    out = tmp_path / "out"
    build_mix(recipe, out)
    before = (out / "train.jsonl").read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        build_mix(recipe, out)
    write(data, "gec/ref1", "too short\n")
    with pytest.raises(DataFormatError, match="line counts differ"):
        build_mix(recipe, out, overwrite=True)
    assert (out / "train.jsonl").read_bytes() == before


def test_overwrite_replaces_the_output(tmp_path, data):
    out = tmp_path / "out"
    build_mix(write_recipe(tmp_path, data), out)
    (out / "stale.txt").write_text("old")
    build_mix(write_recipe(tmp_path, data, seed=9), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "manifest.json", "train.jsonl"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_source_file(tmp_path, data):
    (data / "alpaca.json").unlink()
    with pytest.raises(MissingDataError, match=r"alpaca\.json: file of source 'alpaca' \(recipe key sources\.3\) not found"):
        build_mix(write_recipe(tmp_path, data), tmp_path / "out")


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 1.0])
def test_unchanged_share_is_capped_per_task(tmp_path, data, share):
    # targets: the first-drawn reference; half of the gec sentences are unchanged in both references
    result = build_mix(write_recipe(tmp_path, data, unchanged_share=share, dev={"fraction": 0.0}), tmp_path / "out")
    train = [r for r in rows(tmp_path / "out" / "train.jsonl") if r["task"] == "grammaticality"]
    unchanged = sum(r["input"] == r["output"] for r in train)
    report = result.manifest["unchanged"]["grammaticality"]
    assert report["pool_share"] == 0.5 and report["max_share"] == share
    assert report["train_unchanged"] == unchanged and report["train"] == len(train)
    assert unchanged / len(train) <= share
    if share == 1.0:
        assert unchanged == 20
    elif share > 0:
        assert unchanged == int(share * 20 / (1 - share))  # 20 changed pairs are all kept
    else:
        assert unchanged == 0 and len(train) == 20


def test_per_task_share_and_changed_targets(tmp_path, data):
    sources = recipe_dict()["sources"]
    sources[0]["targets"] = "changed"
    result = build_mix(
        write_recipe(tmp_path, data, sources=sources, unchanged_share_per_task={"gec": 0.0}), tmp_path / "out"
    )
    assert result.manifest["unchanged"]["grammaticality"]["max_share"] == 0.0
    assert result.manifest["unchanged"]["clarity"]["max_share"] == 0.1


def test_targets_all_and_dev_grouped_by_source_sentence(tmp_path, data):
    sources = recipe_dict()["sources"]
    sources[0]["targets"] = "all"
    build_mix(write_recipe(tmp_path, data, sources=sources, unchanged_share=1.0, dev={"fraction": 0.25, "max_per_source": 5}), tmp_path / "out")
    train = [r for r in rows(tmp_path / "out" / "train.jsonl") if r["origin"] == "gec"]
    dev = [r for r in rows(tmp_path / "out" / "dev.jsonl") if r["origin"] == "gec"]
    assert len(dev) == 5
    dev_inputs = {r["input"] for r in dev}
    assert not dev_inputs & {r["input"] for r in train}
    assert len(train) + sum(len(r["references"]) for r in dev) == 60  # 20 changed x 2 refs + 20 unchanged x 1


def test_dedup_exact_and_normalised(tmp_path, data):
    with open(data / "split.tsv", "a", encoding="utf-8") as fh:
        fh.write("Clause 0 is long , and clause 0 goes on .\tClause 0 is long . <::::> Clause 0 goes on .\n")
        fh.write("clause 1 is LONG, and clause 1 goes on!\tClause 1 is long . <::::> Clause 1 goes on .\n")
    result = build_mix(write_recipe(tmp_path, data), tmp_path / "out")
    stats = result.manifest["sources"]["split"]
    assert (stats["duplicates_exact"], stats["duplicates_normalised"]) == (1, 1)


def test_global_size_weights_and_caps(tmp_path, data):
    sources = recipe_dict()["sources"]
    sources[1]["weight"] = 3.0
    sources[3]["cap"] = 4
    result = build_mix(write_recipe(tmp_path, data, sources=sources, size=30, dev={"fraction": 0.0}), tmp_path / "out")
    by_origin = result.manifest["counts"]["train_by_origin"]
    assert result.train == 30 and by_origin["alpaca"] == 4
    # alpaca's cap leaves 26 for gec : split : wnc = 1 : 3 : 1, and wnc has only 11 records left
    assert by_origin == {"alpaca": 4, "gec": 5, "split": 16, "wnc": 5}
    # `weights` replaces sources' weights by name (how a recipe with `base` moves the proportions)
    reweighted = write_recipe(tmp_path, data, sources=sources, size=30, dev={"fraction": 0.0},
                              weights={"split": 1.0, "wnc": 0.0})
    result = build_mix(reweighted, tmp_path / "out2")
    assert result.manifest["counts"]["train_by_origin"] == {"alpaca": 4, "gec": 13, "split": 13}


def test_quota_helpers():
    assert _allocate(None, [5, 7], [1, 1]) == [5, 7]
    assert _allocate(10, [100, 100], [1, 3]) == [3, 7]  # 2.5 : 7.5, the tie goes to the first source
    assert _allocate(10, [2, 100], [1, 1]) == [2, 8]
    assert _allocate(50, [10, 10], [1, 1]) == [10, 10]
    assert _allocate(10, [10, 10], [0, 1]) == [0, 10]
    # a small source's shortfall stays inside its task first
    assert _quotas(40, ["a", "a", "b"], [5, 100, 100], [1, 1, 2]) == [5, 15, 20]


def test_recipe_errors_name_the_file_and_the_key(tmp_path, data):
    cases = [
        ({"colour": "red"}, "key 'colour': Extra inputs are not permitted"),
        ({"sources": [{"name": "x", "task": "summarise", "read": {"format": "jsonl", "path": "a"}}]}, "key 'sources.0.task'"),
        ({"sources": [{"name": "x", "task": "generic", "read": {"format": "jsonl"}}]}, "key 'sources.0.read.path': Field required"),
        ({"sources": [{"name": "x", "task": "generic", "read": {"format": "csv", "path": "a"}}]}, "key 'sources.0.read'"),
        ({"sources": [{"name": "x", "task": "generic", "read": {"format": "jsonl", "path": "a", "sep": ","}}]}, "key 'sources.0.read.sep'"),
        ({"unchanged_share": 2}, "key 'unchanged_share'"),
        ({"holdout_suites": ["nope"]}, "unknown suite 'nope'"),
        ({"sources": recipe_dict()["sources"][:1] * 2}, "source name 'gec' is used twice"),
        ({"exclude_tasks": ["grammaticality", "clarity", "neutralization", "generic"]}, "leave no source"),
        ({"weights": {"nope": 1.0}}, "weights: no source named 'nope'"),
        ({"weights": {"gec": -1.0}}, "weights: 'gec' must be at least 0"),
    ]
    for overrides, message in cases:
        path = write_recipe(tmp_path, data, **overrides)
        with pytest.raises(RecipeError) as err:
            load_mix_recipe(path)
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    bad = write(tmp_path, "bad.yaml", "name: x\nsources: [\n")
    with pytest.raises(RecipeError, match=rf"^{bad}:\d+: not valid YAML"):
        load_mix_recipe(bad)
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_mix_recipe(tmp_path / "absent.yaml")


def test_base_recipes_and_task_filters(tmp_path, data):
    base = write_recipe(tmp_path, data)
    child = write(tmp_path, "sub/child.yaml", f"base: ../{base.name}\nname: child\nexclude_tasks: [generic]\nseed: 3\n")
    recipe = load_mix_recipe(child)
    assert recipe.name == "child" and recipe.seed == 3 and recipe.data_dir == str(data)
    relative = write(tmp_path, "rel.yaml", yaml.safe_dump({**recipe_dict(), "data_dir": "data"}))
    nested = load_mix_recipe(write(tmp_path, "sub/nested.yaml", "base: ../rel.yaml\nname: nested\n"))
    assert nested.data_dir == "../data"  # the base's data_dir is relative to the base file
    assert resolve_data_dir(None, nested, tmp_path / "sub/nested.yaml").resolve() == data.resolve()
    assert relative.exists()
    assert [s.name for s in recipe.sources] == ["gec", "split", "wnc"]
    only = write(tmp_path, "only.yaml", f"base: {base.name}\nname: only\ninclude_tasks: [alpaca]\n")
    assert [s.task for s in load_mix_recipe(only).sources] == ["generic"]
    extra = {"name": "more", "task": "clarity", "read": {"format": "wikisplit_tsv", "path": "split.tsv"}}
    added = write(tmp_path, "added.yaml", yaml.safe_dump({"base": base.name, "name": "added", "add_sources": [extra]}))
    assert [s.name for s in load_mix_recipe(added).sources] == ["gec", "split", "wnc", "alpaca", "more"]
    with pytest.raises(RecipeError, match="add_sources"):
        load_mix_recipe(write(tmp_path, "bad.yaml", f"base: {base.name}\nname: bad\nadd_sources: oops\n"))
    loop = write(tmp_path, "loop.yaml", "base: loop.yaml\nname: loop\n")
    with pytest.raises(RecipeError, match="include each other"):
        load_mix_recipe(loop)


def test_task_files_register_new_tasks(tmp_path, data, monkeypatch):
    from writetune import tasks

    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(tasks, "_ALIASES", dict(tasks._ALIASES))
    write(tmp_path, "formality.yaml", "name: formality\ndescription: d\ninstructions: ['Make it formal:', 'Formalise:']\n")
    sources = [{"name": "formal", "task": "formality", "read": {"format": "wikisplit_tsv", "path": "split.tsv"}}]
    result = build_mix(write_recipe(tmp_path, data, task_files=["formality.yaml"], sources=sources), tmp_path / "out")
    assert result.manifest["counts"]["train_by_task"] == {"formality": result.train}
    assert set(result.manifest["instructions"]["formality"]) <= {"Make it formal:", "Formalise:"}


def test_data_dir_precedence(tmp_path, data, monkeypatch):
    recipe = load_mix_recipe(write_recipe(tmp_path, data, data_dir="data"))
    recipe_path = tmp_path / "recipe.yaml"
    assert resolve_data_dir(None, recipe, recipe_path) == tmp_path / "data"
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("WRITETUNE_DATA", str(other))
    assert resolve_data_dir(None, recipe, recipe_path) == other
    assert resolve_data_dir(data, recipe, recipe_path) == data
    monkeypatch.delenv("WRITETUNE_DATA")
    with pytest.raises(MissingDataError, match="data directory"):
        resolve_data_dir(tmp_path / "absent", recipe, recipe_path)
    with pytest.raises(RecipeError, match="no data directory"):
        resolve_data_dir(None, recipe.model_copy(update={"data_dir": None}), recipe_path)


def test_cli_data_build(tmp_path, data):
    runner = CliRunner()
    recipe = write_recipe(tmp_path, data)
    result = runner.invoke(app, ["data", "build", str(recipe), "-o", str(tmp_path / "out"), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "grammaticality" in result.output and "contamination (refuse): 0 records" in result.output
    again = runner.invoke(app, ["data", "build", str(recipe), "-o", str(tmp_path / "out")])
    assert again.exit_code == 2 and "output directory exists" in again.output
    plant_contamination(data)
    refused = runner.invoke(app, ["data", "build", str(recipe), "-o", str(tmp_path / "new")])
    assert refused.exit_code == 2 and "--drop-contaminated" in refused.output
    dropped = runner.invoke(app, ["data", "build", str(recipe), "-o", str(tmp_path / "new"), "--drop-contaminated"])
    assert dropped.exit_code == 0 and "contamination (drop): 1 records" in dropped.output


# ---------------------------------------------------------------------------------------------------------------
# the shipped recipes


RECIPES = sorted((ROOT / "configs").glob("mix-*.yaml"))


def test_the_four_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= {"mix-paper", "mix-writing-only", "mix-generic-only", "mix-paraphrase-heldout"}


@needs_data
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_files_exist_in_the_shared_data(path):
    recipe = load_mix_recipe(path)
    for entry in recipe.sources:
        for rel in entry.read.files():
            assert (DATA / rel).is_file(), f"{path.name}: source {entry.name} reads {rel}, which is not in {DATA}"


def test_shipped_recipes_cover_their_tasks():
    tasks = {p.stem: {s.task for s in load_mix_recipe(p).sources} for p in RECIPES}
    writing = {"grammaticality", "fluency", "clarity", "coherence", "simplification", "neutralization", "paraphrase"}
    assert tasks["mix-paper"] == writing | {"generic"}
    assert tasks["mix-writing-only"] == writing
    assert tasks["mix-generic-only"] == {"generic"}
    assert tasks["mix-paraphrase-heldout"] == (writing - {"paraphrase"}) | {"generic"}


# ---------------------------------------------------------------------------------------------------------------
# fingerprint files


def write_fingerprints(data: Path, rel: str, sentences: list[str]) -> Path:
    from writetune.data.fingerprints import fingerprint

    return write(data, rel, "".join(f"{fingerprint(s)}\n" for s in sorted(sentences)))


def test_fingerprinted_sentences_are_dropped_and_reported(tmp_path, data):
    # clause 3's source, as a benchmark's fingerprint file would list it (tokenized forms share the fingerprint)
    write_fingerprints(data, "prints/bench.sha256", ["Clause 3 is long, and clause 3 goes on.", "never in any source at all"])
    recipe = write_recipe(tmp_path, data, contamination="drop", fingerprints=["prints", "absent/other.sha256"])
    result = build_mix(recipe, tmp_path / "out")
    report = result.manifest["contamination"]
    assert report["dropped"] == 1 and report["by_source"] == {"split": {"fingerprints:bench": 1}}
    assert report["fingerprints"]["fingerprints:bench"] == {
        "status": "present", "file": "prints/bench.sha256", "fingerprints": 2, "matches": 1,
        "sha256": hashlib.sha256((data / "prints/bench.sha256").read_bytes()).hexdigest(),
    }
    assert report["fingerprints"]["fingerprints:other"] == {"status": "absent", "missing": "absent/other.sha256"}
    texts = [r["input"] for f in ("train.jsonl", "dev.jsonl") for r in rows(tmp_path / "out" / f)]
    assert not any(t.startswith("Clause 3 is") for t in texts) and any(t.startswith("Clause 4 is") for t in texts)
    with pytest.raises(ContaminationError, match=r"split:.*is in eval set 'fingerprints:bench'"):
        build_mix(write_recipe(tmp_path, data, fingerprints=["prints/bench.sha256"]), tmp_path / "refused")


def test_fingerprint_paths_stay_inside_the_data_dir(tmp_path, data):
    with pytest.raises(RecipeError, match=r"fingerprints.0: path '../elsewhere' is outside the data directory"):
        build_mix(write_recipe(tmp_path, data, fingerprints=["../elsewhere"]), tmp_path / "out")


def test_a_malformed_fingerprint_file_names_its_line(tmp_path, data):
    write(data, "prints/bad.sha256", "a" * 64 + "\nnot-a-digest\n")
    with pytest.raises(DataFormatError, match=r"bad\.sha256:2: expected a lowercase SHA-256 hex digest"):
        build_mix(write_recipe(tmp_path, data, fingerprints=["prints/bad.sha256"]), tmp_path / "out")


def test_cli_reports_what_was_dropped(tmp_path, data):
    plant_contamination(data)
    result = CliRunner().invoke(app, ["data", "build", str(write_recipe(tmp_path, data, contamination="drop")),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "dropped 1 training records that overlap evaluation data: split: 1 x stsb" in " ".join(result.output.split())


# ---------------------------------------------------------------------------------------------------------------
# the shipped recipes, with and without test splits in the data directory


def data_with_test_splits(root: Path) -> Path:
    """The shared data folder (files linked, not copied) plus fixture test splits of GMEG-wiki, JFLEG and STS-B that
    share sentences with the training side, as the released test splits do."""
    import shutil

    shutil.copytree(DATA, root, copy_function=os.symlink)
    dev_sources = (DATA / "gmeg_wiki/dev/source").read_text(encoding="utf-8").splitlines()
    refs = [(DATA / f"gmeg_wiki/dev/ref{i}").read_text(encoding="utf-8").splitlines() for i in range(4)]
    picked = [5, 17, 400]
    write(root, "gmeg_wiki/test/source", "".join(dev_sources[i] + "\n" for i in picked))
    for k in range(4):
        write(root, f"gmeg_wiki/test/ref{k}", "".join(refs[k][i] + "\n" for i in picked))
    jfleg = (DATA / "jfleg/dev/dev.src").read_text(encoding="utf-8").splitlines()
    write(root, "jfleg/test/test.src", f"{jfleg[3]}\n{jfleg[700]}\n")
    for k in range(4):
        write(root, f"jfleg/test/test.ref{k}", f"{jfleg[3]}\n{jfleg[700]}\n")
    mrpc = [line for line in (DATA / "mrpc/msr-para-train.tsv").read_text(encoding="utf-8-sig").splitlines()
            if line.startswith("1\t")][:3]  # pairs rated as paraphrases, the ones the paraphrase task trains on
    pairs = [line.split("\t")[3:5] for line in mrpc]
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([a, b, "4.5"] for a, b in pairs)
    write(root, "stsb_en/stsb-en-test.csv", table.getvalue())
    return root


SHIPPED_LOCAL = [p for p in RECIPES if p.stem != "mix-paper-hub"]


@needs_data
@pytest.mark.parametrize("path", SHIPPED_LOCAL, ids=lambda p: p.stem)
def test_shipped_recipe_builds_with_and_without_test_splits(tmp_path, path):
    without = build_mix(path, tmp_path / "without", data_dir=DATA)
    assert without.manifest["contamination"]["mode"] == "drop"
    prints = without.manifest["contamination"]["fingerprints"]
    assert prints and all(r["status"] == "present" for r in prints.values())
    layout = data_with_test_splits(tmp_path / "data")
    built = build_mix(path, tmp_path / "with", data_dir=layout)
    report = built.manifest["contamination"]
    for name in ("gmeg_wiki", "jfleg", "stsb"):
        assert report["eval_sets"][name]["status"] == "present"
    tasks = {s.task for s in load_mix_recipe(path).sources}
    if "grammaticality" in tasks:
        assert report["eval_sets"]["gmeg_wiki"]["matches"] >= 3
        assert report["by_source"]["gmeg_wiki"]["gmeg_wiki"] >= 3
    if "paraphrase" in tasks:
        assert report["by_source"]["mrpc"]["stsb"] >= 3
    assert report["dropped"] == report["matches"] == sum(n for s in report["by_source"].values() for n in s.values())
    kept = {r["input"] for f in ("train.jsonl", "dev.jsonl") for r in rows(tmp_path / "with" / f)}
    planted = (layout / "gmeg_wiki/test/source").read_text(encoding="utf-8").splitlines()
    assert not {match_key(t) for t in planted} & {match_key(t) for t in kept}
    if path.stem == "mix-paper":
        again = build_mix(path, tmp_path / "again", data_dir=layout)
        for name in ("train.jsonl", "dev.jsonl", "manifest.json"):
            assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
