"""Bad input gives a clear error naming the file (and line), never a silently wrong score."""

from __future__ import annotations

import pytest

from writetune.metrics import (
    M2FormatError,
    MetricInputError,
    get_metric,
    parse_m2,
    read_m2,
    read_segments,
    score_files,
)

GOOD_M2 = (
    "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n\n"
    "S It is fine .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_errors_are_value_errors():
    assert issubclass(MetricInputError, ValueError)
    assert issubclass(M2FormatError, MetricInputError)


def test_mismatched_line_counts_name_both_files(tmp_path):
    src = write(tmp_path, "src.txt", "a b c\nd e f\n")
    hyp = write(tmp_path, "hyp.txt", "a b c\n")
    ref = write(tmp_path, "ref.txt", "a b c\nd e g\n")
    with pytest.raises(MetricInputError) as err:
        score_files("sari", source=src, hyp=hyp, refs=[ref])
    assert str(hyp) in str(err.value) and str(src) in str(err.value)
    assert "1" in str(err.value) and "2" in str(err.value)
    with pytest.raises(MetricInputError, match=r"ref2\.txt"):
        score_files("bleu", hyp=src, refs=[ref, write(tmp_path, "ref2.txt", "only one line\n")])


def test_empty_file(tmp_path):
    empty = write(tmp_path, "empty.txt", "")
    with pytest.raises(MetricInputError, match=rf"{empty}: file is empty"):
        read_segments(empty)
    ref = write(tmp_path, "ref.txt", "a b\n")
    with pytest.raises(MetricInputError, match="file is empty"):
        score_files("bleu", hyp=empty, refs=[ref])
    with pytest.raises(MetricInputError, match="no such file"):
        score_files("bleu", hyp=tmp_path / "missing.txt", refs=[ref])


def test_empty_reference_line_names_file_and_line(tmp_path):
    src = write(tmp_path, "src.txt", "a b c\nd e f\ng h i\n")
    ref = write(tmp_path, "ref1.txt", "a b c\n\ng h i\n")
    with pytest.raises(MetricInputError, match=rf"{ref}:2: empty reference"):
        score_files("sari", source=src, hyp=src, refs=[ref])
    with pytest.raises(MetricInputError, match=r"reference 2:1: empty reference"):
        get_metric("gleu").corpus_score(["a b"], sources=["a b"], refs=[["a c"], [" "]])


def test_empty_source_line(tmp_path):
    src = write(tmp_path, "src.txt", "a b c\n\n")
    ref = write(tmp_path, "ref.txt", "a b c\nx\n")
    with pytest.raises(MetricInputError, match=rf"{src}:2: empty source"):
        score_files("sari", source=src, hyp=ref, refs=[ref])


def test_empty_hypothesis_lines_are_scored_not_rejected(tmp_path):
    src = write(tmp_path, "src.txt", "a b c d\ne f g h\n")
    hyp = write(tmp_path, "hyp.txt", "a b c d\n\n")
    assert score_files("sari", source=src, hyp=hyp, refs=[src]).n == 2


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("A 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-", "malformed A line: expected 6"),
        ("A 1|||R:VERB|||goes|||REQUIRED|||-NONE-|||0", "not two token offsets"),
        ("A x 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||0", "not two integers"),
        ("A 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||zero", "annotator id"),
        ("A 3 9|||R:VERB|||goes|||REQUIRED|||-NONE-|||0", "outside the sentence"),
        ("A 2 1|||R:VERB|||goes|||REQUIRED|||-NONE-|||0", "invalid span"),
        ("A 1 2|||noop|||-NONE-|||REQUIRED|||-NONE-|||0", "noop edit must have the span -1 -1"),
        ("B 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||0", "expected an 'A ' edit line"),
        ("S another sentence", "second 'S' line"),
    ],
)
def test_malformed_m2_lines_name_file_and_line(tmp_path, bad_line, message):
    first = "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n"
    path = write(tmp_path, "gold.m2", f"{first}{bad_line}\n")
    with pytest.raises(M2FormatError) as err:
        read_m2(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_m2_structure_errors():
    with pytest.raises(M2FormatError, match=r"<m2>:1: expected an 'S ' line"):
        parse_m2("A 1 2|||R|||x|||REQUIRED|||-NONE-|||0\n")
    with pytest.raises(M2FormatError, match="empty source sentence"):
        parse_m2("S \n")
    with pytest.raises(M2FormatError, match="file is empty"):
        parse_m2("\n\n")
    with pytest.raises(M2FormatError, match=r":3: duplicate edit .* line 2"):
        parse_m2("S He go home .\nA 1 2|||R|||goes|||REQUIRED|||-NONE-|||0\nA 1 2|||R|||goes|||REQUIRED|||-NONE-|||0\n")


def test_hypothesis_and_m2_sentence_counts_must_agree(tmp_path):
    gold = write(tmp_path, "gold.m2", GOOD_M2)
    hyp = write(tmp_path, "hyp.txt", "He goes home .\n")
    with pytest.raises(MetricInputError, match=rf"{hyp}: has 1 lines but {gold} has 2 sentences"):
        score_files("m2", hyp=hyp, m2=gold)


def test_source_given_with_m2_must_match_s_lines(tmp_path):
    gold = write(tmp_path, "gold.m2", GOOD_M2)
    hyp = write(tmp_path, "hyp.txt", "He goes home .\nIt is fine .\n")
    same = write(tmp_path, "src.txt", "He go home .\nIt is fine .\n")
    assert score_files("m2", hyp=hyp, m2=gold, source=same).score == 100.0
    other = write(tmp_path, "other.txt", "He go home .\nIt was fine .\n")
    with pytest.raises(MetricInputError, match=rf"{other}:2: differs from the S line at {gold}:4"):
        score_files("m2", hyp=hyp, m2=gold, source=other)


def test_metric_requirements(tmp_path):
    src = write(tmp_path, "src.txt", "a b\n")
    with pytest.raises(MetricInputError, match="needs the source"):
        score_files("sari", hyp=src, refs=[src])
    with pytest.raises(MetricInputError, match="needs at least one reference"):
        score_files("bleu", hyp=src)
    with pytest.raises(MetricInputError, match="needs a gold M2 file"):
        score_files("m2", hyp=src)
    with pytest.raises(MetricInputError, match="takes no references"):
        score_files("copy_rate", hyp=src, source=src, refs=[src])
    gold = write(tmp_path, "gold.m2", "S a b\nA 0 1|||R|||c|||REQUIRED|||-NONE-|||0\n")
    with pytest.raises(MetricInputError, match="either a gold M2 file or reference texts"):
        score_files("errant", hyp=src, m2=gold, refs=[src])
    with pytest.raises(MetricInputError, match="needs the source segments"):
        score_files("errant", hyp=src, refs=[src])


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nna\xefve\n".encode("latin-1"))
    with pytest.raises(MetricInputError, match=rf"{path}:2: not valid UTF-8"):
        read_segments(path)


def test_lines_are_split_on_newlines_only(tmp_path):
    path = tmp_path / "ff.txt"
    path.write_bytes(b"a\x0cb\r\nc\n")  # a form feed inside a segment must not split it
    assert read_segments(path) == ["a\x0cb", "c"]
