"""`writetune train` / `writetune export` end to end on the tiny model, and the in-training evaluation's scoring."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from support.train import tiny_recipe, write_recipe
from writetune.cli import app
from writetune.data.record import Record
from writetune.train.indev import metric_for_task, score_outputs, select_subsets
from writetune.train.logs import read_metrics

runner = CliRunner()


def test_train_command_logs_metric_and_copy_rate_per_task(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_model_dir, max_steps=4, eval__every=2, eval__at_start=True,
                         eval__generate_per_task=3, eval__max_new_tokens=6, log__tensorboard=True)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = runner.invoke(app, ["train", str(path), "--set", "eval.loss_examples=6"])
    assert result.exit_code == 0, result.output
    run = Path(recipe["output_dir"])
    evals = [r for r in read_metrics(run) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4]
    for record in evals:
        assert record["dev_loss"] > 0
        assert set(record["tasks"]) == {"grammaticality", "simplification", "fluency"}  # generic has no metric
        for task, scores in record["tasks"].items():
            assert scores["metric"] == metric_for_task(task)
            assert 0 <= scores["copy_rate"] <= 100 and scores["n"] >= 1
    assert evals[-1]["dev_loss"] < evals[0]["dev_loss"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "recipe.yaml").is_file() and (run / "train_result.json").is_file()

    out = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "merged")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "m.gguf"), "--format", "gguf"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "m.gguf").stat().st_size > 0


def test_train_command_bad_recipe_is_one_line_and_exit_2(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_model_dir)
    recipe["lora"]["rank"] = -1
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "key 'lora.rank'" in result.output and "Traceback" not in result.output


def test_metric_choice_and_copy_rate():
    assert metric_for_task("grammar") == "errant"  # m2 needs gold edit files; errant works from references
    assert metric_for_task("fluency") == "gleu"
    assert metric_for_task("simplification") == "sari"
    assert metric_for_task("generic") is None
    assert metric_for_task("simplification", {"simplification": "bleu"}) == "bleu"
    records = [Record(id=str(i), task="simplification", instruction="Simplify this sentence:", input=src,
                      output=ref, references=(ref,))
               for i, (src, ref) in enumerate([("The committee deliberated at length.", "The committee talked."),
                                               ("He purchased a vehicle.", "He bought a car.")])]
    copied = score_outputs("sari", [r.input for r in records], records)
    assert copied["copy_rate"] == 100.0 and copied["metric"] == "sari"
    perfect = score_outputs("sari", [r.output for r in records], records)
    assert perfect["copy_rate"] == 0.0 and perfect["score"] > copied["score"]
    subsets = select_subsets(records * 3, per_task=2, seed=0)
    assert len(subsets) == 1 and len(subsets[0].records) == 2
