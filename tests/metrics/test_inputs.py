"""Validating what is scored (`score_files`, `Metric.corpus_score`): bad input gives a clear error naming the file
(and line), never a silently wrong score."""

from __future__ import annotations

import pytest
from support.metrics import write

from writetune.metrics import M2FormatError, MetricInputError, get_metric, score_files


GOOD_M2 = (
    "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n\n"
    "S It is fine .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n"
)


def test_errors_are_value_errors():
    assert issubclass(MetricInputError, ValueError)
    assert issubclass(M2FormatError, MetricInputError)


def test_mismatched_line_counts_name_both_files(tmp_path):
    src = write(tmp_path / "src.txt", "a b c\nd e f\n")
    hyp = write(tmp_path / "hyp.txt", "a b c\n")
    ref = write(tmp_path / "ref.txt", "a b c\nd e g\n")
    with pytest.raises(MetricInputError) as err:
        score_files("sari", source=src, hyp=hyp, refs=[ref])
    assert str(hyp) in str(err.value) and str(src) in str(err.value)
    assert "1" in str(err.value) and "2" in str(err.value)
    with pytest.raises(MetricInputError, match=r"ref2\.txt"):
        score_files("bleu", hyp=src, refs=[ref, write(tmp_path / "ref2.txt", "only one line\n")])


def test_empty_reference_line_names_file_and_line(tmp_path):
    src = write(tmp_path / "src.txt", "a b c\nd e f\ng h i\n")
    ref = write(tmp_path / "ref1.txt", "a b c\n\ng h i\n")
    with pytest.raises(MetricInputError, match=rf"{ref}:2: empty reference"):
        score_files("sari", source=src, hyp=src, refs=[ref])
    with pytest.raises(MetricInputError, match=r"reference 2:1: empty reference"):
        get_metric("gleu").corpus_score(["a b"], sources=["a b"], refs=[["a c"], [" "]])


def test_empty_source_line(tmp_path):
    src = write(tmp_path / "src.txt", "a b c\n\n")
    ref = write(tmp_path / "ref.txt", "a b c\nx\n")
    with pytest.raises(MetricInputError, match=rf"{src}:2: empty source"):
        score_files("sari", source=src, hyp=ref, refs=[ref])


def test_empty_hypothesis_lines_are_scored_not_rejected(tmp_path):
    src = write(tmp_path / "src.txt", "a b c d\ne f g h\n")
    hyp = write(tmp_path / "hyp.txt", "a b c d\n\n")
    assert score_files("sari", source=src, hyp=hyp, refs=[src]).n == 2


def test_hypothesis_and_m2_sentence_counts_must_agree(tmp_path):
    gold = write(tmp_path / "gold.m2", GOOD_M2)
    hyp = write(tmp_path / "hyp.txt", "He goes home .\n")
    with pytest.raises(MetricInputError, match=rf"{hyp}: has 1 lines but {gold} has 2 sentences"):
        score_files("m2", hyp=hyp, m2=gold)


def test_source_given_with_m2_must_match_s_lines(tmp_path):
    gold = write(tmp_path / "gold.m2", GOOD_M2)
    hyp = write(tmp_path / "hyp.txt", "He goes home .\nIt is fine .\n")
    same = write(tmp_path / "src.txt", "He go home .\nIt is fine .\n")
    assert score_files("m2", hyp=hyp, m2=gold, source=same).score == 100.0
    other = write(tmp_path / "other.txt", "He go home .\nIt was fine .\n")
    with pytest.raises(MetricInputError, match=rf"{other}:2: differs from the S line at {gold}:4"):
        score_files("m2", hyp=hyp, m2=gold, source=other)


def test_metric_requirements(tmp_path):
    src = write(tmp_path / "src.txt", "a b\n")
    with pytest.raises(MetricInputError, match="needs the source"):
        score_files("sari", hyp=src, refs=[src])
    with pytest.raises(MetricInputError, match="needs at least one reference"):
        score_files("bleu", hyp=src)
    with pytest.raises(MetricInputError, match="needs a gold M2 file"):
        score_files("m2", hyp=src)
    with pytest.raises(MetricInputError, match="takes no references"):
        score_files("copy_rate", hyp=src, source=src, refs=[src])
    gold = write(tmp_path / "gold.m2", "S a b\nA 0 1|||R|||c|||REQUIRED|||-NONE-|||0\n")
    with pytest.raises(MetricInputError, match="either a gold M2 file or reference texts"):
        score_files("errant", hyp=src, m2=gold, refs=[src])
    with pytest.raises(MetricInputError, match="needs the source segments"):
        score_files("errant", hyp=src, refs=[src])


def test_prepared_inputs_score_as_corpus_score_does_and_return_their_statistics():
    metric = get_metric("sari")
    hyps, sources, refs = ["a c", "b d e"], ["a b", "b c e"], [["a c", "b d e"], ["a d", "b e"]]
    inputs = metric.prepare_inputs(hyps, sources=sources, refs=refs)
    score, stats = metric.score_inputs(inputs, bootstrap=20, seed=3)
    assert score == metric.corpus_score(hyps, sources=sources, refs=refs, bootstrap=20, seed=3)
    assert stats.n == 2 and metric.aggregate(stats)[0] == score.score and "nrefs:2" in score.signature
    with pytest.raises(MetricInputError, match="needs the source"):
        metric.prepare_inputs(hyps, refs=refs)
