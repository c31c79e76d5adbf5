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


def test_signature_writes_the_shared_fields_around_the_metrics_own():
    from writetune import __version__
    from writetune.metrics import Signature

    own = {"impl": "x-1.0", "nrefs": 2, "mean": True}
    plain = Signature("demo", own).format()
    assert plain == f"demo|impl:x-1.0|nrefs:2|mean|version:writetune-{__version__}"
    resampled = Signature("demo", own, bootstrap=50, seed=9, versions=("pkg-2.0",))
    assert str(resampled) == f"demo|impl:x-1.0|nrefs:2|mean|bootstrap:50|seed:9|version:writetune-{__version__}+pkg-2.0"


def test_every_metric_signature_has_the_shared_shape():
    from writetune.metrics import available_metrics

    for name in available_metrics():
        if name.startswith("ifbench"):
            continue  # needs the IFBench verifiers; covered with them in test_general_suite.py
        metric = get_metric(name)
        parts = metric.signature(3, bootstrap=20, seed=4).split("|")
        assert parts[0] == name, name
        assert parts[-3:-1] == ["bootstrap:20", "seed:4"] and parts[-1].startswith("version:writetune-"), name
        plain = metric.signature(3)
        assert "bootstrap:" not in plain and plain.split("|")[:-1] == parts[:-3], name
