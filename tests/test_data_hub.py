"""Hub corpora through `datasets`, on local copies written in each hub repository's layout and format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from writetune.data.hub import HUB_DATASETS, load_hub_examples
from writetune.data.readers import DataFormatError, MissingDataError

COEDIT_ROWS = [
    {"_id": "1", "task": "gec", "src": "Fix grammaticality: As the number of people grows, the need of habitable environment is essential.",
     "tgt": "As the number of people grows, the need for a habitable environment is essential."},
    {"_id": "2", "task": "neutralize", "src": "Remove POV: He is a brilliant scientist.", "tgt": "He is a scientist."},
    {"_id": "3", "task": "simplification", "src": "Make this simpler: The edifice was demolished.", "tgt": "The building was torn down."},
    {"_id": "4", "task": "paraphrase", "src": "Paraphrase this: It is raining hard.", "tgt": "It is pouring."},
    {"_id": "5", "task": "clarity", "src": "Make this clearer: The thing it did was good.", "tgt": "It worked well."},
    {"_id": "6", "task": "coherence", "src": "Fix coherence: He left. It was late.", "tgt": "He left because it was late."},
]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


def test_registry_names_the_hub_ids():
    assert HUB_DATASETS["coedit"].hub_id == "grammarly/coedit"
    assert HUB_DATASETS["iterater"].hub_id == "wanyu/IteraTeR_human_sent"
    assert HUB_DATASETS["alpaca"].hub_id == "tatsu-lab/alpaca"
    assert HUB_DATASETS["wnc"].hub_id == "grammarly/coedit"


def test_coedit_from_a_local_copy(tmp_path, cache):
    repo = tmp_path / "coedit"
    write_jsonl(repo / "train.jsonl", COEDIT_ROWS)
    write_jsonl(repo / "validation.jsonl", COEDIT_ROWS[:2])
    examples = load_hub_examples("coedit", split="train", path=repo, cache_dir=cache)
    assert [e.task for e in examples] == [
        "grammaticality", "neutralization", "simplification", "paraphrase", "clarity", "coherence",
    ]  # fmt: skip
    first = examples[0]
    assert first.instruction == "Fix grammaticality"
    assert first.source.startswith("As the number of people grows, the need of")
    assert first.references == ("As the number of people grows, the need for a habitable environment is essential.",)
    assert first.id == "coedit-train:1" and first.origin == "coedit"
    only = load_hub_examples("coedit", split="validation", path=repo, task="neutralization", cache_dir=cache)
    assert [(e.source, e.references) for e in only] == [("He is a brilliant scientist.", ("He is a scientist.",))]
    wnc = load_hub_examples("wnc", split="train", path=repo, cache_dir=cache)
    assert [e.task for e in wnc] == ["neutralization"]


def test_iterater_from_a_local_copy(tmp_path, cache):
    repo = tmp_path / "iterater"
    rows = [
        {"before_sent": " It are good.", "before_sent_with_intent": "<fluency> It are good.", "after_sent": " It is good.",
         "labels": "fluency", "doc_id": "a", "revision_depth": "1"},
        {"before_sent": "We do X.", "before_sent_with_intent": "<style> We do X.", "after_sent": "We perform X.",
         "labels": "style", "doc_id": "a", "revision_depth": "1"},
        {"before_sent": "The thing is big.", "before_sent_with_intent": "<clarity> The thing is big.",
         "after_sent": "The model is large.", "labels": "clarity", "doc_id": "b", "revision_depth": "2"},
    ]  # fmt: skip
    for name in ("train.json", "dev.json", "test.json"):
        write_jsonl(repo / name, rows)
    examples = load_hub_examples("iterater", split="test", path=repo, cache_dir=cache)
    assert [(e.task, e.source, e.references[0]) for e in examples] == [
        ("fluency", "It are good.", "It is good."),
        ("clarity", "The thing is big.", "The model is large."),
    ]
    assert len(load_hub_examples("iterater", split="validation", path=repo, task="clarity", cache_dir=cache)) == 1


def test_alpaca_parquet_copy(tmp_path, cache):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    repo = tmp_path / "alpaca"
    (repo / "data").mkdir(parents=True)
    table = pa.table(
        {
            "instruction": ["Name a colour.", "Sum the numbers."],
            "input": ["", "2, 3"],
            "output": ["Blue.", "5"],
            "text": ["...", "..."],
        }
    )
    pq.write_table(table, repo / "data" / "train-00000-of-00001.parquet")
    examples = load_hub_examples("alpaca", path=repo, cache_dir=cache)
    assert [(e.task, e.instruction, e.source, e.references) for e in examples] == [
        ("generic", "Name a colour.", "", ("Blue.",)),
        ("generic", "Sum the numbers.", "2, 3", ("5",)),
    ]


def test_bad_rows_and_requests(tmp_path, cache):
    repo = tmp_path / "coedit"
    write_jsonl(repo / "train.jsonl", [COEDIT_ROWS[0], {"_id": "9", "task": "gec", "src": "no colon here", "tgt": "x"}])
    with pytest.raises(DataFormatError, match=r"coedit:2: split 'train', row 2: CoEdIT 'src' is not 'instruction: text'"):
        load_hub_examples("coedit", path=repo, cache_dir=cache)
    write_jsonl(repo / "train.jsonl", [{"_id": "9", "task": "translate", "src": "a: b", "tgt": "x"}])
    with pytest.raises(DataFormatError, match="unknown CoEdIT task 'translate'"):
        load_hub_examples("coedit", path=repo, cache_dir=cache)
    with pytest.raises(ValueError, match="unknown hub dataset"):
        load_hub_examples("c4")
    with pytest.raises(ValueError, match="has no 'fluency' data"):
        load_hub_examples("coedit", task="fluency", path=repo)
    with pytest.raises(MissingDataError, match="local copy of grammarly/coedit"):
        load_hub_examples("coedit", path=tmp_path / "absent")
