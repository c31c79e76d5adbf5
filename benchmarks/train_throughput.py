"""Training throughput: writetune against TRL's SFTTrainer on the same model, mix and examples.

Three rows, each trained in its own process on the same N examples of a `writetune data build` mix (one epoch):

  writetune      padding-free packed rows (varlen attention), LM head only on response tokens, bf16 autocast
                 with the frozen base in bf16, LoRA dropout 0
  trl-matched    SFTTrainer with the same LoRA config (rank, alpha, dropout 0, target modules), bf16 autocast and
                 the same gradient-checkpointing setting, but TRL's default batching (8 examples per batch padded
                 to the longest, no packing), completion-only loss
  trl-defaults   SFTTrainer with TRL's untouched SFTConfig defaults (gradient checkpointing on, bf16, batch 8)
                 and the same LoRA config

Tokens/s counts real (non-padding) tokens only, over the training loop (model loading and tokenisation excluded;
every row first runs one untimed forward/backward so one-off kernel set-up is not timed). Tokens per CPU-second
(the process's CPU time over the same span) is printed too: on a machine shared with other jobs it moves less than
wall-clock throughput. Peak memory is the
process's peak resident memory sampled every 20 ms during training (CPU), or torch's peak allocated memory (GPU).
MFU is model FLOPs per token (the dry run's count, `writetune.train.dryrun.flops_per_token`: 4N + attention for LoRA,
the LM head only on response positions) times tokens/s, over the bf16 peak of this CPU measured in the same run with
the same threads (the fastest of 20 products of two 1024 x 1024 bf16 matrices, `torch.matmul`); every row trains the
same examples, so it uses the same FLOPs per token. The last line is
`speedup=<writetune / trl-matched tokens/s> memory_ratio=<writetune / trl-matched peak> mfu=<writetune's MFU>`.

    .venv/bin/python benchmarks/train_throughput.py --data out/mix-paper            # full: 512 examples
    .venv/bin/python benchmarks/train_throughput.py --data out/mix-paper --quick    # 32 examples, < 5 min here
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class PeakMemory:
    """Peak memory during a block (sampled RSS on CPU, torch's counter on GPU) and the process's CPU time."""

    def __init__(self):
        import psutil
        import torch

        self.cuda = torch.cuda.is_available()
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        import torch

        self.cpu0 = time.process_time()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self.thread.join()
            self.peak = max(self.peak, self.proc.memory_info().rss)
        self.cpu_s = time.process_time() - self.cpu0


def _select(data: Path, n: int, out: Path) -> Path:
    """The first n training records (the mix is already shuffled) as a small mix directory."""
    out.mkdir(parents=True, exist_ok=True)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    if len(lines) < n:
        raise SystemExit(f"{data / 'train.jsonl'} has only {len(lines)} records, {n} asked for")
    (out / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def run_writetune(args, mix: Path, workdir: Path) -> dict:
    from writetune.train.collate import collate
    from writetune.train.dryrun import plan_run
    from writetune.train.loop import Trainer, token_loss_sum
    from writetune.train.recipe import recipe_from_dict

    recipe = recipe_from_dict({
        "model": args.model, "data": str(mix), "output_dir": str(workdir / "writetune-run"), "method": "lora",
        "lora": {"rank": args.rank, "alpha": args.alpha, "dropout": 0.0, "target_modules": TARGETS},
        "optimizer": {"lr": args.lr}, "schedule": {"name": "constant", "warmup_steps": 0},
        "batch": {"tokens": args.row_tokens, "grad_accum": 1}, "epochs": 1, "seed": 0,
        "precision": args.precision, "gradient_checkpointing": args.gradient_checkpointing,
        "checkpoint": {"every": 0}, "eval": {"every": 0, "at_start": False, "at_end": False},
        "log": {"tensorboard": False, "progress": False},
    })
    trainer = Trainer(recipe).setup()
    warm = collate(trainer.data.examples[:2])
    token_loss_sum(trainer.model, warm, trainer.runtime.autocast).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    examples = sum(len(row) for step in trainer.data.plan.steps for row in step)
    with PeakMemory() as memory:
        result = trainer.fit()
    tokens = sum(len(trainer.data.examples[i]) for step in trainer.data.plan.steps for row in step for i in row)
    return {"system": "writetune", "examples": examples, "tokens": tokens, "train_s": tokens / result.tokens_per_s,
            "tokens_per_s": result.tokens_per_s, "peak_bytes": memory.peak, "cpu_s": memory.cpu_s,
            "setting": f"rows of <= {args.row_tokens} tokens, {len(trainer.data.plan)} steps",
            "flops_per_token": plan_run(recipe).flops_per_token}


def bf16_matmul_peak(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """This CPU's bf16 matrix-product throughput in FLOP/s with `threads` torch threads: the best of `repeats` timed
    products of two size x size bf16 matrices, after one untimed product."""
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.randn(size, size, dtype=torch.bfloat16) for _ in range(2))
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


def sft_trainer(loaded, mix: Path, output_dir: Path, *, rank: int, alpha: float, lr: float, precision: str,
                gradient_checkpointing: bool, matched: bool = True, max_steps: int = -1, logging_steps: int = 10_000,
                **config_kwargs):
    """TRL's SFTTrainer on a mix's train.jsonl, rendered by writetune's prompt format as prompt/completion pairs
    (completion-only loss), with writetune's LoRA config: `matched` sets writetune's precision, gradient
    checkpointing and constant schedule, else TRL's SFTConfig defaults are kept; `config_kwargs` go to SFTConfig."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from writetune.data.record import read_records

    fmt, tokenizer = loaded.prompt_format, loaded.tokenizer
    records = read_records(mix / "train.jsonl")
    dataset = Dataset.from_list([{"prompt": fmt.render_prompt(r.instruction, r.input),
                                  "completion": fmt.render_response(r.output)} for r in records])
    peft_config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS,
                             task_type="CAUSAL_LM")
    common = dict(output_dir=str(output_dir), num_train_epochs=1, max_steps=max_steps, report_to="none",
                  save_strategy="no", seed=0, use_cpu=not torch.cuda.is_available(), learning_rate=lr,
                  dataset_num_proc=None, disable_tqdm=True, **config_kwargs)
    if matched:
        config = SFTConfig(**common, bf16=precision == "bf16", gradient_checkpointing=gradient_checkpointing,
                           lr_scheduler_type="constant", logging_steps=logging_steps)
    else:
        config = SFTConfig(**common)
    return SFTTrainer(model=loaded.model, args=config, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config)


