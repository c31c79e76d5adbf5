"""Generation throughput: writetune's engine against transformers' own continuous batching, batched left-padded
`model.generate`, a naive loop and (where installed) llama.cpp, on the same prompts.

Every system generates answers for the same requests: dev sentences of four writing tasks from the shared data folder
(JFLEG dev, ASSET valid, STS-B dev, the WNC sample), each with its task's instruction, rendered by `writetune.prompt`,
taken round-robin. All are greedy, with the same per-request token budgets (`DecodingConfig`) and stop tokens:

- `engine`: `TransformersGenerator.generate` with every request in one call, as `writetune eval` sends a set
  (writetune's continuous-batching engine, `--batch-size` rows);
- `transformers-cb-sdpa`, `transformers-cb-eager`: transformers' `ContinuousBatchingManager` (what `generate_batch`
  runs; used directly because `generate_batch` takes one token budget for all requests) with its paged KV cache,
  at most `--batch-size` requests per batch, once per attention implementation that runs on CPU (`sdpa`, and
  `eager`, which it runs as `paged|eager`);
- `padded-generate`: one left-padded `model.generate` call per batch of `--batch-size` prompts (length-sorted);
- `naive`: one `model.generate` call per request, no padding: the reference for the outputs;
- `llamacpp`: llama-cpp-python on the embedded model's GGUF, one request at a time, where it is installed; skipped
  with the reason otherwise.

In float32 every system's answers must equal the naive loop's (`identical` counts them). With `--bf16`, the engine,
transformers' SDPA run and the padded batches run again in bfloat16 and report how many of their answers are
identical to the float32 naive loop's. `--reference-sentences N` runs the naive loop and the bfloat16 runs on the
first N requests only (the naive loop takes several times the engine's time): `identical` then counts over those N,
while the other float32 systems still generate for all of them. Peak memory is the process's peak resident set
during each run (`writetune.peak_memory`; the model and libraries included). Wall seconds and this process's CPU
seconds are both reported: on a CPU shared with other jobs the CPU seconds move less. The last line prints, for
each other system, the engine's sentences/s over that system's, and in brackets that system's CPU seconds per
sentence over the engine's.

Torch runs on one CPU thread unless `--threads` says otherwise: on a machine whose cores are shared with other
jobs, two OpenMP threads were measured 5-6x slower than one (threads spin at barriers while their core is taken).

Usage: python benchmarks/generate_throughput.py [--sentences 64] [--batch-size 32] [--max-new-tokens 48] [--bf16]
           [--reference-sentences N] [--threads 1] [--skip naive,...] [--data-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

from writetune import peak_memory
from writetune.data.evalsets import get_eval_set
from writetune.generate import DecodingConfig, Request, TransformersGenerator, render_prompt
from writetune.models import EMBEDDED_ALIAS, embedded_gguf_path, load_model
from writetune.prompt import token_ids
from writetune.tasks import get_task

# dev splits only, never the test files
SOURCES = ("jfleg_dev", "asset_dev", "stsb_dev", "wnc_dev")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYSTEMS = ("engine", "transformers-cb-sdpa", "transformers-cb-eager", "padded-generate", "naive", "llamacpp")


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


def engine(generator: TransformersGenerator, requests, decoding) -> list[str]:
    return generator.generate(requests, decoding)


def padded_generate(generator: TransformersGenerator, requests, decoding) -> list[str]:
    """Left-padded `model.generate` batches of `decoding.batch_size` (the path beam search and sampling take)."""
    encoded = [token_ids(generator.tokenizer, render_prompt(generator.fmt, r)) for r in requests]
    budgets = [generator.budget(r, decoding) for r in requests]
    return [generator._decode(ids) for ids in generator._generate_batched(encoded, budgets, decoding, None)]


def naive(generator: TransformersGenerator, requests, decoding) -> list[str]:
    """One `model.generate` call per request: no padding, no batching, the budget and stop tokens of the engine."""
    import torch

    model, tokenizer = generator.loaded.model, generator.tokenizer
    outputs = []
    for request in requests:
        ids = torch.tensor([token_ids(tokenizer, render_prompt(generator.fmt, request))])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=generator.budget(request, decoding),
                eos_token_id=generator.stop_ids, pad_token_id=tokenizer.pad_token_id, do_sample=False, num_beams=1,
            )
        outputs.append(generator._decode(out[0, ids.shape[1]:].tolist()))
    return outputs


def transformers_cb(attention: str):
    """transformers' continuous batching with `attention` ("sdpa" or "eager"), each request with its own budget."""

    def run(generator: TransformersGenerator, requests, decoding) -> list[str]:
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig
        from transformers.generation.continuous_batching.utils import WorkloadHints

        model = generator.loaded.model
        model.set_attn_implementation(attention)
        encoded = [token_ids(generator.tokenizer, render_prompt(generator.fmt, r)) for r in requests]
        budgets = [generator.budget(r, decoding) for r in requests]
        stops = list(generator.stop_ids)
        page = 16
        longest = max(len(e) for e in encoded) + max(budgets)
        config = ContinuousBatchingConfig(
            page_size=page, num_blocks=decoding.batch_size * math.ceil(longest / page) + 16,
            max_batch_tokens=512, max_requests_per_batch=decoding.batch_size, use_async_batching=False,
            auto_switch_to_flash=False, use_cuda_graph=False,
        )
        gen_config = GenerationConfig(max_new_tokens=max(budgets), do_sample=False, eos_token_id=stops,
                                      pad_token_id=generator.tokenizer.pad_token_id)
        hints = WorkloadHints(max_prompt_length=max(len(e) for e in encoded), max_generated_length=max(budgets),
                              num_requests=len(encoded))
        results: dict[str, list[int]] = {}
        try:
            with torch.inference_mode(), model.continuous_batching_context_manager(
                    generation_config=gen_config, continuous_batching_config=config, warmup=False,
                    workload_hints=hints) as manager:
                for i, (ids, budget) in enumerate(zip(encoded, budgets)):
                    manager.add_request(ids, request_id=f"r{i}", max_new_tokens=budget, eos_token_id=stops)
                while len(results) < len(encoded):
                    out = manager.get_result(timeout=1)
                    if out is not None and out.is_finished():
                        if out.error is not None:
                            raise RuntimeError(f"transformers continuous batching: {out.request_id}: {out.error}")
                        results[out.request_id] = list(out.generated_tokens)
                    elif out is None and not manager.is_running():
                        raise RuntimeError("transformers continuous batching stopped before finishing")
        finally:
            model.set_attn_implementation("sdpa")
        return [generator._decode(results[f"r{i}"][:budgets[i]]) for i in range(len(encoded))]

    return run


