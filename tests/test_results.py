"""The results document (`writetune.results`): what an evaluation writes is read back as written, every cell is a
list of records that say which way is better, and a document of another shape is refused with the file and the key."""

from __future__ import annotations

import copy
import json

import pytest

from test_eval_fixtures import Factory, write_writing_data
from writetune.evaluate import EvalConfig, Evaluation
from writetune.results import (
    BETTER,
    RESULTS_FILE,
    ResultsFormatError,
    cell,
    check_document,
    load_results,
    records,
    write_results,
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = EvalConfig(models=["copy", "oracle"], data_dir=write_writing_data(root / "data"), out=root / "eval",
                        suite="writing", sets=["jfleg", "stsb"], bootstrap=0)
    return Evaluation(config, make=Factory(), progress=False).run(), root / "eval"


def test_the_written_document_reads_back_as_it_was_returned(evaluated):
    document, out = evaluated
    assert load_results(out) == load_results(out / RESULTS_FILE) == json.loads(json.dumps(document))
    found = list(records(document))
    assert len(found) == 2 * (1 + 3)  # two rows; GLEU on jfleg, three metrics on stsb
    assert all(isinstance(value, list) for sets in document["systems"].values() for value in sets.values())
    assert {record["better"] for _, _, record in found} <= set(BETTER)
    assert [s for s, _, _ in records(document, "oracle")] == ["oracle"] * 4
    assert cell(document, "oracle", "stsb", "ibleu")["metric"] == "ibleu"
    assert cell(document, "oracle", "stsb", "gleu") is None and cell(document, "nobody", "stsb", "bleu") is None


def test_a_cell_of_one_record_is_refused_with_the_file_and_key(evaluated, tmp_path):
    document, _ = evaluated
    older = copy.deepcopy(document)
    older["systems"]["oracle"]["jfleg"] = older["systems"]["oracle"]["jfleg"][0]  # the shape before cells were lists
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(older), encoding="utf-8")
    with pytest.raises(ResultsFormatError, match=r"results.json: key 'systems.oracle.jfleg': a cell must be a list"):
        load_results(tmp_path)


@pytest.mark.parametrize("change, key", [
    (lambda d: d["systems"]["copy"]["stsb"][1].pop("better"), r"systems.copy.stsb\[1\].better"),
    (lambda d: d["systems"]["copy"]["stsb"][0].update(better="up"), r"systems.copy.stsb\[0\].better': 'up'"),
    (lambda d: d["systems"]["copy"]["stsb"].append("a string"), r"systems.copy.stsb\[3\]': not a score record"),
    (lambda d: d.pop("systems"), "no 'systems'"),
])
def test_records_must_say_which_way_is_better(evaluated, tmp_path, change, key):
    document = copy.deepcopy(evaluated[0])
    change(document)
    with pytest.raises(ResultsFormatError, match=key):
        check_document(document, "doc.json")
    with pytest.raises(ResultsFormatError, match=key):
        write_results(document, tmp_path)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_a_file_that_is_not_json_or_absent_is_named(tmp_path):
    (tmp_path / RESULTS_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ResultsFormatError, match="results.json: not a results document"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "absent.json")
