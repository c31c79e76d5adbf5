"""Scoring input that used to cost without bound or change the result: hypotheses whose M2 edit lattice explodes,
huge annotator ids, a UTF-8 byte-order mark (in scored files, and in the other files a user hands over: a mix, a
model's config), and hypothesis files of blank lines; through `writetune score` and a real data build."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from writetune.cli import app
from writetune.data.build import build_mix
from writetune.data.readers import read_m2 as read_m2_examples
from writetune.metrics import score_files

GOLD = "S She go to school every day .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n\n" \
       "S He buyed apples .\nA 1 2|||R:VERB:INFL|||bought|||REQUIRED|||-NONE-|||0\n\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def score(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["score", *args])
    return result.exit_code, result.output


def test_an_exploding_m2_lattice_is_bounded_and_counts_as_one_wrong_edit(tmp_path):
    long_source = " ".join(f"w{i}" for i in range(60))
    gold = write(tmp_path / "gold.m2", GOLD.split("\n\n")[0] + f"\n\nS {long_source}\n"
                 "A 0 1|||R:NOUN|||v0|||REQUIRED|||-NONE-|||0\n\n")
    for length in (60, 1000):
        unrelated = " ".join(f"x{i}" for i in range(length))
        hyp = write(tmp_path / f"hyp{length}.txt", f"She goes to school every day .\n{unrelated}\n")
        started = time.perf_counter()
        code, output = score("--metric", "m2", "--hyp", str(hyp), "--m2", str(gold), "--json")
        elapsed = time.perf_counter() - started
        assert code == 0, output
        assert elapsed < 15, elapsed  # unbounded: 8 s and 330 MB at 60 tokens, memory exhausted at 1000
        # line 1 is a correct edit, line 2 counts as one proposed edit that is not correct
        assert {k: json.loads(output)["components"][k] for k in ("correct", "proposed", "gold")} == \
            {"correct": 1, "proposed": 2, "gold": 2}


def test_ordinary_m2_lines_still_score_exactly(tmp_path):
    gold = write(tmp_path / "gold.m2", GOLD)
    hyp = write(tmp_path / "hyp.txt", "She goes to school every day .\nHe bought some apples .\n")
    result = score_files("m2", hyp=hyp, m2=gold)
    assert (result.components["correct"], result.components["proposed"], result.components["gold"]) == (2, 3, 2)


def test_annotator_ids_are_labels_not_a_range(tmp_path):
    blocks = "".join(f"S Sentence {i} have a error .\nA 2 3|||R:VERB:SVA|||has|||REQUIRED|||-NONE-|||0\n"
                     f"A 3 4|||R:DET|||an|||REQUIRED|||-NONE-|||200000\n\n" for i in range(40))
    data = tmp_path / "data"
    write(data / "big-ids.m2", blocks)
    examples = read_m2_examples(data / "big-ids.m2")
    assert [len(e.references) for e in examples] == [2] * 40
    recipe = {"name": "ids", "dev": {"fraction": 0.0},
              "sources": [{"name": "m2", "task": "grammar", "targets": "all",
                           "read": {"format": "m2", "path": "big-ids.m2"}}]}
    write(tmp_path / "recipe.yaml", yaml.safe_dump(recipe))
    started = time.perf_counter()
    result = build_mix(tmp_path / "recipe.yaml", tmp_path / "out", data_dir=data)
    assert time.perf_counter() - started < 10
    assert result.train == 80  # two distinct corrections per sentence


def test_a_byte_order_mark_changes_nothing(tmp_path):
    ref = write(tmp_path / "ref.txt", "She goes home .\nHe is here .\n")
    plain = write(tmp_path / "plain.txt", "She goes home .\nHe is here .\n")
    bom = write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + plain.read_bytes())
    assert score_files("em", hyp=bom, refs=[ref]).score == score_files("em", hyp=plain, refs=[ref]).score == 100.0
    gold = write(tmp_path / "gold.m2", GOLD)
    gold_bom = write(tmp_path / "gold-bom.m2", b"\xef\xbb\xbf" + GOLD.encode())
    hyp = write(tmp_path / "hyp.txt", "She goes to school every day .\nHe buyed apples .\n")
    code, with_bom = score("--metric", "m2", "--hyp", str(hyp), "--m2", str(gold_bom), "--json")
    assert code == 0
    assert json.loads(with_bom)["score"] == score_files("m2", hyp=hyp, m2=gold).score


def test_a_hypothesis_file_of_blank_lines_is_scorable(tmp_path):
    ref = write(tmp_path / "ref.txt", "She goes home .\nHe is here .\n")
    blank = write(tmp_path / "blank.txt", "\n\n")
    code, output = score("--metric", "em", "--hyp", str(blank), "--ref", str(ref), "--json")
    assert code == 0, output
    assert json.loads(output)["score"] == 0.0


def test_a_byte_order_mark_in_a_mix_or_a_model_config_is_not_part_of_the_content(tmp_path, tiny_model_dir):
    import shutil

    from writetune.models import resolve
    from writetune.data.record import read_records

    record = {"id": "r1", "task": "grammaticality", "instruction": "Fix it.", "input": "She go.", "output": "She goes."}
    mix = write(tmp_path / "train.jsonl", b"\xef\xbb\xbf" + (json.dumps(record) + "\n").encode())
    assert [r.id for r in read_records(mix)] == ["r1"]
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    write(model / "config.json", b"\xef\xbb\xbf" + (model / "config.json").read_bytes())
    assert resolve(str(model)).kind == "directory"
