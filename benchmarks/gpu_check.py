"""GPU check: writetune's training loop and generation engine on one CUDA GPU, against TRL and transformers, and
the dry run's memory estimate against the measured peak. Sized for under 10 minutes on one H100/H200-class GPU.

Nothing is downloaded. Models are randomly initialised LLaMA models of the SmolLM2-135M and LLaMA-7B shapes (the
architectures shipped in `writetune/train/architectures/`), the tokenizer is a byte-level BPE trained in-process
(`tests/tiny.py`, ChatML), and the data is a synthetic mix of random word sequences written to a temporary folder.
Random weights make the numbers about speed and memory only.

Per shape (LoRA r=16, alpha 32 on every linear layer, dropout 0, bf16, gradient checkpointing on for the 7B
shape):
  writetune     `Trainer` for a fixed number of optimizer steps after one untimed step: tokens/s (real tokens),
                MFU (model FLOPs as the dry run counts them, over the GPU's bf16 peak), peak memory
                (`torch.cuda.max_memory_allocated`), and the dry run's estimate for the heaviest row of those steps
  trl           TRL's SFTTrainer with the same LoRA config, precision, checkpointing and data, through
                `benchmarks/train_throughput.py`'s setup (batch 8 padded, completion-only loss), same number of
                steps: tokens/s, MFU, peak memory. Skipped, with the reason, when trl is not installed
  loss at step 1 both systems' loss on the same 8 examples with the same initial weights (before any update)
For the SmolLM2-135M shape, generation: the writetune engine against transformers' continuous batching
(`generate_batch`, its default scheduling) on the same prompts, greedy, the same token budget, the engine with 64
rows as `writetune eval` runs it: generated tokens/s and the share of identical outputs.

The last line printed is the summary of ratios; `--out` also gets every number as JSON. `--cpu-smoke` runs the
same code end to end on CPU at tiny sizes (what the test suite runs); its numbers are not measurements of anything.

    python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from tiny import tiny_tokenizer  # noqa: E402
from train_throughput import TARGETS, sft_trainer, timed_sft_training  # noqa: E402

SHAPES = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M", "llama-7b": "huggyllama/llama-7b"}
INSTRUCTIONS = ["Fix the grammar in this sentence:", "Simplify this sentence:", "Make this text more fluent:",
                "Paraphrase this sentence:"]
WORDS = ("she goes to school every day he went to the market yesterday the committee deliberated extensively "
         "before reaching a verdict quick brown fox jumps over lazy dog cats are sleeping on mat").split()


def settings(cpu_smoke: bool) -> dict:
    if cpu_smoke:
        return dict(device="cpu", shapes=["tiny"], steps=2, row_tokens=256, records=48, words=(6, 20),
                    gen_requests=4, gen_tokens=8)
    return dict(device="cuda", shapes=list(SHAPES), steps=20, row_tokens=2048, records=3000, words=(20, 60),
                gen_requests=256, gen_tokens=128)


def write_mix(directory: Path, n: int, words: tuple[int, int], seed: int = 0) -> Path:
    """train.jsonl of random word sequences in the format of `writetune data build`."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            source = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
            target = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
            fh.write(json.dumps({"id": f"train-{i}", "task": "grammaticality", "origin": "synthetic",
                                 "instruction": rng.choice(INSTRUCTIONS), "input": source, "output": target}) + "\n")
    return directory


def architecture(shape: str, tokenizer):
    """The transformers config of a shape, with the tokenizer's special tokens."""
    from transformers import LlamaConfig

    from writetune.train.dryrun import model_architecture

    if shape == "tiny":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    else:
        config, _ = model_architecture(SHAPES[shape])
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return config