def timed_sft_training(trainer) -> tuple[float, "PeakMemory"]:
    """Train an SFTTrainer after one untimed forward/backward (as writetune's row gets); returns the seconds
    between TRL's train-begin and train-end callbacks and the peak memory over `train()`."""
    import torch
    from transformers import TrainerCallback

    model = trainer.model
    model.train()
    sample = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    sample = {k: v.to(model.device) for k, v in sample.items() if hasattr(v, "to")}
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=trainer.args.bf16):
        model(**sample).loss.backward()
    model.zero_grad(set_to_none=True)

    times = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            times["start"] = time.perf_counter()

        def on_train_end(self, *a, **k):
            times["end"] = time.perf_counter()

    trainer.add_callback(Clock())
    with PeakMemory() as memory:
        trainer.train()
    return times["end"] - times["start"], memory


def run_trl(args, mix: Path, workdir: Path, matched: bool) -> dict:
    from writetune.models import load_model

    trainer = sft_trainer(load_model(args.model), mix, workdir / ("trl-matched" if matched else "trl-defaults"),
                          rank=args.rank, alpha=args.alpha, lr=args.lr, precision=args.precision,
                          gradient_checkpointing=args.gradient_checkpointing, matched=matched)
    config, dataset = trainer.args, trainer.train_dataset
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    seconds, memory = timed_sft_training(trainer)
    setting = (f"batch {config.per_device_train_batch_size} padded, grad ckpt {config.gradient_checkpointing}, "
               f"bf16 {config.bf16}")
    return {"system": "trl-matched" if matched else "trl-defaults", "examples": len(dataset), "tokens": tokens,
            "train_s": seconds, "tokens_per_s": tokens / seconds, "peak_bytes": memory.peak, "cpu_s": memory.cpu_s,
            "setting": setting}


