"""`writetune run` end to end on the tiny model and real corpora: every stage runs, the run directory is a model
spec, and a second run skips the finished stages without generating again."""

import json

import pytest
from typer.testing import CliRunner

from writetune.cli import app
from writetune.config import RecipeError
from writetune.pipeline import load_run_recipe, run_pipeline

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _recipes(tmp_path, tiny_model_dir):
    (tmp_path / "mix.yaml").write_text(
        f"base: {REPO / 'configs' / 'mix-paper.yaml'}\nname: tiny-mix\nsize: 40\n"
        "include_tasks: [fluency, simplification]\n", encoding="utf-8")
    (tmp_path / "train.yaml").write_text(
        f"model: {tiny_model_dir}\ndata: unused\noutput_dir: unused\nmethod: lora\nmax_steps: 2\nprecision: fp32\n"
        "batch: {tokens: 512, grad_accum: 1}\ncheckpoint: {every: 1, keep_last: 1}\n"
        "eval: {every: 0, at_start: false, at_end: false}\nlog: {tensorboard: false, progress: false}\n",
        encoding="utf-8")
    (tmp_path / "run.yaml").write_text(
        "data: mix.yaml\ntrain: train.yaml\n"
        "eval: {sets: [jfleg_dev, asset_dev], limit: 4, bootstrap: 20, max_new_tokens: 8, batch_size: 4}\n",
        encoding="utf-8")
    return tmp_path / "run.yaml"


def test_run_builds_trains_evaluates_and_then_skips(tmp_path, tiny_model_dir, shared_dir, monkeypatch):
    recipe = _recipes(tmp_path, tiny_model_dir)
    out = tmp_path / "run"
    result = run_pipeline(recipe, out, data_dir=shared_dir / "data")
    assert result.stages == {"data": "done", "train": "done", "eval": "done"}
    assert set(result.seconds) == set(result.stages) and all(s > 0 for s in result.seconds.values())
    assert result.format_stages()[1].startswith("train: done (") and result.format_stages()[1].endswith(" s)")
    assert (out / "data" / "train.jsonl").is_file() and (out / "model").is_dir()
    systems = result.results["systems"]
    assert set(systems) == {str(tiny_model_dir), "copy", "tuned"}
    assert result.results["baseline"] == str(tiny_model_dir)
    for rows in systems.values():
        assert set(rows) == {"jfleg_dev", "asset_dev"}
    assert (out / "eval" / "report.md").is_file() and (out / "eval" / "results.json").is_file()

    from writetune.generate import TransformersGenerator

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished run generated again")

    monkeypatch.setattr(TransformersGenerator, "generate", no_generation)
    again = run_pipeline(recipe, out, data_dir=shared_dir / "data")
    assert again.stages["data"] == again.stages["train"] == "skipped (already complete)"
    assert json.loads((out / "eval" / "results.json").read_text())["systems"].keys() == systems.keys()

    predictions = [path for path in sorted((out / "eval" / "predictions").glob("*.asset_dev.jsonl"))
                   if not path.name.startswith("copy.")]
    assert predictions, "no predictions were written"
    predictions[-1].unlink()  # the control: with a set's predictions gone, the run must generate them again
    with pytest.raises(AssertionError, match="generated again"):
        run_pipeline(recipe, out, data_dir=shared_dir / "data")


def test_run_refuses_a_directory_of_another_recipe(tmp_path, tiny_model_dir):
    recipe = _recipes(tmp_path, tiny_model_dir)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.yaml").write_text("data: other.yaml\ntrain: train.yaml\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="different recipe"):
        run_pipeline(recipe, out)


def test_bad_run_recipe_names_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: m.yaml\ntrain: t.yaml\neval: {limit: 0}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"run.yaml: key 'eval.limit'"):
        load_run_recipe(path)
    path.write_text("data: m.yaml\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "key 'train'" in result.output


def test_shipped_quickstart_recipe_is_valid():
    recipe = load_run_recipe(REPO / "configs" / "quickstart.yaml")
    assert recipe.eval.suite == "writing-dev" and "copy" in recipe.eval.baselines


def test_the_base_row_is_the_baseline_under_every_decoding(tmp_path):
    from writetune.evaluate import parse_systems
    from writetune.pipeline import EvalStage, eval_config

    stage = EvalStage(baselines=["copy", "base"], decodings=["greedy", "beam4"])
    config = eval_config(stage, ["tuned=runs/x"], "smollm2-135m", tmp_path, tmp_path / "eval")
    names = [s.name for s in parse_systems(config.models, config.decodings)]
    assert config.baseline == "smollm2-135m [greedy]" and config.baseline in names
    assert names[-1] == "tuned [beam4]"


def test_the_eval_stage_passes_the_answer_budget(tmp_path):
    from writetune.pipeline import EvalStage, eval_config

    stage = EvalStage(length_ratio=1.5, length_slack=8, max_new_tokens=128)
    config = eval_config(stage, ["tuned=runs/x"], "smollm2-135m", tmp_path, tmp_path / "eval")
    assert (config.length_ratio, config.length_slack, config.max_new_tokens) == (1.5, 8, 128)
    with pytest.raises(ValueError, match="length_ratio"):
        EvalStage(length_ratio=0)
