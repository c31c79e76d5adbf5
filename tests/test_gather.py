"""`writetune report DIR...`: evaluations of several directories gathered into one page (base row once, colliding
names prefixed, intervals and significance marks, the minimum-detectable-difference row, costs), and directories that
cannot share a table refused with the file and the key."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from test_eval_fixtures import Factory, write_writing_data
from writetune.cli import app
from writetune.evaluate import EvalConfig, Evaluation
from writetune.gather import (
    PAGE_FILE,
    Z_ALPHA,
    Z_POWER,
    IncomparableResults,
    detectable_differences,
    find_results,
    gather,
    minimum_detectable_difference,
    write_results_page,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_writing_data(tmp_path_factory.mktemp("data"))


def evaluate(data, out, models, **kwargs):
    kwargs.setdefault("bootstrap", 60)
    kwargs.setdefault("sets", ["jfleg", "asset", "wnc"])
    config = EvalConfig(models=models, data_dir=data, out=out, suite="writing", **kwargs)
    Evaluation(config, make=Factory(), progress=False).run()
    return out


def test_page_gathers_rows_once_and_prefixes_colliding_names(data, tmp_path):
    evaluate(data, tmp_path / "grid-a" / "eval", ["copy", "oracle"])
    second = evaluate(data, tmp_path / "grid-b" / "eval", ["copy", "oracle=echo", "other=echo"])
    sources = [find_results(tmp_path / "grid-a"), find_results(second)]
    document = gather(sources)
    assert list(document["systems"]) == ["copy", "grid-a/oracle", "grid-b/oracle", "other"]
    assert document["origin"]["grid-b/oracle"] == str(second)
    assert document["systems"]["grid-a/oracle"] != document["systems"]["grid-b/oracle"]
    again = evaluate(data, tmp_path / "grid-c" / "eval", ["copy", "oracle"])  # grid-a's oracle, evaluated again
    assert list(gather(sources + [find_results(again)])["systems"]) == list(document["systems"])
    page = write_results_page([tmp_path / "grid-a", second], tmp_path / "page")
    text = page.read_text(encoding="utf-8")
    oracle_row = next(line for line in text.splitlines() if line.startswith("| grid-a/oracle |"))
    record = document["systems"]["grid-a/oracle"]["jfleg"][0]
    assert f"{record['score']:.1f} [{record['ci'][0]:.1f}, {record['ci'][1]:.1f}]†" in oracle_row
    assert "| *MDD, 80% power* |" in text and "## Cost" in text
    assert (tmp_path / "page" / "plots" / "scores.png").stat().st_size > 1000


def test_minimum_detectable_difference_from_the_paired_bootstrap(data, tmp_path):
    out = evaluate(data, tmp_path / "e", ["copy", "oracle", "other=echo"])
    document = gather([find_results(out)])
    mdd = detectable_differences(document)
    intervals = [document["systems"][s]["jfleg"][0]["vs_baseline"]["delta_ci"] for s in ("oracle", "other")]
    expected = statistics.median((Z_ALPHA + Z_POWER) * (hi - lo) / (2 * Z_ALPHA) for lo, hi in intervals)
    assert mdd[("jfleg", "gleu")] == pytest.approx(expected)
    assert minimum_detectable_difference((-1.0, 1.0)) == pytest.approx((Z_ALPHA + Z_POWER) / Z_ALPHA)


def test_cost_columns_come_from_the_evaluation(data, tmp_path):
    out = evaluate(data, tmp_path / "e", ["copy", "oracle"])
    text = write_results_page([out], tmp_path / "page").read_text()
    timing = json.loads((out / "results.json").read_text())["timing"]["generation"]["oracle"]
    assert all("peak_memory_bytes" in t for t in timing.values())
    cost_lines = text.split("## Cost", 1)[1].splitlines()
    assert any(line.startswith("| copy |") for line in cost_lines)


def test_a_trained_rows_cost_is_kept_in_the_document_after_its_run_is_gone(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    trained = {"wall_s": 1234.0, "hardware": "2-core test CPU", "method": "lora", "trainable_params": 4884480,
               "total_params": 139399488}
    (run / "train_result.json").write_text(json.dumps(trained))
    out = evaluate(data, tmp_path / "e", ["copy", f"tuned={run}"])
    assert json.loads((out / "results.json").read_text())["cost"]["tuned"] == trained
    for item in run.iterdir():
        item.unlink()
    run.rmdir()
    text = write_results_page([out], tmp_path / "page").read_text()
    tuned_cost = next(line for line in text.split("## Cost", 1)[1].splitlines() if line.startswith("| tuned |"))
    assert "| 20.6 min (lora) | 2-core test CPU | 4,884,480 / 139,399,488 |" in tuned_cost


def test_sampled_seeds_get_mean_and_spread_and_each_row_its_seconds_per_100(data, tmp_path):
    out = evaluate(data, tmp_path / "e", ["copy", "oracle", "other=echo"],
                   decodings=["greedy", "sample@1", "sample@2", "sample@3"])
    document = json.loads((out / "results.json").read_text())
    seeded = [f"oracle [sample@{k}]" for k in (1, 2, 3)]
    assert [document["system_info"][r]["decoding"].split(";")[1] for r in seeded] == \
        [f"t=0.7,p=0.9,seed={k}" for k in (1, 2, 3)]
    text = write_results_page([out], tmp_path / "page").read_text()
    spread = text.split("## Sampling over seeds", 1)[1].split("## Cost", 1)[0]
    row = next(line for line in spread.splitlines() if line.startswith("| oracle [sample, 3 seeds] |"))
    scores = [document["systems"][r]["jfleg"][0]["score"] for r in seeded]
    assert f"{statistics.mean(scores):.1f} ± {statistics.stdev(scores):.1f}" in row.split(" | ")[1]
    assert any(line.startswith("| other [sample, 3 seeds] |") for line in spread.splitlines())
    timing = document["timing"]["generation"]["oracle [greedy]"]
    per_100 = 100 * sum(t["seconds"] for t in timing.values()) / sum(t["requests"] for t in timing.values())
    cost_row = next(line for line in text.split("## Cost", 1)[1].splitlines() if line.startswith("| oracle [greedy] |"))
    assert f"| {per_100:.1f} |" in cost_row
    assert "## Sampling over seeds" in (out / "report.md").read_text()


@pytest.mark.parametrize("change, key", [
    ({"sets": ["jfleg", "asset"]}, "key 'sets'"),
    ({"bootstrap": 30}, "signature"),
    ({"baseline": "oracle"}, "key 'baseline'"),
    ({"limit": 2}, "key 'sets.jfleg.n'"),
])
def test_incomparable_directories_are_refused(data, tmp_path, change, key):
    first = evaluate(data, tmp_path / "a", ["copy", "oracle"])
    second = evaluate(data, tmp_path / "b", ["copy", "oracle"], **change)
    with pytest.raises(IncomparableResults, match=key) as caught:
        gather([find_results(first), find_results(second)])
    assert str(second / "results.json") in str(caught.value)
    result = CliRunner().invoke(app, ["report", str(first), str(second), "-o", str(tmp_path / "page")])
    assert result.exit_code == 2 and key in result.output and not (tmp_path / "page" / PAGE_FILE).exists()


def test_a_directory_without_results_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_results(tmp_path)