def _child(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    mix, workdir = Path(args.mix), Path(args.workdir)
    if args.system == "writetune":
        result = run_writetune(args, mix, workdir)
    else:
        result = run_trl(args, mix, workdir, matched=args.system == "trl-matched")
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="out/mix-paper", help="a `writetune data build` output directory")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="32 examples")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--row-tokens", type=int, default=1024, help="writetune's packed row budget")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per process (0: torch's default). 1 by default: on a machine shared "
                             "with other jobs, OpenMP threads spinning against them make multi-thread timings noise")
    parser.add_argument("--systems", default="writetune,trl-matched,trl-defaults")
    parser.add_argument("--system", help=argparse.SUPPRESS)
    parser.add_argument("--mix", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        _child(args)
        return
    n = 32 if args.quick else args.examples
    data = Path(args.data)
    if not (data / "train.jsonl").is_file():
        raise SystemExit(f"{data}: no train.jsonl; build the mix first: writetune data build configs/mix-paper.yaml "
                         f"--data-dir ../shared/data -o {data}")
    results = []
    with tempfile.TemporaryDirectory(prefix="wt-bench-") as tmp:
        mix = _select(data, n, Path(tmp) / "mix")
        for system in args.systems.split(","):
            cmd = [sys.executable, __file__, "--system", system, "--mix", str(mix), "--workdir", tmp,
                   "--model", args.model, "--rank", str(args.rank), "--alpha", str(args.alpha), "--lr", str(args.lr),
                   "--precision", args.precision, "--row-tokens", str(args.row_tokens)]
            if args.gradient_checkpointing:
                cmd.append("--gradient-checkpointing")
            cmd += ["--threads", str(args.threads)]
            started = time.perf_counter()
            env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                raise SystemExit(f"{system} failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[len("RESULT "):])
            result["process_s"] = time.perf_counter() - started
            results.append(result)
            print(f"{system}: {result['tokens_per_s']:.1f} tokens/s, peak {result['peak_bytes'] / 2**20:.0f} MiB "
                  f"({result['process_s']:.0f} s with start-up)", file=sys.stderr, flush=True)
    by = {r["system"]: r for r in results}
    ref = by.get("trl-matched")
    threads = args.threads or os.cpu_count()
    peak = bf16_matmul_peak(threads)
    flops_per_token = by["writetune"]["flops_per_token"] if "writetune" in by else None
    print(f"\nmodel {args.model}, {n} examples, LoRA r={args.rank} alpha={args.alpha:g} dropout 0, {args.precision}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'} (writetune, trl-matched), "
          f"{threads} CPU thread(s) per process; bf16 matmul peak measured {peak / 1e9:.0f} GFLOP/s"
          + (f", {flops_per_token / 1e9:.2f} GFLOPs per trained token" if flops_per_token else "") + "\n")
    print("| system | setting | examples | real tokens | train s | tokens/s | tokens per CPU-s | MFU | peak MiB "
          "| tokens/s vs matched | memory vs matched |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        speed = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref else "-"
        mem = f"{r['peak_bytes'] / ref['peak_bytes']:.2f}x" if ref else "-"
        mfu = f"{r['tokens_per_s'] * flops_per_token / peak:.0%}" if flops_per_token else "-"
        print(f"| {r['system']} | {r['setting']} | {r['examples']} | {r['tokens']} | {r['train_s']:.1f} | "
              f"{r['tokens_per_s']:.1f} | {r['tokens'] / r['cpu_s']:.1f} | {mfu} | {r['peak_bytes'] / 2**20:.0f} "
              f"| {speed} | {mem} |")
    if ref and "writetune" in by:
        w = by["writetune"]
        print(f"\nspeedup={w['tokens_per_s'] / ref['tokens_per_s']:.2f} "
              f"memory_ratio={w['peak_bytes'] / ref['peak_bytes']:.2f} "
              f"mfu={w['tokens_per_s'] * flops_per_token / peak:.3f}")


if __name__ == "__main__":
    main()
