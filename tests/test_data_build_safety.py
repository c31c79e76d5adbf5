"""What a build may touch: an output directory that holds or lies inside an input is refused, --force replaces only
a previous build's output, sources that yield nothing and empty mixes are errors, recipe paths stay inside the data
directory, a killed build's temporary directories are cleaned, the output is swapped in without a moment missing,
and outputs get the user's umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from test_data_build import data, no_env_data_dir, recipe_dict, write, write_recipe  # noqa: F401 - fixtures
from typer.testing import CliRunner

from writetune.atomic import write_text_atomic
from writetune.cli import app
from writetune.config import RecipeError
from writetune.data.build import OutputExistsError, build_mix
from writetune.data.readers import DataError


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_output_dir_holding_or_inside_an_input_is_refused(tmp_path, data):
    recipe = write_recipe(tmp_path, data)
    before = tree(tmp_path)
    runner = CliRunner()
    for out in (data, tmp_path, data / "mixes" / "new", tmp_path.parent):
        result = runner.invoke(app, ["data", "build", str(recipe), "-o", str(out), "--force"])
        assert result.exit_code != 0 and ("contains the input" in result.output or "is inside the input"
                                          in result.output), result.output
    assert tree(tmp_path) == before  # the corpora and the recipe are untouched


def test_force_replaces_only_a_previous_builds_output(tmp_path, data):
    recipe = write_recipe(tmp_path, data)
    mine = tmp_path / "my-notes"
    write(mine, "thesis.txt", "three years of work")
    with pytest.raises(OutputExistsError, match="no manifest.json"):
        build_mix(recipe, mine, overwrite=True)
    assert (mine / "thesis.txt").read_text() == "three years of work"
    out = tmp_path / "mix"
    build_mix(recipe, out)
    build_mix(write_recipe(tmp_path, data, seed=3), out, overwrite=True)  # a previous build: replaced
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


@pytest.mark.parametrize("rel, read", [
    ("empty.m2", {"format": "m2", "path": "empty.m2"}),
    ("empty.tsv", {"format": "wikisplit_tsv", "path": "empty.tsv"}),
    ("empty.jsonl", {"format": "jsonl", "path": "empty.jsonl"}),
])
def test_a_source_that_yields_nothing_is_an_error_or_a_recorded_warning(tmp_path, data, rel, read):
    write(data, rel, "")
    sources = recipe_dict()["sources"] + [{"name": "empty", "task": "grammar", "read": read}]
    with pytest.raises(DataError, match=rf"^{data / rel}: source 'empty' \(recipe key sources\.4\) yields no"):
        build_mix(write_recipe(tmp_path, data, sources=sources), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    sources[-1]["allow_empty"] = True
    result = build_mix(write_recipe(tmp_path, data, sources=sources), tmp_path / "out")
    assert result.manifest["warnings"] == [f"{rel}: source 'empty' (recipe key sources.4) yields no examples"]


def test_an_empty_mix_is_an_error(tmp_path, data):
    weights = {"gec": 0, "split": 0, "wnc": 0, "alpaca": 0}
    with pytest.raises(DataError, match="the mix is empty"):
        build_mix(write_recipe(tmp_path, data, size=50, weights=weights), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_recipe_paths_stay_inside_the_data_dir(tmp_path, data):
    outside = write(tmp_path, "outside.jsonl", json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    for path in ("../../../../etc/passwd", str(outside)):
        sources = recipe_dict()["sources"] + [{"name": "far", "task": "generic",
                                               "read": {"format": "jsonl", "path": path}}]
        with pytest.raises(RecipeError, match=r"source 'far' \(recipe key sources\.4\): path .* is outside the data"):
            build_mix(write_recipe(tmp_path, data, sources=sources), tmp_path / "out")
    sources = recipe_dict()["sources"] + [{"name": "far", "task": "generic",
                                           "read": {"format": "jsonl", "path": str(outside)}}]
    result = build_mix(write_recipe(tmp_path, data, sources=sources, paths_outside_data_dir=True), tmp_path / "out")
    assert "../outside.jsonl" in result.manifest["inputs"]
    assert not any(os.path.isabs(key) for key in result.manifest["inputs"])


def test_a_killed_builds_temp_dirs_are_cleaned_and_the_swap_leaves_no_gap(tmp_path, data, monkeypatch):
    recipe = write_recipe(tmp_path, data)
    out = tmp_path / "mix"
    build_mix(recipe, out)
    dead = [tmp_path / ".mix.tmp-4194303-abcd", tmp_path / ".mix.old-4194303-efgh", tmp_path / ".mix.tmp-q1w2e3"]
    live = tmp_path / f".mix.tmp-{os.getppid()}-zzzz"  # a build still running in another process
    for d in (*dead, live):
        write(d, "train.jsonl", "partial")
    other = write(tmp_path, ".mixture.tmp-1-abcd/keep", "another output's")

    real_replace = os.replace

    def replace_and_check(src, dst):
        real_replace(src, dst)
        assert out.is_dir(), "the output was missing between two renames"

    monkeypatch.setattr(os, "replace", replace_and_check)
    build_mix(write_recipe(tmp_path, data, seed=5), out, overwrite=True)
    assert not any(d.exists() for d in dead) and live.exists() and other.exists()
    assert json.loads((out / "manifest.json").read_text())["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".mix.")) == [live.name]


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_outputs_get_the_users_umask(tmp_path, data, umask, dir_mode, file_mode):
    recipe = write_recipe(tmp_path, data)
    old = os.umask(umask)
    try:
        build_mix(recipe, tmp_path / "out")
        written = write_text_atomic(tmp_path / "notes" / "report.md", "text\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == dir_mode
    for name in ("train.jsonl", "dev.jsonl", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == file_mode
    assert stat.S_IMODE(written.stat().st_mode) == file_mode

