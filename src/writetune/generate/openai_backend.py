"""The OpenAI-compatible backend: any `/v1/chat/completions` endpoint (OpenAI, vLLM's server, llama.cpp's server,
`writetune serve`), so API models can be rows of a results table."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from writetune.generate.api import DecodingConfig, Request, token_budget
from writetune.generate.text import estimate_tokens, render_messages
from writetune.prompt import PromptFormat, chatml


class EndpointError(ValueError):
    """An OpenAI-compatible endpoint refused a request (4xx) or kept failing after the retries."""


class OpenAIGenerator:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM's server, llama.cpp's server,
    `writetune serve`). The conversation is rendered as messages by `render_messages` (system, few-shot turns,
    user), `concurrency` requests are in flight at once, 429 and 5xx answers and connection errors are retried with
    exponential backoff (honouring Retry-After), and any other 4xx answer stops with its status and message.
    The budget uses an estimate of the input's tokens (four characters per token), since the tokenizer is remote.
    """

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 prompt_format: PromptFormat | None = None, concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 0.5, client=None):
        base_url = base_url or os.environ.get("WRITETUNE_API_BASE") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError(f"model 'openai:{model}' needs an endpoint: give it as openai:{model}@URL or set "
                             "WRITETUNE_API_BASE (e.g. http://localhost:8000/v1)")
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be at least 1 and max_retries at least 0")
        import httpx  # optional extra: writetune[serve]

        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.fmt = prompt_format or chatml()
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        key = api_key or os.environ.get("WRITETUNE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout, headers=headers)
        self.tokens_generated = 0
        self.requests_sent = 0
        self._lock = threading.Lock()  # the counters are updated from the worker threads

    def describe(self) -> str:
        return f"openai:{self.model}@{self.url.rsplit('/chat/completions', 1)[0]}"

    def _body(self, request: Request, decoding: DecodingConfig, index: int) -> dict:
        if decoding.strategy == "beam":
            raise ValueError("OpenAI-compatible endpoints offer no beam search; use greedy or sample")
        body = {
            "model": self.model,
            "messages": render_messages(self.fmt, request),
            "max_tokens": token_budget(estimate_tokens(request.budget_text), decoding),
            "n": 1,
        }
        if decoding.strategy == "sample":
            body.update(temperature=decoding.temperature, top_p=decoding.top_p, seed=decoding.seed + index)
        else:
            body.update(temperature=0.0, seed=decoding.seed)
        return body

    def _post(self, body: dict) -> str:
        import httpx  # optional extra: writetune[serve]

        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self._lock:
                    self.requests_sent += 1
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    data = response.json()
                    usage = data.get("usage") or {}
                    with self._lock:
                        self.tokens_generated += int(usage.get("completion_tokens") or 0)
                    content = data["choices"][0]["message"].get("content") or ""
                    return self.fmt.strip_response(content)
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    raise EndpointError(f"{self.url}: {problem}")
                retry_after = response.headers.get("retry-after")
            if attempt == self.max_retries:
                raise EndpointError(f"{self.url}: gave up after {self.max_retries + 1} attempts ({problem})")
            delay = self.backoff * (2 ** attempt)
            try:
                delay = max(delay, float(retry_after)) if retry_after else delay
            except ValueError:
                pass
            time.sleep(delay)
        raise AssertionError("unreachable")

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        bodies = [self._body(r, decoding, i) for i, r in enumerate(requests)]
        outputs: list[str] = [""] * len(requests)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._post, body): i for i, body in enumerate(bodies)}
            try:
                for future in as_completed(futures):
                    outputs[futures[future]] = future.result()
                    if on_batch is not None:
                        on_batch(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return outputs
