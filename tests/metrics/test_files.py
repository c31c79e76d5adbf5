"""Reading scored files (`writetune.metrics.files`): segments split on newlines only, UTF-8 with an optional
byte-order mark, and M2 files whose errors name the file and line."""

from __future__ import annotations

import json

import pytest
from support.metrics import GOLD, score_cli, write

from writetune.metrics import M2FormatError, MetricInputError, parse_m2, read_m2, read_segments, score_files


def test_empty_file(tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(MetricInputError, match=rf"{empty}: file is empty"):
        read_segments(empty)
    ref = write(tmp_path / "ref.txt", "a b\n")
    with pytest.raises(MetricInputError, match="file is empty"):
        score_files("bleu", hyp=empty, refs=[ref])
    with pytest.raises(MetricInputError, match="no such file"):
        score_files("bleu", hyp=tmp_path / "missing.txt", refs=[ref])


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
    path = write(tmp_path / "gold.m2", f"{first}{bad_line}\n")
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


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nna\xefve\n".encode("latin-1"))
    with pytest.raises(MetricInputError, match=rf"{path}:2: not valid UTF-8"):
        read_segments(path)


def test_lines_are_split_on_newlines_only(tmp_path):
    path = tmp_path / "ff.txt"
    path.write_bytes(b"a\x0cb\r\nc\n")  # a form feed inside a segment must not split it
    assert read_segments(path) == ["a\x0cb", "c"]


def test_a_byte_order_mark_changes_nothing(tmp_path):
    ref = write(tmp_path / "ref.txt", "She goes home .\nHe is here .\n")
    plain = write(tmp_path / "plain.txt", "She goes home .\nHe is here .\n")
    bom = write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + plain.read_bytes())
    assert score_files("em", hyp=bom, refs=[ref]).score == score_files("em", hyp=plain, refs=[ref]).score == 100.0
    gold = write(tmp_path / "gold.m2", GOLD)
    gold_bom = write(tmp_path / "gold-bom.m2", b"\xef\xbb\xbf" + GOLD.encode())
    hyp = write(tmp_path / "hyp.txt", "She goes to school every day .\nHe buyed apples .\n")
    code, with_bom = score_cli("--metric", "m2", "--hyp", str(hyp), "--m2", str(gold_bom), "--json")
    assert code == 0
    assert json.loads(with_bom)["score"] == score_files("m2", hyp=hyp, m2=gold).score
