"""Readers on the real corpora in shared/data (counts verified against the files and their READMEs) and on small
fixtures for the formats the folder lacks and for malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from writetune.data.readers import (
    DataFormatError,
    Example,
    MissingDataError,
    read_alpaca_json,
    read_chat_jsonl,
    read_iterater_jsonl,
    read_jsonl,
    read_lines,
    read_m2,
    read_mrpc_tsv,
    read_parallel,
    read_stsb_csv,
    read_turkcorpus_tsv,
    read_wikisplit_tsv,
    read_wnc_pre_post,
    read_wnc_tsv,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared data folder is not beside the repo ({DATA})")


def refs(prefix: str, n: int) -> list[Path]:
    return [DATA / f"{prefix}{i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# real files


@needs_data
def test_parallel_jfleg_dev():
    examples = read_parallel(DATA / "jfleg/dev/dev.src", refs("jfleg/dev/dev.ref", 4), task="fluency", tokenized=True)
    assert len(examples) == 754
    assert all(len(e.references) == 4 and e.tokenized and e.task == "fluency" for e in examples)
    first = examples[0]
    assert first.source.startswith("So I think we can not live if old people could not find siences")
    assert first.references[0].startswith("So I think we would not be alive if our ancestors")
    assert first.id == "dev.src:1" and first.origin == "dev.src"
    assert len({e.id for e in examples}) == 754


@needs_data
def test_parallel_gmeg_asset_turkcorpus_cweb_raw():
    gmeg = read_parallel(DATA / "gmeg_wiki/dev/source", refs("gmeg_wiki/dev/ref", 4), task="grammaticality")
    assert len(gmeg) == 992 and {len(e.references) for e in gmeg} == {4}
    assert gmeg[0].source == "There xere importants rugby matches in the Stadium ."
    # ASSET's files have no final newline: still 2,000 lines
    asset = read_parallel(DATA / "asset/dataset/asset.valid.orig", refs("asset/dataset/asset.valid.simp.", 10), task="simplification")
    assert len(asset) == 2000 and {len(e.references) for e in asset} == {10}
    turk = read_parallel(
        DATA / "turkcorpus/easse_truecase_detok/tune.truecase.detok.orig",
        refs("turkcorpus/easse_truecase_detok/tune.truecase.detok.simp.", 8),
        task="simplification",
    )
    assert len(turk) == 2000 and {len(e.references) for e in turk} == {8}
    assert turk[0].source == asset[0].source  # the two share their sources (README)
    tok = read_parallel(
        DATA / "turkcorpus/cocoxu_simplification/tune.8turkers.tok.norm",
        refs("turkcorpus/cocoxu_simplification/tune.8turkers.tok.turk.", 8),
        task="simplification",
        tokenized=True,
    )
    assert len(tok) == 2000 and "-lrb-" in tok[0].source
    cweb = read_parallel(DATA / "cweb/raw/CWEB-G.dev.source", [DATA / "cweb/raw/CWEB-G.dev.ann1", DATA / "cweb/raw/CWEB-G.dev.ann2"], task="grammaticality")
    assert len(cweb) == 3867 and not cweb[0].tokenized


@needs_data
def test_turkcorpus_tsv_form():
    examples = read_turkcorpus_tsv(DATA / "turkcorpus/cocoxu_simplification/truecased/tune.8turkers.organized.tsv")
    assert len(examples) == 2000 and {len(e.references) for e in examples} == {8}
    assert examples[0].source.startswith("Adjacent counties are Marin ( to the south )")
    assert examples[0].task == "simplification" and examples[0].tokenized


@needs_data
def test_m2_cweb_reconstructs_each_annotators_tokenized_file():
    examples = read_m2(DATA / "cweb/m2/CWEB-G.dev.m2")
    assert len(examples) == 3867
    sources = read_lines(DATA / "cweb/tokenized/CWEB-G.dev.tok.source")
    ann1 = read_lines(DATA / "cweb/tokenized/CWEB-G.dev.tok.ann1")
    ann2 = read_lines(DATA / "cweb/tokenized/CWEB-G.dev.tok.ann2")
    assert [e.source for e in examples] == [s.strip() for s in sources]
    assert [e.references[0] for e in examples] == [s.strip() for s in ann1]
    assert [e.references[1] for e in examples] == [s.strip() for s in ann2]
    assert all(e.tokenized and e.task == "grammaticality" for e in examples)
    # most CWEB "corrections" are the source itself: both annotators left 2,471 of 3,867 sentences unchanged
    assert sum(all(r == e.source for r in e.references) for e in examples) == 2471
    single = read_m2(DATA / "cweb/m2/CWEB-G.dev.ann0.m2")
    assert [e.references for e in single] == [(s.strip(),) for s in ann1]


@needs_data
def test_m2_jfleg_converted_file_has_four_annotators():
    examples = read_m2(DATA / "jfleg/EACL_exp/m2converter/dev.ref.m2", task="fluency")
    assert len(examples) == 754 and {len(e.references) for e in examples} == {4}
    assert examples[0].references[0] == (
        "So I think we would not be alive if our ancestors did not develop sciences and technologies ."
    )


@needs_data
def test_wnc_sample_pre_post():
    train = read_wnc_pre_post(DATA / "wnc_sample/pre.train", DATA / "wnc_sample/post.train")
    test = read_wnc_pre_post(DATA / "wnc_sample/pre.test", DATA / "wnc_sample/post.test")
    assert len(train) == 1000 and len(test) == 100
    assert train[0].task == "neutralization" and train[0].tokenized
    assert "emmy award winning" in train[0].source and "emmy award winning" not in train[0].references[0]


@needs_data
def test_stsb_csv_threshold():
    assert len(read_stsb_csv(DATA / "stsb_en/stsb-en-train.csv")) == 1406  # scores >= 4.0
    assert len(read_stsb_csv(DATA / "stsb_en/stsb-en-train.csv", threshold=0.0)) == 5749
    dev = read_stsb_csv(DATA / "stsb_en/stsb-en-dev.csv")
    assert len(dev) == 264
    assert dev[0] == Example("paraphrase", "A man with a hard hat is dancing.", ("A man wearing a hard hat is dancing.",), "stsb-en-dev.csv", "stsb-en-dev.csv:1")


@needs_data
def test_mrpc_tsv_with_bom_and_crlf():
    positives = read_mrpc_tsv(DATA / "mrpc/msr-para-train.tsv")
    assert len(positives) == 2407
    assert len(read_mrpc_tsv(DATA / "mrpc/msr-para-train.tsv", positive_only=False)) == 3576
    assert positives[0].source.startswith("Amrozi accused his brother")
    assert not positives[0].source.endswith("\r") and not positives[0].references[0].endswith("\r")
    assert len(read_mrpc_tsv(DATA / "mrpc/msr-para-val.tsv", positive_only=False)) == 500


@needs_data
def test_wikisplit_both_directions():
    split = read_wikisplit_tsv(DATA / "wikisplit/tune.tsv")
    fuse = read_wikisplit_tsv(DATA / "wikisplit/tune.tsv", task="coherence", direction="fuse")
    assert len(split) == len(fuse) == 5000
    assert "<::::>" not in split[0].references[0]
    assert split[0].references[0].startswith("' ( 1990 ) was the second sequel to appear . Though Hooper")
    assert (fuse[0].source, fuse[0].references[0]) == (split[0].references[0], split[0].source)


@needs_data
def test_alpaca_json():
    examples = read_alpaca_json(DATA / "alpaca/alpaca_5000.json")
    # 5,000 records, two of which have an empty output and are skipped
    assert len(examples) == 4998
    assert sum(bool(e.source) for e in examples) == 1943
    first = examples[0]
    assert first.instruction == "Are the two sentences below grammatically correct? Output yes or no."
    assert first.source == "Sentence 1: I am going to the store.\nSentence 2: I goes to the store."
    assert first.references == ("No",) and first.task == "generic"
    assert len({e.id for e in examples}) == 4998


# ---------------------------------------------------------------------------------------------------------------
# fixtures for formats the folder lacks


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_and_chat_jsonl(tmp_path):
    rows = [
        {"instruction": "Name a colour.", "output": "Blue."},
        {"instruction": "Fix this:", "input": "he go", "output": "He goes.", "extra": 1},
        {"instruction": "Empty answer", "input": "", "output": " "},
    ]
    path = write(tmp_path / "g.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    examples = read_jsonl(path)
    assert [(e.instruction, e.source, e.references) for e in examples] == [
        ("Name a colour.", "", ("Blue.",)),
        ("Fix this:", "he go", ("He goes.",)),
    ]
    assert [e.id for e in examples] == ["g.jsonl:1", "g.jsonl:2"]
    chats = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More"},
                      {"role": "assistant", "content": "No."}]},
        {"messages": [{"role": "user", "content": "Simplify: utilise"}, {"role": "assistant", "content": "use"}]},
    ]  # fmt: skip
    chat = read_chat_jsonl(write(tmp_path / "c.jsonl", "\n".join(json.dumps(c) for c in chats)), task="simplification")
    assert [(e.instruction, e.references[0], e.task) for e in chat] == [
        ("Hi?", "Hello.", "simplification"),
        ("Simplify: utilise", "use", "simplification"),
    ]


def test_iterater_jsonl_filters_by_intent(tmp_path):
    rows = [
        {"before_sent": " A b.", "after_sent": " A c.", "labels": "clarity", "doc_id": "1", "revision_depth": "1"},
        {"before_sent": "D e.", "after_sent": "D f.", "labels": "fluency", "doc_id": "1", "revision_depth": "1"},
        {"before_sent": "G h.", "after_sent": "G i.", "labels": "style", "doc_id": "2", "revision_depth": "1"},
    ]
    path = write(tmp_path / "test.json", "".join(json.dumps(r) + "\n" for r in rows))
    clarity = read_iterater_jsonl(path, intent="clarity")
    assert [(e.task, e.source, e.references) for e in clarity] == [("clarity", "A b.", ("A c.",))]
    assert len(read_iterater_jsonl(path, task="clarity")) == 3


def test_wnc_official_tsv(tmp_path):
    line = "\t".join(["12", "the great man", "the man", "The great man.", "The man.", "DET ADJ NOUN", "det amod"])
    examples = read_wnc_tsv(write(tmp_path / "biased.word.test", line + "\n" + line.replace("12", "13") + "\n"))
    assert [(e.source, e.references) for e in examples] == [("The great man.", ("The man.",))] * 2
    assert not examples[0].tokenized and examples[0].task == "neutralization"


# ---------------------------------------------------------------------------------------------------------------
# malformed input: `path:line: what is wrong`


def test_reference_files_with_different_line_counts(tmp_path):
    src = write(tmp_path / "src", "a\nb\nc\n")
    ref = write(tmp_path / "ref", "A\nB\n")
    with pytest.raises(DataFormatError, match=rf"^{src}:3: line counts differ: .* has 3 lines, {ref} has 2"):
        read_parallel(src, [ref], task="fluency")
    longer = write(tmp_path / "ref2", "A\nB\nC\nD\n")
    with pytest.raises(DataFormatError, match=rf"^{longer}:4: line counts differ"):
        read_parallel(src, [longer], task="fluency")


def test_undecodable_bytes_name_the_line(tmp_path):
    src = write(tmp_path / "src", b"fine\nalso fine\nbad \xff byte\n")
    ref = write(tmp_path / "ref", "x\ny\nz\n")
    with pytest.raises(DataFormatError, match=rf"^{src}:3: not valid UTF-8"):
        read_parallel(src, [ref], task="fluency")


@pytest.mark.parametrize(
    "reader, text, line, message",
    [
        (read_wikisplit_tsv, "a\tb\nonly one field\n", 2, "expected 2 tab-separated fields, found 1"),
        (read_turkcorpus_tsv, "1\ta" + "\tb" * 8 + "\n2\ta\tb\n", 2, "expected 10 tab-separated fields, found 3"),
        (read_mrpc_tsv, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\n", 2, "expected 5 tab-separated fields"),
        (read_mrpc_tsv, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\nx\t1\t2\ta\tb\n", 2, "Quality must be 0 or 1"),
        (read_mrpc_tsv, "1\t1\t2\ta\tb\n", 1, "expected the header line starting with 'Quality'"),
        (read_wnc_tsv, "1\ta\tb\tc\td\n", 1, "expected 7 tab-separated fields, found 5"),
        (read_stsb_csv, "a,b,4.5\nc,d\n", 2, "expected 3 comma-separated fields, found 2"),
        (read_stsb_csv, "a,b,4.5\nc,d,high\n", 2, "score is not a number"),
        (read_stsb_csv, 'a,b,4.5\n"c,d,5\n', 2, "expected 3 comma-separated fields"),
        (read_m2, "A 0 1|||R:X|||y|||REQUIRED|||-NONE-|||0\n", 1, "M2 block does not start with an 'S' line"),
        (read_m2, "S a b\nA 0 1|||R:X|||y|||REQUIRED|||-NONE-|||0\n\nS c\nA x y|||R|||z|||R|||-|||0\n", 5, "start end"),
        (read_m2, "S a b\nA 0 1|||R:X|||y\n", 2, "expected 6"),
        (read_m2, "S a b\nS c d\n", 2, "second 'S' line"),
        (read_m2, "S a b\nA 2 1|||R:X|||y|||REQUIRED|||-NONE-|||0\n", 2, "ends before it starts"),
        (read_jsonl, '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', 2, "bad JSON"),
        (read_jsonl, '{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', 2, "missing key 'output'"),
        (read_jsonl, '["a", "b"]\n', 1, "expected a JSON object"),
        (read_chat_jsonl, '{"messages": [{"role": "user", "content": "hi"}]}\n', 1, "no user message followed"),
        (read_chat_jsonl, '{"messages": [{"role": "bot", "content": "hi"}]}\n', 1, "role must be"),
        (read_chat_jsonl, '{"msgs": []}\n', 1, "'messages' list"),
        (read_alpaca_json, '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c"}\n]\n', 3, "missing key 'output'"),
        (read_alpaca_json, '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]\n', 3, "bad JSON"),
        (read_alpaca_json, '{"instruction": "a", "output": "b"}\n', 1, "expected a JSON array"),
        (read_iterater_jsonl, '{"before_sent": "a", "after_sent": 3, "labels": "clarity"}\n', 1, "'after_sent' must be a string"),
    ],
)
def test_malformed_lines(tmp_path, reader, text, line, message):
    path = write(tmp_path / "data.txt", text)
    kwargs = {"task": "clarity"} if reader is read_iterater_jsonl else {}
    with pytest.raises(DataFormatError) as err:
        reader(path, **kwargs)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert isinstance(err.value, ValueError) and err.value.line == line


def test_missing_file_names_it(tmp_path):
    with pytest.raises(MissingDataError, match=rf"^{tmp_path / 'absent'}: data file not found"):
        read_m2(tmp_path / "absent")


def test_lines_keep_unicode_line_separators(tmp_path):
    path = write(tmp_path / "f", "one\u2028still one\r\ntwo\n")
    assert read_lines(path) == ["one\u2028still one", "two"]


def test_detokenized_copy():
    example = Example("fluency", "I do n't know .", ("I do not know .",), "x", "x:1", True)
    plain = example.detokenized()
    assert (plain.source, plain.references, plain.tokenized) == ("I don't know.", ("I do not know.",), False)
    assert plain.detokenized() is plain
