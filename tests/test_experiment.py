"""`writetune experiment` on the tiny model and real corpora: variants share a built mix, every variant is a named
row of one evaluation, x values give a curve plot, a second call redoes nothing, and bad grids are refused."""

import json

import pytest
from typer.testing import CliRunner

from writetune.cli import app
from writetune.experiment import GridError, check_variants, load_grid, run_experiment
from writetune.config import RecipeError

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def grid(tmp_path, tiny_model_dir):
    base = REPO / "configs" / "mix-paper.yaml"
    _write(tmp_path / "mix-a.yaml", f"base: {base}\nname: a\nsize: 30\ninclude_tasks: [fluency, generic]\n")
    _write(tmp_path / "mix-b.yaml", f"base: {base}\nname: b\nsize: 30\ninclude_tasks: [fluency]\n")
    _write(tmp_path / "train.yaml",
           f"model: {tiny_model_dir}\ndata: unused\noutput_dir: unused\nmethod: lora\nmax_steps: 2\nprecision: fp32\n"
           "batch: {tokens: 512, grad_accum: 1}\ncheckpoint: {every: 0}\n"
           "eval: {every: 0, at_start: false, at_end: false}\nlog: {tensorboard: false, progress: false}\n")
    _write(tmp_path / "run.yaml", "data: mix-a.yaml\ntrain: train.yaml\n"
           "eval: {sets: [jfleg_dev], limit: 3, bootstrap: 20, max_new_tokens: 6, batch_size: 4}\n")
    return _write(tmp_path / "grids" / "g.yaml",
                  "name: g\nrun: ../run.yaml\ntrain_set: {seed: 3}\nx_label: share\nvariants:\n"
                  "  mixed: {x: 1}\n"
                  "  mixed-lr: {x: 2, train_set: {optimizer.lr: 1.0e-3}}\n"
                  "  fluency-only: {data: ../mix-b.yaml, x: 0}\n")


def test_grid_shares_mixes_and_one_evaluation(grid, tmp_path, tiny_model_dir, shared_dir, monkeypatch):
    out = tmp_path / "exp"
    result = run_experiment(grid, out, data_dir=shared_dir / "data")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["mix-a", "mix-b"]  # mixed and mixed-lr share one
    assert {v["data"] for v in result.stages.values()} == {"done", "skipped (already complete)"}
    for name in ("mixed", "mixed-lr", "fluency-only"):
        recipe = (out / "runs" / name / "recipe.yaml").read_text()
        assert (out / "runs" / name / "model").is_dir() and "seed: 3" in recipe
    assert "lr: 0.001" in (out / "runs" / "mixed-lr" / "recipe.yaml").read_text()
    document = json.loads((out / "eval" / "results.json").read_text())
    assert list(document["systems"]) == [str(tiny_model_dir), "copy", "mixed", "mixed-lr", "fluency-only"]
    assert document["baseline"] == str(tiny_model_dir)
    assert result.curve == out / "eval" / "plots" / "curve.png" and result.curve.stat().st_size > 1000

    from writetune.gather import write_results_page

    trained = json.loads((out / "runs" / "mixed" / "train_result.json").read_text())
    assert 0 < trained["trainable_params"] < trained["total_params"] and trained["hardware"].startswith("1 x ")
    page = write_results_page([out], tmp_path / "page").read_text()
    row = next(line for line in page.split("## Cost")[1].splitlines() if line.startswith("| mixed |"))
    assert f"{trained['trainable_params']:,} / {trained['total_params']:,}" in row and "(lora)" in row
    assert "(adapter)" in row and trained["hardware"] in row

    from writetune.generate import TransformersGenerator

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished experiment generated again")

    monkeypatch.setattr(TransformersGenerator, "generate", no_generation)
    again = run_experiment(grid, out, data_dir=shared_dir / "data")
    assert all(s == {"data": "skipped (already complete)", "train": "skipped (already complete)"}
               for s in again.stages.values())

    grid.write_text(grid.read_text().replace("seed: 3", "seed: 4"), encoding="utf-8")
    with pytest.raises(RecipeError, match="different recipe"):
        run_experiment(grid, out, data_dir=shared_dir / "data")


