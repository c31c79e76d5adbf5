"""The report of a results document, on documents from real (tiny) evaluations: the markdown table's cells, bold best
values and significance marks, the interval table, the CSV, the per-task deltas, and metrics where lower is better
or where neither direction is (the direction is what each record says, not a name the report knows)."""

from __future__ import annotations

import copy
import csv
import io
import math

import pytest

from test_eval_fixtures import Factory, RecordingGenerator, write_writing_data
from writetune.evaluate import EvalConfig, Evaluation
from writetune.report import ALPHA, csv_text, markdown_report, markdown_table, task_deltas
from writetune.results import cell, load_results

SETS = ["conll2014", "jfleg", "stsb"]  # M2 F0.5 and ERRANT; GLEU; self-BLEU (lower is better), iBLEU and BLEU


class Constant(RecordingGenerator):
    """A fake model that gives every request the same answer."""

    def __init__(self, answer: str):
        super().__init__()
        self.answer = answer

    def generate(self, requests, decoding=None, on_batch=None):
        self.calls.append((list(requests), decoding))
        return [self.answer] * len(requests)


def make(spec, backend="auto", **options):
    """`garbage` answers "banana split" to everything; other specs as the evaluation tests' factory makes them."""
    return Constant("banana split") if spec == "garbage" else Factory()(spec, backend, **options)


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = write_writing_data(root / "data")
    config = EvalConfig(models=["copy", "oracle", "garbage"], data_dir=data, out=root / "eval", suite="writing",
                        sets=SETS, bootstrap=200)
    Evaluation(config, make=make, progress=False).run()
    return load_results(root / "eval")


def table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header cells and each row's cells (by system name, without the '(baseline)' suffix) of a table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = {cells[0].removesuffix(" (baseline)"): cells[1:] for cells in split[2:]}
    return split[0][1:], rows


def columns_of(document) -> list[tuple[str, str]]:
    return [(name, metric) for name in document["sets"] for metric in document["sets"][name]["metrics"]]


def expected_mark(record) -> str:
    test = record.get("vs_baseline")
    if not test or test["p_value"] >= ALPHA or test["delta"] == 0:
        return ""
    if record["better"] == "neither":
        return "*"
    return "†" if (test["delta"] > 0) == (record["better"] == "higher") else "‡"


def test_cells_are_the_scores_with_the_best_bold_and_the_marks(document):
    header, rows = table(markdown_table(document))
    cols = columns_of(document)
    assert len(header) == len(cols) and set(rows) == {"copy", "oracle", "garbage"}
    for j, (set_name, metric) in enumerate(cols):
        scores = {s: cell(document, s, set_name, metric)["score"] for s in rows}
        better = cell(document, "copy", set_name, metric)["better"]
        best = (min if better == "lower" else max)(scores.values())
        for system, cells in rows.items():
            record = cell(document, system, set_name, metric)
            text = f"{record['score']:.1f}"
            if math.isclose(record["score"], best, abs_tol=1e-9):
                text = f"**{text}**"
            assert cells[j] == text + expected_mark(record), (system, set_name, metric)


def test_marks_say_better_and_worse_in_each_direction(document):
    _, rows = table(markdown_table(document))
    cols = columns_of(document)
    at = {key: j for j, key in enumerate(cols)}
    # the copy baseline is unmarked; the oracle is significantly better everywhere
    assert not any(mark in c for c in rows["copy"] for mark in "†‡*")
    assert all(c.endswith("†") for c in rows["oracle"])
    # answering "banana split" is worse on GLEU ...
    assert rows["garbage"][at[("jfleg", "gleu")]].endswith("‡")
    # ... and on self-BLEU, where lower is better, far from the source is better than the copy's 100: a dagger
    self_bleu = cell(document, "garbage", "stsb", "self_bleu")
    assert self_bleu["better"] == "lower" and self_bleu["vs_baseline"]["delta"] < 0
    assert rows["garbage"][at[("stsb", "self_bleu")]] == f"**{self_bleu['score']:.1f}**†"
    assert cell(document, "copy", "stsb", "self_bleu")["score"] == 100.0  # the worst, and not bold
    assert rows["copy"][at[("stsb", "self_bleu")]] == "100.0"


def test_only_lower_is_better_columns_carry_the_arrow(document):
    header, _ = table(markdown_table(document))
    for head, (set_name, metric) in zip(header, columns_of(document)):
        lower = cell(document, "copy", set_name, metric)["better"] == "lower"
        assert head.endswith(" ↓") == lower, head
    assert header[0].startswith("**Grammaticality**<br>conll2014<br>M2 F0.5")
    assert sum(head.endswith(" ↓") for head in header) == 1  # self-BLEU


