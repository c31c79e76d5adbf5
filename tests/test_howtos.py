"""The four how-tos of docs/architecture.md, each followed once: a task, an evaluation set, a metric and a
generation backend are added from fixtures here and used through the entry points the how-to names (the task's
records go through the mix builder and its instruction through the prompt renderer; the evaluation set is found by
the registry and scored by the suite runner; the metric is found by name and alias, scores and signs; the backend
is chosen by `make_generator` and answers `Request`s under a `DecodingConfig`). Each registry is a private copy for
the test, so nothing added here outlives it."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from writetune import tasks
from writetune.data import evalsets
from writetune.data.build import build_mix
from writetune.data.evalsets import Carving, EvalSet, get_eval_set, load_eval_set, register_eval_set, suite
from writetune.data.record import read_records
from writetune.data.sources import ParallelSource
from writetune.evaluate import EvalConfig, run_evaluation
from writetune.generate import DecodingConfig, Request, backends, make_generator, register_backend, render_prompt
from writetune.generate import select
from writetune.generate.api import token_budget
from writetune.metrics import Inputs, Metric, SegmentStats, canonical_name, get_metric, higher_is_better, registry
from writetune.metrics.registry import register_metric
from writetune.models import load_model
from writetune.prompt import stop_token_ids, token_ids
from writetune.tasks import get_task, register_task_file

# (informal, formal) pairs; the first few are already formal, so their reference is the source itself
ALREADY_FORMAL = [f"The report on item {i} will be ready on Monday." for i in range(4)]
PAIRS = [(s, s) for s in ALREADY_FORMAL] + [
    (f"gonna send u the file {i} tmrw lol", f"I will send you file {i} tomorrow.") for i in range(26)
]


@pytest.fixture
def private_registries(monkeypatch):
    """Copies of the task, evaluation-set, metric and backend registries, so additions vanish with the test."""
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(tasks, "_ALIASES", dict(tasks._ALIASES))
    monkeypatch.setattr(evalsets, "_REGISTRY", dict(evalsets._REGISTRY))
    monkeypatch.setattr(registry, "METRICS", dict(registry.METRICS))
    monkeypatch.setattr(registry, "ALIASES", dict(registry.ALIASES))
    monkeypatch.setattr(select, "_FACTORIES", dict(select._FACTORIES))


@pytest.fixture
def formality(tmp_path, private_registries):
    """How-to 1's task file, registered; and a data directory holding its corpus as a source and a reference
    file."""
    task_file = tmp_path / "formality.yaml"
    task_file.write_text(yaml.safe_dump({
        "name": "formality",
        "description": "Rewrite informal text in a formal register.",
        "aliases": ["formal"],
        "metrics": ["em"],
        "instructions": ["Make this text formal:", "Rewrite this in a formal register:", "Formalize this sentence:"],
    }), encoding="utf-8")
    data = tmp_path / "data"
    (data / "formality").mkdir(parents=True)
    (data / "formality" / "train.src").write_text("".join(f"{s}\n" for s, _ in PAIRS), encoding="utf-8")
    (data / "formality" / "train.ref").write_text("".join(f"{r}\n" for _, r in PAIRS), encoding="utf-8")
    return register_task_file(task_file), task_file, data


def test_howto_add_a_task(formality, tiny_model_dir, tmp_path):
    task, task_file, data = formality
    assert get_task("Formal") is task and task in tasks.writing_tasks()

    # the task's instruction renders through the one prompt renderer, as the model's own chat template would
    loaded = load_model(str(tiny_model_dir))
    fmt = loaded.prompt_format
    text = "gonna send u the file tmrw"
    rendered = render_prompt(fmt, Request(task.instruction, text))
    assert rendered == fmt.render_prompt(task.instruction, text)
    assert rendered == loaded.tokenizer.apply_chat_template(
        [{"role": "system", "content": fmt.system}, {"role": "user", "content": f"{task.instruction}\n\n{text}"}],
        tokenize=False, add_generation_prompt=True)

    # a mix recipe that names the task file trains on the task's corpus, with the task's phrasings
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "formality-mix",
        "task_files": [task_file.name],
        "dev": {"fraction": 0.2, "max_per_source": 10},
        "unchanged_share": 0.5,
        "sources": [{"name": "formality_train", "task": "formal", "read": {
            "format": "parallel", "source": "formality/train.src", "references": ["formality/train.ref"]}}],
    }), encoding="utf-8")
    result = build_mix(recipe, tmp_path / "mix", data_dir=data)
    train = read_records(tmp_path / "mix" / "train.jsonl")
    dev = read_records(tmp_path / "mix" / "dev.jsonl")
    assert result.train == len(train) > 0 and result.dev == len(dev) > 0
    assert {r.task for r in train + dev} == {"formality"}
    assert all(r.instruction in task.instructions for r in train + dev)
    assert {(r.input, r.output) for r in train + dev} <= set(PAIRS)
    assert not {r.input for r in train} & {r.input for r in dev}  # dev sentences are not trained on
    counted = result.manifest["instructions"]["formality"]
    assert set(counted) <= set(task.instructions) and sum(counted.values()) == len(train)


def test_howto_add_an_evaluation_set(formality, tmp_path):
    task, _, data = formality
    items = PAIRS[:10]
    (data / "formality" / "dev.src").write_text("".join(f"{s}\n" for s, _ in items), encoding="utf-8")
    (data / "formality" / "dev.ref").write_text("".join(f"{r}\n" for _, r in items), encoding="utf-8")
    evalset = register_eval_set(EvalSet(
        "formality_dev", "formality", "writing-dev", "10 informal sentences with one formal reference each",
        ParallelSource(format="parallel", source="formality/dev.src", references=["formality/dev.ref"]),
        ("em",), "raw", 1, Carving(None),
    ))
    assert get_eval_set("formality_dev") is evalset and evalset in suite("writing-dev")
    assert get_task(evalset.task) is task and evalset.available(data)
    assert [(e.source, e.references) for e in load_eval_set("formality_dev", data)] == [(s, (r,)) for s, r in items]

    document = run_evaluation(EvalConfig(models=["copy"], data_dir=data, out=tmp_path / "eval", suite="writing-dev",
                                         sets=["formality_dev"], bootstrap=0), progress=False)
    assert document["sets"]["formality_dev"]["n"] == len(items)
    assert document["sets"]["formality_dev"]["instruction"] == task.instruction
    [record] = document["systems"]["copy"]["formality_dev"]
    copied = sum(source == reference for source, reference in items)
    assert record["metric"] == "em" and record["score"] == pytest.approx(100 * copied / len(items))
    assert 0 < record["score"] < 100
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["systems"]["copy"]["formality_dev"]

    # the mix builder holds the new writing-dev set out of training
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({"name": "m", "unchanged_share": 0.5, "sources": [
        {"name": "formality_train", "task": "formality", "read": {
            "format": "parallel", "source": "formality/train.src", "references": ["formality/train.ref"]}}]}),
        encoding="utf-8")
    built = build_mix(recipe, tmp_path / "mix", data_dir=data)
    trained = {r.input for r in read_records(tmp_path / "mix" / "train.jsonl")}
    assert built.dev == 0 and trained == {s for s, _ in PAIRS} - {s for s, _ in items}
    assert built.manifest["sources"]["formality_train"]["held_out"] == len(items)
    assert built.manifest["holdout"]["eval_sets"]["formality_dev"]["matches"] == len(items)


class TokenRecall(Metric):
    """How-to 3's metric: the share of reference tokens (whitespace-split, with their counts) that the output has,
    summed over the corpus, against the first reference."""

    name = "token_recall"
    label = "Token recall"
    needs_refs = True

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        found, total = [], []
        for hyp, ref in zip(inputs.hyps, inputs.refs[0]):
            ref_counts, hyp_counts = Counter(ref.split()), Counter(hyp.split())
            found.append(sum(min(n, hyp_counts[token]) for token, n in ref_counts.items()))
            total.append(sum(ref_counts.values()))
        arrays = {"found": np.array(found, dtype=np.int64), "total": np.array(total, dtype=np.int64)}
        return SegmentStats(arrays, len(found), {"n_refs": len(inputs.refs)})

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        found, total = int(stats["found"].sum()), int(stats["total"].sum())
        return 100.0 * found / total, {"found": found, "total": total}

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {"tok": "whitespace", "case": "sensitive", "refs": n_refs}


def test_howto_add_a_metric(private_registries):
    register_metric(TokenRecall, aliases=("token-recall", "recall"))
    assert canonical_name("Token-Recall") == canonical_name("recall") == "token_recall"
    assert higher_is_better("recall") is True
    metric = get_metric("token-recall")
    assert isinstance(metric, TokenRecall)
    with pytest.raises(ValueError, match="already used by metric 'token_recall'"):
        register_metric(type("Other", (TokenRecall,), {"name": "other"}), aliases=("recall",))

    hyps = ["the cat sat on the mat", "a dog barked", "nothing in common"]
    refs = ["the cat sat on a mat", "the dog barked loudly", "completely different words"]
    score = metric.corpus_score(hyps, refs=[refs], bootstrap=200, seed=7)
    found = sum(sum((Counter(h.split()) & Counter(r.split())).values()) for h, r in zip(hyps, refs))
    total = sum(len(r.split()) for r in refs)
    assert score.score == pytest.approx(100 * found / total) and score.n == len(hyps)
    assert score.ci is not None and score.ci[0] <= score.score <= score.ci[1]
    assert score.signature.startswith("token_recall|tok:whitespace|case:sensitive|refs:1|bootstrap:200|seed:7|")
    assert "version:writetune-" in score.signature


class NaiveGreedyGenerator:
    """How-to 4's backend: greedy decoding by recomputing the whole sequence at every step (no cache, no batch),
    the plainest loop over a transformers model, answering through the common request and decoding API."""

    def __init__(self, loaded):
        self.model, self.tokenizer, self.fmt = loaded.model, loaded.tokenizer, loaded.prompt_format
        self.stop_ids = set(stop_token_ids(self.tokenizer, self.fmt))
        self.tokens_generated = 0

    def describe(self) -> str:
        return "naive-greedy"

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        if decoding.strategy != "greedy":
            raise ValueError(f"the naive backend decodes greedily, not '{decoding.name}'")
        outputs = []
        for request in requests:
            ids = token_ids(self.tokenizer, render_prompt(self.fmt, request))
            new: list[int] = []
            with torch.inference_mode():
                for _ in range(token_budget(len(token_ids(self.tokenizer, request.budget_text)), decoding)):
                    token = int(self.model(torch.tensor([ids + new])).logits[0, -1].argmax())
                    if token in self.stop_ids:
                        break
                    new.append(token)
            self.tokens_generated += len(new)
            outputs.append(self.fmt.strip_response(self.tokenizer.decode(new, skip_special_tokens=True)))
            if on_batch is not None:
                on_batch(1)
        return outputs


def naive_backend(spec: str, *, dtype: str, device: str, **options) -> NaiveGreedyGenerator:
    return NaiveGreedyGenerator(load_model(spec, dtype=dtype, device=device, merge_adapter=True))


def test_howto_add_a_generation_backend(private_registries, tiny_model_dir):
    register_backend("naive", naive_backend)
    assert "naive" in backends()
    with pytest.raises(ValueError, match="already registered"):
        register_backend("naive", naive_backend)
    with pytest.raises(ValueError, match="reserved"):
        register_backend("openai", naive_backend)

    generator = make_generator(str(tiny_model_dir), backend="naive", dtype="float32", device="cpu")
    assert isinstance(generator, NaiveGreedyGenerator)
    requests = [Request("Fix the grammar in this sentence:", "She go to school."),
                Request("Simplify this sentence:", "The committee deliberated extensively."),
                Request("Paraphrase this sentence:", "The quick brown fox jumps.")]
    decoding = DecodingConfig(max_new_tokens=8, length_ratio=0.0, length_slack=8, batch_size=2)
    done = []
    answers = generator.generate(requests, decoding, on_batch=done.append)
    assert len(answers) == len(requests) and sum(done) == len(requests)
    assert 0 < generator.tokens_generated <= len(requests) * decoding.max_new_tokens
    # the built-in transformers backend (its continuous-batching engine) decodes the same model greedily alike
    reference = make_generator(str(tiny_model_dir), dtype="float32", device="cpu")
    assert answers == reference.generate(requests, decoding)
    assert generator.tokens_generated == reference.tokens_generated