def test_grids_sharing_trainings_train_each_model_once(grid, tmp_path, tiny_model_dir, shared_dir):
    shared = tmp_path / "shared"
    trainings = shared / "trainings"
    first = run_experiment(grid, tmp_path / "one", data_dir=shared_dir / "data", share=shared)
    assert {s["train"] for s in first.stages.values()} == {"done"}
    keys = sorted(p.name for p in trainings.iterdir() if p.is_dir())
    assert len(keys) == 3
    assert all((tmp_path / "one" / "runs" / name).is_symlink() for name in first.stages)
    assert any(line.startswith("mixed: data done (") and "train done (" in line for line in first.format_stages())

    # the same models under other names, and one new: only the new one trains
    second_grid = _write(grid.parent / "g2.yaml",
                         "name: g2\nrun: ../run.yaml\ntrain_set: {seed: 3}\nvariants:\n"
                         "  same-as-mixed: {}\n"
                         "  same-as-mixed-lr: {train_set: {optimizer.lr: 1.0e-3}}\n"
                         "  new-seed: {train_set: {seed: 5}}\n")
    second = run_experiment(second_grid, tmp_path / "two", data_dir=shared_dir / "data", share=shared)
    assert [s["train"] for s in second.stages.values()] == ["skipped (already complete)"] * 2 + ["done"]
    assert len([p for p in trainings.iterdir() if p.is_dir()]) == 4
    one, two = (json.loads((tmp_path / d / "eval" / "results.json").read_text()) for d in ("one", "two"))
    assert two["system_info"]["same-as-mixed"]["model"] == one["system_info"]["mixed"]["model"]
    assert two["system_info"]["new-seed"]["model"] != one["system_info"]["mixed"]["model"]
    # answers too: the base row and the shared trainings' rows are read from the shared answers, not generated
    assert set(one["timing"]["generation"]) == {str(tiny_model_dir), "copy", "mixed", "mixed-lr", "fluency-only"}
    assert set(two["timing"]["generation"]) == {"new-seed"}
    assert two["systems"]["same-as-mixed"] == one["systems"]["mixed"]

    # a variant whose training settings changed does not silently keep the old training behind its link
    train = tmp_path / "train.yaml"
    train.write_text(train.read_text().replace("max_steps: 2", "max_steps: 3"), encoding="utf-8")
    with pytest.raises(GridError, match="links to .*remove the link"):
        run_experiment(grid, tmp_path / "one", data_dir=shared_dir / "data", share=shared)