def llamacpp_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'writetune[gguf-runtime]')"
    if not embedded_gguf_path(EMBEDDED_ALIAS).is_file():
        return f"no GGUF of {EMBEDDED_ALIAS} at {embedded_gguf_path(EMBEDDED_ALIAS)}"
    return None


def llamacpp(generator: TransformersGenerator, requests, decoding) -> list[str]:
    from writetune.generate import LlamaCppGenerator

    gguf = LlamaCppGenerator(str(embedded_gguf_path(EMBEDDED_ALIAS)), prompt_format=generator.fmt,
                             n_threads=max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    outputs = gguf.generate(requests, decoding)
    generator.tokens_generated += gguf.tokens_generated
    return outputs


RUNNERS = {"engine": engine, "transformers-cb-sdpa": transformers_cb("sdpa"),
           "transformers-cb-eager": transformers_cb("eager"), "padded-generate": padded_generate, "naive": naive,
           "llamacpp": llamacpp}


def measure(name: str, generator: TransformersGenerator, requests, decoding) -> dict:
    """One system's answers to `requests`, its wall and CPU seconds, tokens, rates and peak memory."""
    gc.collect()
    peak_memory.reset()
    generator.tokens_generated = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    outputs = RUNNERS[name](generator, requests, decoding)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak, _ = peak_memory.peak()
    return {"outputs": outputs, "seconds": seconds, "cpu_seconds": cpu_seconds, "tokens": generator.tokens_generated,
            "sentences_per_s": len(requests) / seconds, "tokens_per_s": generator.tokens_generated / seconds,
            "peak_mib": (peak or 0) / 2**20}


def run_dtype(args, dtype: str, names: list[str], requests, decoding, reference: dict | None = None) -> dict:
    """Run `names` in `dtype` (the naive loop on the first `--reference-sentences` requests); `identical` counts
    answers equal to `reference` (default: this dtype's naive loop) among the first `compared` of them."""
    generator = TransformersGenerator(load_model(args.model, dtype=dtype, device="cpu"))
    generator.generate(requests[:2], decoding)  # warm-up (allocator, kernels)
    results = {}
    for name in names:
        subset = requests[:args.reference_sentences] if name == "naive" and args.reference_sentences else requests
        results[name] = measure(name, generator, subset, decoding)
        r = results[name]
        print(f"{dtype} {name}: {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} CPU s), "
              f"{r['sentences_per_s']:.2f} sentences/s, "
              f"{r['tokens_per_s']:.1f} tokens/s ({r['tokens']} tokens), peak {r['peak_mib']:.0f} MiB", flush=True)
    reference = reference or results.get("naive")
    for r in results.values():
        r["compared"] = min(len(r["outputs"]), len(reference["outputs"])) if reference is not None else 0
        r["identical"] = (sum(a == b for a, b in zip(r["outputs"], reference["outputs"]))
                          if reference is not None else None)
    del generator
    gc.collect()
    return results


def table(dtype: str, results: dict) -> list[str]:
    lines = [f"| system ({dtype}) | sentences | s | CPU s | sentences/s | tokens/s | peak MiB | identical to float32 "
             "naive |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        same = "-" if r["identical"] is None else f"{r['identical']}/{r['compared']}"
        lines.append(f"| {name} | {len(r['outputs'])} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                     f"{r['sentences_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['peak_mib']:.0f} | {same} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="rows of a batch, for every batched system")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--bf16", action="store_true", help="also run in bfloat16 and report identical shares")
    parser.add_argument("--reference-sentences", type=int, default=0, help="run the naive loop and the bfloat16 "
                        "runs on the first N requests only (0: all)")
    parser.add_argument("--skip", default="", help="comma-separated systems not to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("WRITETUNE_DATA", DEFAULT_DATA)))
    parser.add_argument("--model", default=EMBEDDED_ALIAS)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    skipped = {s for s in args.skip.split(",") if s}
    unknown = skipped - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)} (expected some of {', '.join(SYSTEMS)})")
    reasons = {name: "skipped with --skip" for name in skipped}
    missing = llamacpp_missing()
    if missing and "llamacpp" not in skipped:
        reasons["llamacpp"] = missing
    names = [s for s in SYSTEMS if s not in reasons]
    requests = dev_requests(args.data_dir, args.sentences)
    decoding = DecodingConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    if not 0 <= args.reference_sentences <= args.sentences:
        parser.error(f"--reference-sentences {args.reference_sentences}: expected 0 to --sentences "
                     f"({args.sentences})")
    print(f"model={args.model} threads={torch.get_num_threads()} sentences={args.sentences} "
          f"reference_sentences={args.reference_sentences or args.sentences} "
          f"batch_size={args.batch_size} max_new_tokens={args.max_new_tokens}", flush=True)
    for name, why in reasons.items():
        print(f"skipped {name}: {why}", flush=True)
    results = {"float32": run_dtype(args, "float32", names, requests, decoding)}
    if args.bf16:
        bf16_names = [s for s in ("engine", "transformers-cb-sdpa", "padded-generate") if s in names]
        bf16_requests = requests[:args.reference_sentences] if args.reference_sentences else requests
        results["bfloat16"] = run_dtype(args, "bfloat16", bf16_names, bf16_requests, decoding,
                                        reference=results["float32"].get("naive"))
    for dtype, rows in results.items():
        print("\n".join(table(dtype, rows)))
    ours = results["float32"]["engine"]
    others = {k: v for k, v in results["float32"].items() if k != "engine"}
    if args.json:
        args.json.write_text(json.dumps({
            "sentences": args.sentences, "reference_sentences": args.reference_sentences or args.sentences,
            "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
            "threads": torch.get_num_threads(), "skipped": reasons,
            "results": {d: {k: {m: v for m, v in r.items() if m != "outputs"} for k, r in rows.items()}
                        for d, rows in results.items()},
        }, indent=2) + "\n")
    identical = all(r["identical"] in (None, r["compared"]) for r in results["float32"].values())
    def cpu_per_sentence(r: dict) -> float:
        return r["cpu_seconds"] / len(r["outputs"])

    print(" ".join(f"engine/{k}={ours['sentences_per_s'] / v['sentences_per_s']:.2f}"
                   f"(cpu {cpu_per_sentence(v) / cpu_per_sentence(ours):.2f})" for k, v in others.items())
          + f" float32_identical={'true' if identical else 'false'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
