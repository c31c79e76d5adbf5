"""The llama.cpp backend: llama-cpp-python (extra `gguf-runtime`) on a GGUF file, one request at a time."""

from __future__ import annotations

import os

from writetune.generate.api import DecodingConfig, token_budget
from writetune.generate.extras import missing_extra
from writetune.generate.text import render_prompt
from writetune.prompt import PromptFormat, format_for_tokenizer


class _GgufTokenizerInfo:
    """What `format_for_tokenizer` reads, taken from a GGUF file's metadata."""

    def __init__(self, chat_template: str, eos_token: str):
        self.chat_template = chat_template
        self.eos_token = eos_token


class LlamaCppGenerator:
    """llama.cpp through llama-cpp-python (extra `gguf-runtime`) on a GGUF file: one request at a time (the Python
    binding has no batched generation), greedy (temperature 0) or sampling; no beam search. The prompt format comes
    from the file's chat template unless one is given."""

    def __init__(self, gguf_path: str, *, prompt_format: PromptFormat | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, n_gpu_layers: int = 0, llm=None):
        try:
            import llama_cpp  # optional extra: writetune[gguf-runtime] (llama.cpp)
        except ImportError:
            raise missing_extra("llama.cpp", "gguf-runtime", "llama-cpp-python") from None
        self.path = gguf_path
        self.llm = llm or llama_cpp.Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=n_threads,
                                          n_gpu_layers=n_gpu_layers, verbose=False)
        if prompt_format is None:
            metadata = getattr(self.llm, "metadata", {}) or {}
            eos_id = self.llm.token_eos()
            eos = self.llm.detokenize([eos_id], special=True).decode("utf-8", "replace") if eos_id >= 0 else ""
            prompt_format = format_for_tokenizer(
                _GgufTokenizerInfo(metadata.get("tokenizer.chat_template", ""), eos)
            )
        self.fmt = prompt_format
        self.tokens_generated = 0

    def describe(self) -> str:
        return f"llamacpp:{os.path.basename(self.path)}"

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        if decoding.strategy == "beam":
            raise ValueError("the llama.cpp backend has no beam search; use greedy or sample, or the transformers "
                             "backend")
        stop = [s for s in (self.fmt.end_of_turn, *self.fmt.stop_strings) if s]
        outputs = []
        for index, request in enumerate(requests):
            prompt = self.llm.tokenize(render_prompt(self.fmt, request).encode("utf-8"), add_bos=False, special=True)
            n_input = len(self.llm.tokenize(request.budget_text.encode("utf-8"), add_bos=False))
            kwargs = dict(max_tokens=token_budget(n_input, decoding), stop=stop)
            if decoding.strategy == "sample":
                kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                              seed=decoding.seed + index)
            else:
                kwargs.update(temperature=0.0, top_k=1)
            out = self.llm.create_completion(prompt=prompt, **kwargs)
            self.tokens_generated += int(out.get("usage", {}).get("completion_tokens", 0))
            outputs.append(self.fmt.strip_response(out["choices"][0]["text"]))
            if on_batch is not None:
                on_batch(1)
        return outputs
