"""Loss masking by construction, padding-free packing that keeps examples apart, the data-order plan, and a loss
that does not change with the gradient-accumulation factor."""

from __future__ import annotations

import pytest
import torch

from support.train import tiny_recipe
from tiny import tiny_model, tiny_tokenizer
from writetune.prompt import alpaca, chatml, stop_token_ids, token_ids
from writetune.train import attention
from writetune.train.collate import IGNORE_INDEX, collate, pack, plan_steps, tokenize_example
from writetune.train.loop import Trainer, token_loss_sum
from writetune.train.recipe import recipe_from_dict

EXAMPLES = [
    ("Fix the grammar in this sentence:", "the cats is sleeping on the mat.", "The cats are sleeping on the mat."),
    ("Simplify this sentence:", "the committee deliberated extensively before reaching a verdict.",
     "The committee talked."),
    ("Answer the following.", "", "She goes to school every day."),
    ("Make this text more fluent:", "He go to the market yesterday.", "He went to the market yesterday."),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(tok, seed=3)


@pytest.mark.parametrize("fmt_name", ["chatml", "alpaca"])
def test_mask_ignores_everything_but_the_response(tok, fmt_name):
    fmt = chatml() if fmt_name == "chatml" else alpaca(tok.eos_token)
    for instruction, source, target in EXAMPLES:
        ex = tokenize_example(tok, fmt, instruction, source, target)
        labels = ex.labels()
        prompt_ids = token_ids(tok, fmt.render_prompt(instruction, source))
        # the ignored part is exactly the rendered prompt, the trained part exactly the rendered response
        assert list(ex.ids[: len(prompt_ids)]) == prompt_ids
        assert all(label == IGNORE_INDEX for label in labels[: len(prompt_ids)])
        trained = [label for label in labels if label != IGNORE_INDEX]
        assert len(trained) == ex.n_response == len(ex.ids) - len(prompt_ids)
        assert trained == list(ex.ids[len(prompt_ids):])
        assert tok.decode(trained).startswith(target)
        # the response ends with a stop token, so the tuned model learns to stop
        assert trained[-1] in stop_token_ids(tok, fmt)
        assert trained[-1] == tok.eos_token_id


def test_packed_targets_cover_every_response_token_once(tok):
    fmt = chatml()
    examples = [tokenize_example(tok, fmt, *e) for e in EXAMPLES]
    batch = collate(examples)
    labels = batch.labels[0].tolist()
    trained_positions = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    # each trained token is predicted from the position before it, and that position is inside the same example
    assert batch.target_positions.tolist() == [p - 1 for p in trained_positions]
    assert batch.targets.tolist() == [labels[p] for p in trained_positions]
    assert batch.n_targets == sum(ex.n_response for ex in examples)
    bounds = batch.cu_seq_lens.tolist()
    assert bounds == [0] + list(torch.tensor([len(e) for e in examples]).cumsum(0).tolist())
    starts = set(bounds[:-1])
    assert not any(p + 1 in starts for p in batch.target_positions.tolist())  # no target crosses a boundary
    assert batch.position_ids[0].tolist() == [i for e in examples for i in range(len(e))]
    assert batch.n_tokens == sum(len(e) for e in examples)  # no padding at all


@pytest.mark.parametrize("impl", ["varlen", "sdpa"])
def test_packed_loss_equals_sum_of_examples_alone(tok, model, impl):
    """Examples in one packed row do not attend to each other: the row's loss is the sum of the solo losses."""
    (attention.use_varlen if impl == "varlen" else attention.use_sdpa)(model)
    examples = [tokenize_example(tok, chatml(), *e) for e in EXAMPLES]
    off = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    with torch.no_grad():
        packed = token_loss_sum(model, collate(examples), off)
        alone = sum(token_loss_sum(model, collate([ex]), off) for ex in examples)
        # the same row with one position sequence and no boundaries: examples see each other, the loss moves
        batch = collate(examples)
        kwargs = batch.model_kwargs()
        for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"):
            kwargs.pop(key)
        kwargs["position_ids"] = torch.arange(batch.n_tokens)[None]
        attention.use_sdpa(model)
        logits = model(**kwargs).logits[0]
        leaky = torch.nn.functional.cross_entropy(logits, batch.targets, reduction="sum")
    assert packed.item() == pytest.approx(alone.item(), rel=1e-5)
    assert abs(leaky.item() - alone.item()) > 100 * 1e-5 * alone.item()


def test_varlen_model_still_generates_like_sdpa(tok, model):
    prompt = torch.tensor([token_ids(tok, chatml().render_prompt(*EXAMPLES[0][:2]))])
    attention.use_sdpa(model)
    ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    attention.use_varlen(model)
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    attention.use_sdpa(model)
    assert out.tolist() == ref.tolist()


def test_pack_respects_budget_and_order():
    lengths = [5, 7, 3, 9, 4, 4]
    rows = pack(range(6), lengths, 12)
    assert rows == [[0, 1], [2, 3], [4, 5]]
    assert all(sum(lengths[i] for i in row) <= 12 for row in rows)
    with pytest.raises(ValueError, match="more than the row budget"):
        pack([0], [20], 12)


def test_plan_is_deterministic_and_covers_each_epoch():
    lengths = [10 + (i * 7) % 23 for i in range(50)]
    a = plan_steps(lengths, budget=64, seed=1, world_size=2, grad_accum=2, epochs=2)
    b = plan_steps(lengths, budget=64, seed=1, world_size=2, grad_accum=2, epochs=2)
    c = plan_steps(lengths, budget=64, seed=2, world_size=2, grad_accum=2, epochs=2)
    assert a.steps == b.steps and a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert all(len(step) == 4 for step in a.steps)
    seen = [i for step in a.steps for row in step for i in row]
    assert len(seen) <= 100 and max(seen.count(i) for i in range(50)) <= 2
    assert a.rows_for(0, 1) == a.steps[0][2:4]
    fixed = plan_steps(lengths, budget=64, seed=1, max_steps=7)
    assert len(fixed) == 7


def test_loss_and_gradients_do_not_depend_on_accumulation(tmp_path, tiny_model_dir):
    """One step of 4 examples in one row equals one step of 2 rows x 2 examples (gradients and loss)."""
    from dataclasses import replace

    from writetune.train.collate import StepPlan

    recipe = recipe_from_dict(tiny_recipe(tmp_path, tiny_model_dir, batch__tokens=512))
    grads, losses = [], []
    for accum, rows in ((1, [[0, 1, 2, 3]]), (2, [[0, 1], [2, 3]]), (4, [[0], [1], [2], [3]])):
        trainer = Trainer(recipe).setup()
        plan = StepPlan(steps=[rows], world_size=1, grad_accum=accum, epoch_of_step=[0.1])
        trainer.data = replace(trainer.data, plan=plan)
        loss, _ = trainer.accumulate(0)
        losses.append(loss)
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad})
        targets = sum(trainer.data.examples[i].n_response for i in range(4))
        assert trainer.step_targets(0) == targets
    for other in grads[1:]:
        for name, grad in grads[0].items():
            torch.testing.assert_close(other[name], grad, rtol=1e-5, atol=1e-7)
    assert losses[1] == pytest.approx(losses[0], rel=1e-6) and losses[2] == pytest.approx(losses[0], rel=1e-6)