def random_model(config, tokenizer, device: str, seed: int = 0):
    """A randomly initialised model (fp32, on `device`) as a writetune LoadedModel; the same seed gives the same
    weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from writetune.models import LoadedModel, ResolvedModel
    from writetune.prompt import chatml

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return LoadedModel(model=model, tokenizer=tokenizer, prompt_format=chatml(),
                       resolved=ResolvedModel(spec="random-init", kind="directory", path="random-init"))


def recipe_for(shape: str, mix: Path, run_dir: Path, plan: dict):
    from writetune.train.recipe import recipe_from_dict

    return recipe_from_dict({
        "model": "random-init", "data": str(mix), "output_dir": str(run_dir), "method": "lora",
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": TARGETS},
        "optimizer": {"lr": 1e-4}, "schedule": {"name": "constant", "warmup_steps": 0},
        "batch": {"tokens": plan["row_tokens"], "grad_accum": 1, "max_example_tokens": min(512, plan["row_tokens"])},
        "max_steps": plan["steps"] + 2, "seed": 0, "precision": "bf16",
        "gradient_checkpointing": shape == "llama-7b", "checkpoint": {"every": 0},
        "eval": {"every": 0, "at_start": False, "at_end": False},
        "log": {"tensorboard": False, "progress": False}})


def peak_tflops(device: str) -> float | None:
    """The bf16 peak of the GPU in use, from the dry run's table (None on CPU or an unknown GPU)."""
    import torch

    from writetune.train.dryrun import GPUS

    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0).lower().replace(" ", "")
    for key, spec in GPUS.items():
        if key in name:
            return spec.bf16_tflops
    return None


def run_writetune(shape: str, config, tokenizer, mix: Path, workdir: Path, plan: dict) -> tuple[dict, list]:
    """writetune's loop for `steps` timed steps; returns its numbers and the 8 examples the step-1 loss uses."""
    import torch

    from writetune.train import dryrun
    from writetune.train.collate import collate
    from writetune.train.loop import Trainer, token_loss_sum
    from writetune.train.peakmem import step_peak_bytes

    device = plan["device"]
    recipe = recipe_for(shape, mix, workdir / f"{shape}-writetune", plan)
    trainer = Trainer(recipe, loaded=random_model(config, tokenizer, device)).setup()
    probe = trainer.data.examples[:8]
    with torch.no_grad():
        batch = collate(probe).to(trainer.runtime.device)
        loss0 = (token_loss_sum(trainer.model, batch, trainer.runtime.autocast) / batch.n_targets).item()
    trainer.train_step(0)  # untimed: kernel set-up and the optimizer state
    timed_steps = range(1, plan["steps"] + 1)

    def timed():
        for index in timed_steps:
            trainer.train_step(index)

    _sync(device)
    started = time.perf_counter()
    if device == "cuda":
        peak = step_peak_bytes(timed, trainer.runtime.device)
        measured_steps = timed_steps
    else:
        timed()
    _sync(device)
    seconds = time.perf_counter() - started
    if device != "cuda":  # the profiler's memory timeline would slow the timed steps: one more step, alone
        measured_steps = range(plan["steps"] + 1, plan["steps"] + 2)
        peak = step_peak_bytes(lambda: trainer.train_step(measured_steps[0]), trainer.runtime.device)
    shapes = [dryrun.RowShape.of([trainer.data.examples[i] for i in row]) for index in measured_steps
              for row in trainer.data.plan.steps[index]]
    counts = dryrun.count_parameters(dryrun.build_meta_model(recipe, config))
    single = dryrun.read_accelerate_config(None)
    estimate = max(sum(t.bytes for t in dryrun.memory_terms(recipe, counts, single, config, row)) for row in shapes)
    examples, steps = trainer.data.examples, trainer.data.plan.steps
    timed = [examples[i] for index in timed_steps for row in steps[index] for i in row]
    tokens = sum(len(example) for example in timed)
    targets = sum(example.n_response for example in timed)
    mean_len = sum(len(e) for e in examples) / len(examples)
    flops = dryrun.flops_per_token(recipe, counts, config, mean_len, targets / tokens)
    result = {"system": "writetune", "steps": plan["steps"], "tokens": tokens, "seconds": seconds,
              "tokens_per_s": tokens / seconds, "flops_per_token": flops, "peak_bytes": peak,
              "estimate_bytes": estimate, "loss_step1": loss0, "params": counts.total,
              "trainable": counts.trainable}
    del trainer
    _free(device)
    return result, probe


