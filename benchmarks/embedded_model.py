"""Embedded default model: first load (GGUF conversion) vs cached load, and greedy generation speed at batch 1.

Prints the timings and the ratio of first to cached load, both measured in this run; a fresh temporary cache is
used so the first load really converts. Usage: python benchmarks/embedded_model.py [--prompts N] [--dtype ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from writetune.generate import DecodingConfig, Request, TransformersGenerator
from writetune.models import EMBEDDED_ALIAS, load_model

SENTENCES = [
    "She go to school yesterday.",
    "The results of the experiment was surprising for everyone involved in it.",
    "I has been living in this city since three years.",
    "Their is many reason why people enjoys to travel abroad.",
    "He don't know nothing about the new rules that was announced.",
    "We discussed about the problem during the whole meeting yesterday.",
    "The informations you gave me were very useful for my research.",
    "Despite of the rain, the children played outside all afternoon.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        start = time.perf_counter()
        load_model(EMBEDDED_ALIAS, cache=cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_model(EMBEDDED_ALIAS, cache=cache)
        cached = time.perf_counter() - start
        print(f"first_load_s={first:.1f} cached_load_s={cached:.1f} ratio={first / cached:.1f}")

        requests = [Request("Fix the grammar in this sentence:", SENTENCES[i % len(SENTENCES)])
                    for i in range(args.prompts)]
        decoding = DecodingConfig(batch_size=1, max_new_tokens=args.max_new_tokens)
        for dtype in args.dtype:
            generator = TransformersGenerator(load_model(EMBEDDED_ALIAS, cache=cache, dtype=dtype))
            generator.generate(requests[:1], decoding)  # warm-up
            generator.tokens_generated = 0
            start = time.perf_counter()
            generator.generate(requests, decoding)
            elapsed = time.perf_counter() - start
            print(f"dtype={dtype} batch=1 greedy prompts={len(requests)} tokens={generator.tokens_generated} "
                  f"seconds={elapsed:.1f} tokens_per_s={generator.tokens_generated / elapsed:.1f}")


if __name__ == "__main__":
    main()