def test_the_direction_is_read_from_the_records(document):
    flipped = copy.deepcopy(document)
    for system in flipped["systems"]:
        for record in flipped["systems"][system]["jfleg"]:
            record["better"] = "lower"
    header, rows = table(markdown_table(flipped))
    j = columns_of(document).index(("jfleg", "gleu"))
    assert header[j].endswith(" ↓")
    scores = {s: cell(document, s, "jfleg", "gleu")["score"] for s in rows}
    lowest = min(scores, key=scores.get)
    assert rows[lowest][j].startswith("**")
    assert rows["oracle"][j] == f"{scores['oracle']:.1f}‡"  # a higher GLEU now counts as worse
    for system in flipped["systems"]:  # neither direction: no bold, and '*' for a significant difference
        for record in flipped["systems"][system]["jfleg"]:
            record["better"] = "neither"
    _, rows = table(markdown_table(flipped))
    assert rows["oracle"][j] == f"{scores['oracle']:.1f}*" and not any("**" in r[j] for r in rows.values())


def test_the_interval_table(document):
    _, rows = table(markdown_table(document, ci=True))
    for j, (set_name, metric) in enumerate(columns_of(document)):
        for system, cells in rows.items():
            record = cell(document, system, set_name, metric)
            low, high = record["ci"]
            assert cells[j] == f"{record['score']:.1f} [{low:.1f}, {high:.1f}]"
            assert low <= record["score"] <= high or math.isclose(low, high)


def test_the_csv_has_one_row_per_record(document):
    rows = list(csv.DictReader(io.StringIO(csv_text(document))))
    assert len(rows) == 3 * len(columns_of(document))
    for row in rows:
        record = cell(document, row["system"], row["set"], row["metric"])
        assert float(row["score"]) == record["score"] and float(row["ci_low"]) == record["ci"][0]
        assert row["baseline"] == "copy" and row["signature"] == record["signature"]
        if row["system"] == "copy":
            assert row["p_value"] == ""
        else:
            assert float(row["p_value"]) == record["vs_baseline"]["p_value"]


def test_task_deltas_count_lower_scores_as_gains_where_lower_is_better(document):
    deltas = task_deltas(document)
    assert set(deltas) == {"oracle", "garbage"}
    for system in deltas:
        for task, set_name, metric in (("grammaticality", "conll2014", "m2_f05"), ("fluency", "jfleg", "gleu"),
                                       ("paraphrase", "stsb", "self_bleu")):
            change = cell(document, system, set_name, metric)["score"] - cell(document, "copy", set_name, metric)[
                "score"]
            sign = -1 if cell(document, "copy", set_name, metric)["better"] == "lower" else 1
            assert deltas[system][task] == pytest.approx(sign * change)
    assert deltas["garbage"]["paraphrase"] > 0 and deltas["garbage"]["fluency"] < 0


def test_the_report_names_the_baseline_and_every_signature(document):
    text = markdown_report(document)
    assert "baseline row `copy`" in text
    for set_name, metric in columns_of(document):
        assert f"  - {metric}: `{cell(document, 'copy', set_name, metric)['signature']}`" in text


def test_a_measure_with_no_better_direction(shared_dir, tmp_path):
    """The general suite's answer length: marked '*' when it differs, never bold; the share of empty or
    truncated answers is lower-is-better."""
    def factory(spec, backend="auto", **options):
        return Constant(" ".join(["word"] * 25)) if spec == "long" else Factory()(spec, backend, **options)

    config = EvalConfig(models=["copy", "long"], data_dir=shared_dir / "data", out=tmp_path / "eval",
                        suite="general", sets=["alpaca_heldout"], limit=30, bootstrap=200)
    document = Evaluation(config, make=factory, progress=False).run()
    header, rows = table(markdown_table(document))
    metrics = document["sets"]["alpaca_heldout"]["metrics"]
    words, empty = metrics.index("answer_words"), metrics.index("empty_or_truncated")
    assert cell(document, "long", "alpaca_heldout", "answer_words")["better"] == "neither"
    assert rows["long"][words] == f"{25:.1f}*" and "**" not in rows["copy"][words]
    assert header[empty].endswith(" ↓") and not header[words].endswith(" ↓")
    assert cell(document, "copy", "alpaca_heldout", "empty_or_truncated")["score"] > 0  # inputs left empty
    assert rows["long"][empty] == "**0.0**†"
