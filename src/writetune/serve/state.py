"""What the routes of one app share, `ServerState` (kept as `app.state.server`): the served model, the settings,
the scheduler, the metrics and the ERRANT typer, with the request limits every route checks and the decoding a
request asks for."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import Depends
from fastapi import Request as HttpRequest

from writetune.generate import DecodingConfig, Request
from writetune.serve.edits import ErrantTyper
from writetune.serve.served_model import ServedModel
from writetune.serve.errors import ApiError
from writetune.serve.prometheus import ServerMetrics
from writetune.serve.scheduler import Scheduler
from writetune.serve.schemas import SamplingBody
from writetune.serve.settings import ServeSettings


class ServerState:
    """State shared by the routes of one app."""

    def __init__(self, model: ServedModel, settings: ServeSettings):
        self.model, self.settings = model, settings
        self.metrics = ServerMetrics()
        self.scheduler = Scheduler(model, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
                                   metrics=self.metrics)
        self.typer = ErrantTyper(enabled=settings.errant_types)
        self.started = time.time()

    def max_tokens(self, asked: int | None) -> int:
        limit = self.settings.max_new_tokens
        if asked is not None and asked > limit:
            raise ApiError(422, f"max_tokens {asked} exceeds this server's limit of {limit} new tokens",
                           code="max_tokens_too_large")
        return asked if asked is not None else min(self.settings.default_max_tokens, limit)

    def check_input(self, texts: list[str]) -> None:
        """413 for too many characters in all `texts` together; 422 for text that is not valid Unicode (a lone
        surrogate, which JSON's \\u escapes can carry but no tokenizer can encode), before anything is queued."""
        n = sum(len(t) for t in texts)
        if n > self.settings.max_input_chars:
            raise ApiError(413, f"input is {n} characters; this server accepts at most "
                                f"{self.settings.max_input_chars}", code="input_too_long")
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ApiError(422, f"the text is not valid Unicode: a lone surrogate "
                                    f"{text[err.start]!r} at character {err.start}", code="invalid_text") from None

    def check_sequences(self, count: int, what: str) -> None:
        """413 for a request that alone needs more generation sequences than the queue holds."""
        if count > self.settings.max_queue:
            raise ApiError(413, f"this request needs {count} generations ({what}); this server queues at most "
                                f"{self.settings.max_queue}", code="request_too_large")

    def sampling(self, body: SamplingBody, max_tokens: int) -> DecodingConfig:
        """Greedy unless a temperature above 0 is asked for; the budget is exactly `max_tokens`. Sampling is
        reproducible with a `seed` and random without one."""
        common = dict(max_new_tokens=max_tokens, length_ratio=0.0, length_slack=max_tokens)
        if not body.temperature:  # greedy answers do not depend on a seed, so greedy requests share batches
            return DecodingConfig(strategy="greedy", seed=0, **common)
        seed = body.seed if body.seed is not None else secrets.randbits(62)
        return DecodingConfig(strategy="sample", temperature=body.temperature, top_p=body.top_p or 1.0, seed=seed,
                              **common)

    async def generate(self, requests: list[Request], decoding: DecodingConfig,
                       timeout_s: float | None = None) -> list[str]:
        """The answers' texts, in order."""
        job = self.scheduler.submit(requests, decoding)
        answers = await self.scheduler.answers(job, timeout_s or self.settings.request_timeout_s)
        return [a.text for a in answers]


def server_state(request: HttpRequest) -> ServerState:
    """The state of the app answering `request`, for routes to depend on."""
    return request.app.state.server


Served = Annotated[ServerState, Depends(server_state)]  # a route's parameter for its app's state
