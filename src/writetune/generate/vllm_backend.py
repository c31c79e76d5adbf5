"""The vLLM backend (GPU, extra `gpu`): prompts rendered by `writetune.prompt` and passed as token ids, one
`SamplingParams` per request, stops at the format's end-of-turn tokens; beam search through `LLM.beam_search`."""

from __future__ import annotations

from writetune.generate.api import DecodingConfig, token_budget
from writetune.generate.extras import missing_extra
from writetune.generate.text import answer_from_tokens, render_prompt
from writetune.models import resolve
from writetune.prompt import format_for_tokenizer, load_prompt_format, stop_token_ids, token_ids


class VllmGenerator:
    """vLLM on a GPU (extra `gpu`): prompts rendered by `writetune.prompt` and passed as token ids, one
    `SamplingParams` per request (its own budget), stop at the format's end-of-turn tokens; beam search through
    `LLM.beam_search`, grouped by budget."""

    def __init__(self, spec: str, *, dtype: str = "auto", llm=None, **engine_kwargs):
        try:
            import vllm  # optional extra: writetune[gpu] (vLLM)
        except ImportError:
            raise missing_extra("vLLM", "gpu", "vllm") from None
        self.vllm = vllm
        resolved = resolve(spec)
        self.spec = spec
        self.lora = None
        path = resolved.path
        if resolved.kind == "adapter":
            from vllm.lora.request import LoRARequest  # optional extra: writetune[gpu] (vLLM)

            self.lora = LoRARequest("adapter", 1, resolved.path)
            path = resolved.base.path
            engine_kwargs.setdefault("enable_lora", True)
        self.llm = llm or vllm.LLM(model=path, dtype=dtype, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.fmt = load_prompt_format(resolved.path) or (
            load_prompt_format(path) if resolved.kind == "adapter" else None
        ) or format_for_tokenizer(self.tokenizer)
        self.stop_ids = stop_token_ids(self.tokenizer, self.fmt)
        self.tokens_generated = 0
        self.dtype = dtype

    def describe(self) -> str:
        return f"vllm:{self.spec}:{self.dtype}"

    def _params(self, budget: int, decoding: DecodingConfig, index: int):
        stop = list(self.fmt.stop_strings)
        if self.fmt.end_of_turn and len(token_ids(self.tokenizer, self.fmt.end_of_turn)) != 1:
            stop.append(self.fmt.end_of_turn)
        common = dict(max_tokens=budget, stop_token_ids=self.stop_ids, stop=stop or None,
                      skip_special_tokens=True)
        if decoding.strategy == "sample":
            return self.vllm.SamplingParams(temperature=decoding.temperature, top_p=decoding.top_p,
                                            seed=decoding.seed + index, **common)
        return self.vllm.SamplingParams(temperature=0.0, **common)

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        prompts = [{"prompt_token_ids": token_ids(self.tokenizer, render_prompt(self.fmt, r))} for r in requests]
        budgets = [token_budget(len(token_ids(self.tokenizer, r.budget_text)), decoding)
                   for r in requests]
        texts: list[str] = [""] * len(requests)
        if decoding.strategy == "beam":
            from vllm.sampling_params import BeamSearchParams  # optional extra: writetune[gpu] (vLLM)

            by_budget: dict[int, list[int]] = {}
            for i, b in enumerate(budgets):
                by_budget.setdefault(b, []).append(i)
            for budget, indices in by_budget.items():
                params = BeamSearchParams(beam_width=decoding.num_beams, max_tokens=budget)
                outs = self.llm.beam_search([prompts[i] for i in indices], params)
                for i, out in zip(indices, outs):
                    best = out.sequences[0]
                    new = list(best.tokens[len(prompts[i]["prompt_token_ids"]):])
                    texts[i], kept = answer_from_tokens(self.tokenizer, self.fmt, self.stop_ids, new)
                    self.tokens_generated += kept
                if on_batch is not None:
                    on_batch(len(indices))
            return texts
        params = [self._params(b, decoding, i) for i, b in enumerate(budgets)]
        kwargs = {"lora_request": self.lora} if self.lora is not None else {}
        outs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False, **kwargs)
        for i, out in enumerate(outs):
            completion = out.outputs[0]
            self.tokens_generated += len(completion.token_ids)
            texts[i] = self.fmt.strip_response(completion.text)
        if on_batch is not None:
            on_batch(len(requests))
        return texts
