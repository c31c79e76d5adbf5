"""The suite runner on a fixture data directory in the test-split layout: results.json shape, resume without
regeneration, missing files (skip vs strict), the tokenisation policy, the copy and few-shot baselines, the decoding
study, and the report files."""

from __future__ import annotations

import json

import pytest

from test_eval_fixtures import GEC, Factory, write_writing_data
from writetune.data.tokenization import tokenize_ptb
from writetune.data.evalsets import MissingEvalData, get_eval_set, load_eval_set, suite
from writetune.evaluate import EvalConfig, EvalConfigError, Evaluation, parse_systems, tokenization_policy

RECORD_KEYS = {"metric", "label", "better", "score", "ci", "n", "signature", "components"}


@pytest.fixture
def data(tmp_path):
    return write_writing_data(tmp_path / "data")


def run(data, out, models=("oracle", "copy"), factory=None, **kwargs):
    factory = factory or Factory()
    kwargs.setdefault("bootstrap", 50)
    config = EvalConfig(models=list(models), data_dir=data, out=out, suite="writing", **kwargs)
    return Evaluation(config, make=factory, progress=False).run(), factory


def test_results_json_shape_predictions_and_report(data, tmp_path):
    out = tmp_path / "out"
    document, _ = run(data, out)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["systems"].keys() == {"oracle", "copy"}
    names = {s.name for s in suite("writing")}
    for system, sets in on_disk["systems"].items():
        assert set(sets) == names
        for set_name, value in sets.items():
            expected = get_eval_set(set_name).metrics
            assert isinstance(value, list)  # a list of records, one per metric, also for a set with one metric
            assert [r["metric"] for r in value] == list(expected)
            for record in value:
                assert RECORD_KEYS <= set(record)
                low = -100.0 if record["metric"] == "ibleu" else 0.0  # iBLEU = a*BLEU - (1-a)*self-BLEU
                assert low <= record["score"] <= 100.0
                assert record["ci"][0] <= record["ci"][1]
                assert f"set:{set_name}|input:" in record["signature"]
    predictions = out / "predictions" / "oracle.jfleg.jsonl"
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == len(GEC)
    assert {"source", "output", "references"} <= set(lines[0])
    for name in ("report.md", "results.csv", "plots/scores.png", "plots/delta_vs_baseline.png"):
        assert (out / name).is_file(), name
    assert document["baseline"] == "oracle"
    assert on_disk["systems"]["copy"]["jfleg"][0]["vs_baseline"]["baseline"] == "oracle"
    # each record says which way is better: lower for self-BLEU, higher for the others of the set
    assert {r["metric"]: r["better"] for r in on_disk["systems"]["copy"]["stsb"]} == {
        "self_bleu": "lower", "ibleu": "higher", "bleu": "higher"}


def test_resume_does_not_regenerate(data, tmp_path):
    out = tmp_path / "out"
    sets = ["jfleg", "turkcorpus", "asset"]
    first, factory = run(data, out, sets=sets)
    assert factory.requests() > 0
    again, factory2 = run(data, out, sets=sets)
    assert factory2.built == [] and factory2.requests() == 0  # nothing regenerated, no model even loaded
    assert again["systems"] == first["systems"]
    # one set's predictions lost: only that set is generated again, and only the oracle's
    (out / "predictions" / "oracle.jfleg.jsonl").unlink()
    _, factory3 = run(data, out, sets=sets)
    assert factory3.built == ["oracle"]
    assert [r.input for r in factory3.generators["oracle"].requests] == \
        [e.detokenized().source for e in load_eval_set("jfleg", data)]
    # ASSET's sources are TurkCorpus's: its lost file is rebuilt from the saved TurkCorpus answers
    (out / "predictions" / "oracle.asset.jsonl").unlink()
    _, factory4 = run(data, out, sets=sets)
    assert factory4.built == [] and (out / "predictions" / "oracle.asset.jsonl").is_file()
    # a run with a smaller --limit reuses answers and keeps the others on disk
    _, factory5 = run(data, out, sets=sets, limit=2)
    assert factory5.requests() == 0
    assert len((out / "predictions" / "oracle.jfleg.jsonl").read_text().splitlines()) == len(GEC)
    # other settings (a different decoding) are not mistaken for the saved ones
    _, factory6 = run(data, out, models=("oracle",), decodings=["beam2"], sets=sets)
    assert factory6.requests() > 0


def test_shared_sources_are_generated_once(data, tmp_path):
    _, factory = run(data, tmp_path / "out", models=("oracle",))
    asked = [(r.instruction, r.input) for r in factory.generators["oracle"].requests]
    # TurkCorpus and ASSET test share their sources (as CoNLL, BEA, GMEG and CWEB do in this fixture): each
    # question is asked once and later sets reuse the answer
    assert len(asked) == len(set(asked))
    assert len(asked) < sum(len(load_eval_set(s, data)) for s in suite("writing"))