def test_varlen_attention_matches_causal_sdpa_per_example():
    """Both branches (matmul for short examples, SDPA for long ones), with grouped-query heads."""
    from types import SimpleNamespace

    from writetune.train.attention import MATH_MAX_LEN, _varlen_attention

    torch.manual_seed(0)
    lens = [5, MATH_MAX_LEN + 40, 37]
    total, heads, kv_heads, dim = sum(lens), 6, 2, 8
    q = torch.randn(1, heads, total, dim)
    k = torch.randn(1, kv_heads, total, dim)
    v = torch.randn(1, kv_heads, total, dim)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=True)
    out, _ = _varlen_attention(module, q, k, v, None, scaling=dim ** -0.5, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert out.shape == (1, total, heads, dim)
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, start:end], k[:, :, start:end].repeat_interleave(3, 1), v[:, :, start:end].repeat_interleave(3, 1),
            is_causal=True)
        torch.testing.assert_close(out[:, start:end], ref.transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_edit_weights_move_weight_onto_edits(tok):
    from writetune.data.record import Record
    from writetune.train.collate import edit_weights, tokenize_records

    fmt = chatml()
    ex = tokenize_example(tok, fmt, "Fix the grammar in this sentence:", "She go to school every day.",
                          "She goes to school every day.")
    weights = edit_weights(ex.ids[: ex.n_prompt], ex.ids[ex.n_prompt:], 3.0)
    assert weights is not None and len(weights) == ex.n_response
    assert sum(weights) == pytest.approx(ex.n_response)
    heavy = [tok.decode([t]) for t, w in zip(ex.ids[ex.n_prompt:], weights) if w > 1]
    assert heavy and "".join(heavy).strip() in "goes"  # only (part of) the edited word is up-weighted
    assert weights[-1] < 1  # the stop token counts as copied
    same = tokenize_example(tok, fmt, "Fix:", "She goes to school.", "She goes to school.")
    assert edit_weights(same.ids[: same.n_prompt], same.ids[same.n_prompt:], 3.0) is None  # unchanged pair
    records = [Record("1", "grammaticality", "Fix the grammar in this sentence:", "She go to school every day.",
                      "She goes to school every day."),
               Record("2", "generic", "Answer the following.", "She go to school.", "She goes to school.")]
    weighted = tokenize_records(tok, fmt, records, edit_weight=3.0)
    assert weighted[0].weights is not None and weighted[1].weights is None  # generic data is never re-weighted
    batch = collate(weighted)
    assert batch.weights is not None and batch.weights.shape == batch.targets.shape
    assert batch.weights.sum().item() == pytest.approx(batch.n_targets)
