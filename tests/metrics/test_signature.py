"""Scores and their signatures: the JSON form of a `Score`, and signatures that say how a number was computed."""

from __future__ import annotations

import json

from writetune.metrics import Inputs, Score, get_metric, parse_m2


def test_score_to_dict_is_json_and_signatures_name_the_metric():
    result = get_metric("sari").corpus_score(["a c"], sources=["a b"], refs=[["a c"]], bootstrap=20, seed=7)
    assert isinstance(result, Score)
    data = json.loads(result.to_json())
    assert set(data) >= {"score", "components", "ci", "n", "signature"}
    assert data["signature"].startswith("sari|")
    for part in ("tok:13a", "case:lc", "nrefs:1", "bootstrap:20", "seed:7", "version:writetune-"):
        assert part in data["signature"]
    no_ci = get_metric("sari").corpus_score(["a c"], sources=["a b"], refs=[["a c"]])
    assert no_ci.ci is None and "ci" not in no_ci.to_dict() and "seed" not in no_ci.signature


def test_signature_from_collected_statistics_knows_the_reference_count():
    cases = {
        "sari": (Inputs(hyps=["a c"], sources=["a b"], refs=[["a c"], ["a d"]]), "nrefs:2"),
        "bleu": (Inputs(hyps=["a c"], refs=[["a c"], ["a d"], ["a e"]]), "nrefs:3"),
        "gleu": (Inputs(hyps=["a c"], sources=["a b"], refs=[["a c"], ["a d"]]), "nrefs:2"),
        "em": (Inputs(hyps=["a c"], refs=[["a c"]]), "any-of-1-refs"),
        "m2": (
            Inputs(
                hyps=["a c"],
                gold=parse_m2("S a b\nA 1 2|||R|||c|||REQUIRED|||-NONE-|||0\nA 1 2|||R|||d|||REQUIRED|||-NONE-|||1\n"),
            ),
            "annotators:2",
        ),
    }
    for name, (inputs, expected_part) in cases.items():
        metric = get_metric(name)
        assert expected_part in metric.score_stats(metric.segment_stats(inputs)).signature, name