def test_a_shared_training_in_progress_is_waited_for(grid, tmp_path, shared_dir):
    import fcntl
    import threading

    from writetune.experiment import training_key

    shared = tmp_path / "shared"
    trainings = shared / "trainings"
    single = _write(grid.parent / "one.yaml", "name: one\nrun: ../run.yaml\nvariants:\n  only: {}\n")
    run_experiment(single, tmp_path / "build-only", data_dir=shared_dir / "data")  # the mix, to compute the key
    key = training_key(tmp_path / "train.yaml", {}, tmp_path / "build-only" / "data" / "mix-a")
    trainings.mkdir(parents=True)
    finished = []
    with open(trainings / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is training this model
        worker = threading.Thread(target=lambda: finished.append(run_experiment(
            single, tmp_path / "waiting", data_dir=shared_dir / "data", share=shared)))
        worker.start()
        worker.join(timeout=3)
        assert worker.is_alive() and not (trainings / key / "model").exists()
    worker.join(timeout=300)
    assert finished and finished[0].stages["only"]["train"] == "done" and (trainings / key / "model").is_dir()


def test_bad_grids_name_file_and_key(tmp_path):
    path = _write(tmp_path / "g.yaml", "name: g\nrun: r.yaml\nvariants: {}\n")
    with pytest.raises(GridError, match=r"g.yaml: key 'variants'"):
        load_grid(path)
    path.write_text("name: g\nrun: r.yaml\nvariants: {'a b': {}}\n", encoding="utf-8")
    with pytest.raises(GridError, match="variant name 'a b'"):
        load_grid(path)
    path.write_text("name: g\nrun: r.yaml\nvariants: {a: {x: 1}, b: {}}\n", encoding="utf-8")
    with pytest.raises(GridError, match="give `x` to every variant or to none"):
        load_grid(path)
    path.write_text("name: g\nrun: r.yaml\nvariants: {a: {lr: 1}}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["experiment", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "key 'variants.a.lr'" in result.output


def test_bad_variants_name_file_and_key(tmp_path, tiny_model_dir):
    _write(tmp_path / "mix.yaml", f"base: {REPO / 'configs' / 'mix-paper.yaml'}\nname: m\n")
    _write(tmp_path / "train.yaml", f"model: {tiny_model_dir}\ndata: unused\noutput_dir: unused\n")
    _write(tmp_path / "run.yaml", "data: mix.yaml\ntrain: train.yaml\n")
    path = tmp_path / "g.yaml"

    def refused(variants: str, match: str):
        path.write_text(f"name: g\nrun: run.yaml\nvariants:\n{variants}", encoding="utf-8")
        with pytest.raises(GridError, match=match):
            run_experiment(path, tmp_path / "out", data_dir=tmp_path)
        assert not (tmp_path / "out").exists()

    refused("  a: {}\n  b: {}\n  a: {x: 1}\n", r"g.yaml:6: key 'variants.a': variant name given twice")
    refused("  a+b: {}\n  a_b: {}\n", r"key 'variants.a\+b': collides with another variant")
    refused("  copy: {}\n", r"key 'variants.copy': 'copy' is also a baseline row")
    refused("  a: {data: missing.yaml}\n", r"g.yaml: key 'variants.a.data': no mix recipe at .*missing.yaml")
    refused("  a: {train: nope.yaml}\n", r"g.yaml: key 'variants.a.train': no training recipe")
    refused("  a: {train_set: {model: no-such-model}}\n", r"key 'variants.a.train_set.model': unknown model spec")
    refused("  smollm2-135m: {train_set: {model: smollm2-135m}}\n",
            r"g.yaml: key 'variants.smollm2-135m': 'smollm2-135m' is also the name of the base model's row")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "grids").glob("*.yaml")))
def test_shipped_grids_and_their_recipes_are_valid(name):
    from writetune.data.recipe import load_mix_recipe
    from writetune.pipeline import load_run_recipe
    from writetune.train.recipe import load_train_recipe

    path = REPO / "configs" / "grids" / name
    grid = load_grid(path)
    run_path = path.parent / grid.run
    run = load_run_recipe(run_path)
    check_variants(grid, path, run, run_path)
    for variant in grid.variants.values():
        assert load_mix_recipe(path.parent / variant.data if variant.data else run_path.parent / run.data).sources
        train = path.parent / variant.train if variant.train else run_path.parent / run.train
        load_train_recipe(train, settings={**run.train_set, **grid.train_set, **variant.train_set})


def test_grid_evaluation_suites_are_checked_when_the_grid_is_read(tmp_path):
    path = _write(tmp_path / "g.yaml", "name: g\nrun: r.yaml\neval: {suite: 'writing-dev,generl'}\nvariants: {a: {}}\n")
    with pytest.raises(GridError, match=r"g.yaml: key 'eval.suite': unknown suite 'generl'"):
        load_grid(path)
    path.write_text("name: g\nrun: r.yaml\neval: {suite: 'writing-dev, general'}\nvariants: {a: {}}\n")
    assert load_grid(path).eval.suite == "writing-dev, general"
