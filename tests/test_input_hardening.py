"""Input that used to cost without bound or change the result outside scoring: huge M2 annotator ids in a data
build, and a UTF-8 byte-order mark in the files a user hands over (a mix, a model's config)."""

from __future__ import annotations

import json
import time

import yaml
from support.metrics import write

from writetune.data.build import build_mix
from writetune.data.readers import read_m2 as read_m2_examples


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