def test_missing_file_is_skipped_with_a_line_or_fails_with_strict(data, tmp_path):
    (data / "wi+locness/m2/ABCN.dev.gold.bea19.m2").unlink()
    document, _ = run(data, tmp_path / "out")
    skipped = {item["set"]: item["reason"] for item in document["skipped"]}
    assert list(skipped) == ["bea19_dev"] and "ABCN.dev.gold.bea19.m2" in skipped["bea19_dev"]
    assert "bea19_dev" not in document["systems"]["oracle"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "`bea19_dev` (grammaticality): skipped, missing" in report
    with pytest.raises(MissingEvalData, match="ABCN.dev.gold.bea19.m2"):
        run(data, tmp_path / "strict", strict=True)


def test_ptb_sets_are_retokenized_before_scoring_and_raw_sets_are_not(data, tmp_path):
    out = tmp_path / "out"
    document, factory = run(data, out, models=("oracle",), sets=["jfleg", "cweb_g", "asset", "wnc", "conll2014"])
    generator = factory.generators["oracle"]
    jfleg_inputs = {r.input for r in generator.requests}
    assert "She doesn't like the in-house coffee." not in jfleg_inputs  # the model sees plain text ...
    assert "She don't like the in-house coffee." in jfleg_inputs
    rows = [json.loads(line) for line in (out / "predictions/oracle.jfleg.jsonl").read_text().splitlines()]
    for row in rows:  # ... and its answer is scored in the references' PTB tokenisation
        assert row["scored"] == tokenize_ptb(row["output"])
        assert row["scored"] in row["references"]
    cweb = [json.loads(line) for line in (out / "predictions/oracle.cweb_g.jsonl").read_text().splitlines()]
    assert "in - house" in cweb[3]["scored"]  # CWEB's spaCy tokenisation splits hyphens
    assert document["systems"]["oracle"]["jfleg"][0]["signature"].endswith("input:detokenized|hyp:ptb+projected")
    assert document["systems"]["oracle"]["asset"][0]["signature"].endswith("input:raw|hyp:raw")
    assert document["systems"]["oracle"]["wnc"][0]["signature"].endswith("hyp:raw+lowercased")
    assert document["systems"]["oracle"]["jfleg"][0]["score"] > 90  # perfect answers score as perfect
    assert document["systems"]["oracle"]["conll2014"][0]["score"] == 100.0
    # the same answers scored without re-tokenisation would lose most of the GLEU
    from writetune.metrics import get_metric

    raw = get_metric("gleu").corpus_score([r["output"] for r in rows], sources=[s for s, _, _ in GEC],
                                          refs=[[c for _, c, _ in GEC]] * 4)
    assert raw.score < document["systems"]["oracle"]["jfleg"][0]["score"] - 20


def test_copy_baseline_outputs_the_source(data, tmp_path):
    document, factory = run(data, tmp_path / "out", models=("copy", "oracle"), baseline="copy",
                            sets=["conll2014", "stsb"])
    rows = [json.loads(line) for line in (tmp_path / "out/predictions/copy.conll2014.jsonl").read_text().splitlines()]
    assert [r["output"] for r in rows] == [r["source"] for r in rows]
    conll = document["systems"]["copy"]["conll2014"]
    assert conll[0]["score"] == 0.0  # no edits proposed: no correct edits
    assert document["systems"]["copy"]["stsb"][0]["score"] == 100.0  # self-BLEU of a copy
    oracle = document["systems"]["oracle"]["conll2014"][0]
    assert oracle["vs_baseline"]["delta"] == 100.0 and oracle["vs_baseline"]["baseline"] == "copy"


def test_few_shot_prompts_never_use_evaluation_items(data, tmp_path):
    document, factory = run(data, tmp_path / "out", models=("oracle", "few-shot:oracle"), shots=2,
                            sets=["jfleg", "iterater_fluency", "stsb"])
    generator = factory.generators["oracle"]
    few = [r for r in generator.requests if r.shots]
    assert few and all(len(r.shots) == 2 for r in few)
    eval_sources = {r.input for r in generator.requests}
    assert not any(shot_input in eval_sources for r in few for shot_input, _ in r.shots)
    assert "This are a good idea." not in {s for r in few for s, _ in r.shots}
    # sets whose task has no training-side pool in the data dir are listed, not silently dropped
    missing = {item["set"] for item in document["not_evaluated"] if item["system"] == "few-shot:oracle"}
    assert "stsb" in missing and "jfleg" not in missing
    assert "jfleg" in document["systems"]["few-shot:oracle"]
    assert document["system_info"]["few-shot:oracle"]["shots"] == 2


def test_decoding_study_gives_one_row_per_strategy(data, tmp_path):
    document, factory = run(data, tmp_path / "out", models=("oracle", "copy"),
                            decodings=["greedy", "beam4", "sample"], sets=["jfleg", "asset"])
    assert list(document["systems"]) == ["oracle [greedy]", "oracle [beam4]", "oracle [sample]", "copy"]
    strategies = {d.name for _, d in factory.generators["oracle"].calls}
    assert strategies == {"greedy", "beam4", "sample"}
    assert set(document["systems"]["copy"]) == {"jfleg", "asset"}


def test_markdown_marks_the_best_per_column(data, tmp_path):
    run(data, tmp_path / "out", models=("copy", "oracle"), sets=["jfleg", "conll2014"])
    report = (tmp_path / "out/report.md").read_text()
    table = report.split("\n\n")[1].splitlines()
    header, oracle, copy = table[0], next(l for l in table if l.startswith("| oracle")), \
        next(l for l in table if l.startswith("| copy"))
    assert "**Grammaticality**<br>conll2014<br>M2 F0.5" in header and "**Fluency**<br>jfleg<br>GLEU" in header
    assert oracle.count("**") == 2 * 3  # best in all three columns
    assert "†" in oracle and "(baseline)" in copy
    csv_lines = (tmp_path / "out/results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("system,task,set,metric,score,ci_low,ci_high")
    assert len(csv_lines) == 1 + 2 * 3


def test_rows_can_be_named(data, tmp_path):
    systems = parse_systems(["src=copy", "tuned=few-shot:runs/x", "runs/a=b"], ["greedy", "beam4"])
    assert [(s.name, s.model, s.shots) for s in systems] == [
        ("src", "copy", 0), ("tuned [greedy]", "runs/x", 3), ("tuned [beam4]", "runs/x", 3),
        ("runs/a=b [greedy]", "runs/a=b", 0), ("runs/a=b [beam4]", "runs/a=b", 0)]
    document, _ = run(data, tmp_path / "out", models=("gold=oracle", "src=copy"), sets=["jfleg"], baseline="src")
    assert set(document["systems"]) == {"gold", "src"} and document["baseline"] == "src"
    assert (tmp_path / "out/predictions/gold.jfleg.jsonl").is_file()
    with pytest.raises(EvalConfigError, match="given twice"):
        parse_systems(["a=copy", "a=oracle"])


def test_bad_configurations_are_refused(data, tmp_path):
    with pytest.raises(EvalConfigError, match="given twice"):
        parse_systems(["copy", "copy"])
    with pytest.raises(EvalConfigError, match="--baseline"):
        run(data, tmp_path / "o", baseline="nope")
    with pytest.raises(EvalConfigError, match="not in suite"):
        run(data, tmp_path / "o", sets=["jfleg_dev"])
    with pytest.raises(EvalConfigError, match="not a directory"):
        EvalConfig(models=["copy"], data_dir=tmp_path / "absent", out=tmp_path / "o")


def test_policy_of_the_registered_sets():
    assert tokenization_policy(get_eval_set("jfleg"), []).describe() == "input:detokenized|hyp:ptb+projected"
    assert tokenization_policy(get_eval_set("cweb_s"), []).describe() == "input:detokenized|hyp:ptb+hyphens+projected"
    assert tokenization_policy(get_eval_set("turkcorpus"), []).describe() == "input:raw|hyp:raw"
    wnc = tokenization_policy(get_eval_set("wnc_dev"), [])
    assert wnc.hypothesis == "ptb+hyphens+possessive"
    assert wnc.tokenize("The KGB's award-winning agent.") == "The KGB ' s award - winning agent ."

def test_answer_budget_reaches_the_generator_and_the_prediction_key(data, tmp_path):
    out = tmp_path / "out"
    _, factory = run(data, out, models=("oracle",), sets=["jfleg"], length_ratio=1.25, length_slack=4,
                     max_new_tokens=100)
    decodings = {d for _, d in factory.generators["oracle"].calls}
    assert {(d.length_ratio, d.length_slack, d.max_new_tokens) for d in decodings} == {(1.25, 4, 100)}
    meta = json.loads((out / "predictions" / "oracle.jfleg.meta.json").read_text())
    assert "ratio=1.25,slack=4" in meta["decoding"]
    _, again = run(data, out, models=("oracle",), sets=["jfleg"], length_ratio=2.0, length_slack=16,
                   max_new_tokens=100)
    assert again.generators["oracle"].calls  # another budget is another answer: generated again, not reused
    with pytest.raises(EvalConfigError, match="--length-ratio"):
        EvalConfig(models=["copy"], data_dir=data, out=out, length_ratio=0)
