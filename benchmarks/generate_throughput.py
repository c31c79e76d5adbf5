"""Generation throughput: the writetune engine vs a naive loop of `model.generate` one example at a time.

Both sides run in this process on the same model, dtype, prompts (rendered by `writetune.prompt`), token budgets
and stop tokens, greedy. The sentences are dev sentences of four writing tasks from the shared data folder (JFLEG
dev, ASSET valid, STS-B dev, the WNC sample), each with its task's instruction, taken in a fixed round-robin order.
The engine gets every request in one call (as `writetune eval` gives it a whole evaluation set); the naive loop
calls `model.generate` once per request without padding, which is the reference for the outputs. The last line is
`speedup=<engine sentences/s over naive sentences/s> identical=<true|false>`.

Torch runs on one CPU thread unless `--threads` says otherwise: on a machine whose cores are shared with other
jobs, two OpenMP threads were measured 5-6x slower than one (threads spin at barriers while their core is taken).

Usage: python benchmarks/generate_throughput.py [--quick] [--sentences N] [--dtype float32] [--batch-size 64]
           [--threads 1] [--max-new-tokens 128] [--data-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from writetune.data.evalsets import get_eval_set
from writetune.generate import DecodingConfig, Request, TransformersGenerator, render_prompt
from writetune.models import EMBEDDED_ALIAS, load_model
from writetune.prompt import token_ids
from writetune.tasks import get_task

# dev splits only, never the test files
SOURCES = ("jfleg_dev", "asset_dev", "stsb_dev", "wnc_dev")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def dev_requests(data_dir: Path, n: int) -> list[Request]:
    """n requests, round-robin over the four tasks' dev files (whole files, not only the evaluation carvings)."""
    pools = []
    for name in SOURCES:
        evalset = get_eval_set(name)
        examples = evalset.source.read(data_dir, task=evalset.task, origin=name)
        instruction = get_task(evalset.task).instruction
        pools.append([Request(instruction, e.detokenized().source) for e in examples])
    requests = []
    for i in range(max(len(pool) for pool in pools)):
        for pool in pools:  # a pool that runs out (the WNC sample has 100 test pairs) drops out of the rotation
            if i < len(pool):
                requests.append(pool[i])
            if len(requests) == n:
                return requests
    raise ValueError(f"{data_dir}: not enough dev sentences for {n} requests")


def naive(generator: TransformersGenerator, requests: list[Request], decoding: DecodingConfig) -> list[str]:
    """One `model.generate` call per request: no padding, no batching, the budget and stop tokens of the engine."""
    import torch

    model, tokenizer = generator.loaded.model, generator.tokenizer
    outputs = []
    for request in requests:
        ids = torch.tensor([token_ids(tokenizer, render_prompt(generator.fmt, request))])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=generator._budget(request, decoding),
                eos_token_id=generator.stop_ids, pad_token_id=tokenizer.pad_token_id, do_sample=False, num_beams=1,
            )
        outputs.append(generator._decode(out[0, ids.shape[1]:].tolist()))
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="32 sentences and at most 48 new tokens instead of 500 and 128 (under 5 minutes)")
    parser.add_argument("--sentences", type=int, default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64, help="rows of the engine's continuous batch")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("WRITETUNE_DATA", DEFAULT_DATA)))
    parser.add_argument("--model", default=EMBEDDED_ALIAS)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.sentences or (32 if args.quick else 500)
    args.max_new_tokens = args.max_new_tokens or (48 if args.quick else 128)
    requests = dev_requests(args.data_dir, n)
    generator = TransformersGenerator(load_model(args.model, dtype=args.dtype, device=args.device))
    decoding = DecodingConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    print(f"model={args.model} dtype={args.dtype} device={args.device} threads={torch.get_num_threads()} "
          f"sentences={n} batch_size={args.batch_size} max_new_tokens={args.max_new_tokens}", flush=True)
    generator.generate(requests[:2], decoding)  # warm-up (allocator, kernels)

    results = {}
    for name, run in (("engine", lambda: generator.generate(requests, decoding)),
                      ("naive", lambda: naive(generator, requests, decoding))):
        generator.tokens_generated = 0
        start = time.perf_counter()
        outputs = run()
        seconds = time.perf_counter() - start
        results[name] = {"outputs": outputs, "seconds": seconds, "tokens": generator.tokens_generated}
        print(f"{name}: {seconds:.1f} s, {n / seconds:.2f} sentences/s, "
              f"{generator.tokens_generated / seconds:.1f} tokens/s ({generator.tokens_generated} tokens)", flush=True)
    engine, base = results["engine"], results["naive"]
    differing = [i for i, (a, b) in enumerate(zip(engine["outputs"], base["outputs"])) if a != b]
    for i in differing[:3]:
        print(f"differs at {i}:\n  engine: {engine['outputs'][i]!r}\n  naive:  {base['outputs'][i]!r}")
    speedup = base["seconds"] / engine["seconds"]
    if args.json:
        args.json.write_text(json.dumps({
            "sentences": n, "dtype": args.dtype, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
            **{f"{k}_{m}": v[m] for k, v in results.items() for m in ("seconds", "tokens")},
            "differing": len(differing), "speedup": speedup,
        }, indent=2) + "\n")
    print(f"speedup={speedup:.2f} identical={'true' if not differing else 'false'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