def run_trl(shape: str, config, tokenizer, mix: Path, workdir: Path, plan: dict, probe) -> dict:
    """TRL's SFTTrainer through train_throughput's setup, on the same data and initial weights."""
    import torch

    device = plan["device"]
    loaded = random_model(config, tokenizer, device)
    trainer = sft_trainer(loaded, mix, workdir / f"{shape}-trl", rank=16, alpha=32, lr=1e-4, precision="bf16",
                          gradient_checkpointing=shape == "llama-7b", max_steps=plan["steps"],
                          include_num_input_tokens_seen="non_padding")
    model = trainer.model
    with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16):
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(probe))])
        batch = {k: v.to(model.device) for k, v in batch.items() if hasattr(v, "to")}
        loss0 = model(**batch).loss.item()
    seconds, memory = timed_sft_training(trainer)
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {"system": "trl", "steps": plan["steps"], "tokens": tokens, "seconds": seconds,
              "tokens_per_s": tokens / seconds, "peak_bytes": memory.peak, "loss_step1": loss0,
              "batch": trainer.args.per_device_train_batch_size}
    del trainer, model, loaded
    _free(device)
    return result


def run_generation(config, tokenizer, mix: Path, plan: dict) -> dict:
    """The writetune engine against transformers' continuous batching, greedy, same prompts and budget."""
    import torch
    from transformers import GenerationConfig

    from writetune.generate import DecodingConfig, Request, TransformersGenerator, render_prompt
    from writetune.prompt import stop_token_ids, token_ids
    from writetune.data.record import read_records

    device = plan["device"]
    loaded = random_model(config, tokenizer, device)
    loaded.model.to(torch.bfloat16).eval()
    records = read_records(mix / "train.jsonl")[: plan["gen_requests"]]
    requests = [Request(r.instruction, r.input) for r in records]
    budget = plan["gen_tokens"]
    decoding = DecodingConfig(max_new_tokens=budget, length_ratio=1000.0, batch_size=min(64, len(requests)))
    generator = TransformersGenerator(loaded)
    with torch.no_grad():
        generator.generate(requests[:2], decoding)  # warm-up
        generator.tokens_generated = 0
        _sync(device)
        started = time.perf_counter()
        ours = generator.generate(requests, decoding)
        _sync(device)
        ours_s = time.perf_counter() - started
    ours_tokens = generator.tokens_generated
    prompts = [token_ids(tokenizer, render_prompt(loaded.prompt_format, r)) for r in requests]
    stops = sorted(stop_token_ids(tokenizer, loaded.prompt_format))
    gen_config = GenerationConfig(max_new_tokens=budget, do_sample=False, eos_token_id=stops,
                                  pad_token_id=tokenizer.pad_token_id)
    cb_kwargs = {}
    if device != "cuda":
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        cb_kwargs = {"continuous_batching_config": ContinuousBatchingConfig(page_size=16, num_blocks=64,
                                                                            max_batch_tokens=256,
                                                                            use_async_batching=False),
                     "warmup": False}
    with torch.no_grad():
        _sync(device)
        started = time.perf_counter()
        outputs = loaded.model.generate_batch(prompts, generation_config=gen_config, **cb_kwargs)
        _sync(device)
        theirs_s = time.perf_counter() - started
    theirs = [outputs[key].generated_tokens for key in sorted(outputs, key=lambda k: int(k.split("_")[-1]))]
    theirs_tokens = sum(len([t for t in ids if t not in stops]) for ids in theirs)
    identical = sum(a.strip() == tokenizer.decode([t for t in ids if t not in stops], skip_special_tokens=True).strip()
                    for a, ids in zip(ours, theirs))
    del loaded, generator
    _free(device)
    return {"requests": len(requests), "max_new_tokens": budget,
            "writetune": {"tokens": ours_tokens, "seconds": ours_s, "tokens_per_s": ours_tokens / ours_s},
            "transformers_cb": {"tokens": theirs_tokens, "seconds": theirs_s,
                                "tokens_per_s": theirs_tokens / theirs_s},
            "identical_share": identical / len(requests)}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def trl_missing() -> str | None:
    import importlib.util

    for package in ("trl", "datasets"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (pip install trl==1.16.0)"
    return None


def summary(report: dict) -> str:
    parts = []
    for shape, result in report["shapes"].items():
        ours = result["writetune"]
        parts.append(f"{shape}:estimate/peak={ours['estimate_bytes'] / ours['peak_bytes']:.2f}")
        if ours.get("mfu") is not None:
            parts.append(f"{shape}:mfu={ours['mfu']:.3f}")
        trl = result.get("trl")
        if isinstance(trl, dict):
            parts.append(f"{shape}:speedup_vs_trl={ours['tokens_per_s'] / trl['tokens_per_s']:.2f}")
            if report["device"] != "cpu":  # on CPU TRL's side is the process's RSS, not tensor bytes
                parts.append(f"{shape}:memory_vs_trl={ours['peak_bytes'] / trl['peak_bytes']:.2f}")
            parts.append(f"{shape}:loss1_ratio={ours['loss_step1'] / trl['loss_step1']:.4f}")
    generation = report.get("generation")
    if generation:
        parts.append(f"generation_speedup_vs_cb="
                     f"{generation['writetune']['tokens_per_s'] / generation['transformers_cb']['tokens_per_s']:.2f}")
        parts.append(f"generation_identical={generation['identical_share']:.2f}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU, end to end (CI)")
    parser.add_argument("--out", default="gpu_check.json", help="JSON file with every number")
    parser.add_argument("--shapes", help=f"comma-separated subset of {', '.join(SHAPES)}")
    parser.add_argument("--steps", type=int, help="timed optimizer steps per system")
    args = parser.parse_args(argv)
    import torch

    plan = settings(args.cpu_smoke)
    if plan["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-smoke for the CPU smoke test")
    if args.shapes:
        plan["shapes"] = args.shapes.split(",")
    if args.steps:
        plan["steps"] = args.steps
    if plan["device"] == "cpu":
        torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    peak = peak_tflops(plan["device"])
    report = {"device": torch.cuda.get_device_name(0) if plan["device"] == "cuda" else "cpu",
              "torch": torch.__version__, "settings": plan, "bf16_peak_tflops": peak, "shapes": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="writetune-gpu-check-") as tmp:
        workdir = Path(tmp)
        mix = write_mix(workdir / "mix", plan["records"], plan["words"])
        for shape in plan["shapes"]:
            config = architecture(shape, tokenizer)
            ours, probe = run_writetune(shape, config, tokenizer, mix, workdir, plan)
            ours["mfu"] = ours["tokens_per_s"] * ours["flops_per_token"] / (peak * 1e12) if peak else None
            result = {"writetune": ours}
            reason = trl_missing()
            if reason:
                result["trl"] = f"skipped: {reason}"
            else:
                trl = run_trl(shape, config, tokenizer, mix, workdir, plan, probe)
                trl["mfu"] = trl["tokens_per_s"] * ours["flops_per_token"] / (peak * 1e12) if peak else None
                result["trl"] = trl
            report["shapes"][shape] = result
            print(f"{shape}: {json.dumps(result)}", file=sys.stderr, flush=True)
        report["generation"] = run_generation(architecture(plan["shapes"][0], tokenizer), tokenizer, mix, plan)
    report["wall_s"] = time.perf_counter() - started
    report["summary"] = summary(report)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report["summary"])
    return report


if __name__ == "__main__":
    main()
