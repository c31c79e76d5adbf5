"""Micro-batching: concurrent requests wait a few milliseconds in a bounded asyncio queue and are generated together.

One collector task takes the first waiting job, then keeps taking jobs until the batch holds `max_batch_size`
generation requests or the batching window has passed. Under concurrent load (recent batches held more than one
request on average) the window grows to a tenth of the recent batch time, up to `max_window_s`: closed-loop clients
come back staggered by their own response handling, and waiting a little for them costs far less than generating a
batch of one and then another. Likewise each job that joins a batch keeps the window open for another `window_s`
(up to `max_window_s` in all), so a burst arriving at an idle server goes out as one batch. With one client at a
time the window stays at `window_s`, so a lone request is not delayed. The batch runs on one dedicated worker thread (the
generator is not re-entrant, and one model call at a time is what a CPU or single GPU does best), while new jobs
queue up behind it. Jobs whose decoding settings differ are generated in separate groups of the same batch. A full
queue refuses new jobs at once (`QueueFull`, with a suggested retry delay), a job not answered within its timeout is
abandoned (`RequestTimeout`), and a generator error fails only the jobs of that group (`GenerationError`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from writetune.generate import DecodingConfig, Request
from writetune.serve.engine import Engine
from writetune.serve.metrics import ServerMetrics

log = logging.getLogger("writetune.serve")


class QueueFull(Exception):
    """The queue is at its bound; `retry_after` is a suggested wait in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy (queue full); retry after {retry_after} s")
        self.retry_after = retry_after


class RequestTimeout(Exception):
    """A job was not answered within its timeout."""


class GenerationError(Exception):
    """The generator raised while generating a job's batch."""


@dataclass
class _Job:
    requests: list[Request]
    decoding: DecodingConfig
    future: asyncio.Future
    abandoned: bool = False
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """The micro-batching queue in front of one engine. `start()` and `stop()` run inside the serving event loop."""

    def __init__(self, engine: Engine, *, max_batch_size: int = 8, window_s: float = 0.01, max_window_s: float = 0.25,
                 max_queue: int = 64, metrics: ServerMetrics | None = None):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self.max_window_s = max(window_s, max_window_s)
        self.max_queue = max_queue
        self.metrics = metrics or ServerMetrics()
        self.metrics.queue_depth = self.queue_depth
        self.metrics.inflight = lambda: self._inflight
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight = 0
        self._recent_batch_s = 1.0
        self._recent_batch_requests = 1.0  # moving average of generation requests per batch

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writetune-generate")
        self._task = asyncio.create_task(self._collect(), name="writetune-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(GenerationError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def window(self) -> float:
        """How long a batch waits for company now (see the module docstring)."""
        if self.max_batch_size > 1 and self._recent_batch_requests > 1.25:
            return max(self.window_s, min(self.max_window_s, 0.1 * self._recent_batch_s))
        return self.window_s

    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained by one batch's worth: at least 1."""
        batches = math.ceil((self.queue_depth() + 1) / max(1, self.max_batch_size))
        return max(1, min(60, math.ceil(batches * self._recent_batch_s)))

    async def submit(self, requests: Sequence[Request], decoding: DecodingConfig, timeout_s: float) -> list[str]:
        """Generate answers for `requests` (in order), sharing a batch with whatever else is waiting."""
        if self._queue is None:
            raise GenerationError("the batcher is not running")
        job = _Job(list(requests), decoding, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.reject("queue_full")
            raise QueueFull(self.retry_after()) from None
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.TimeoutError:
            job.abandoned = True
            self.metrics.reject("timeout")
            raise RequestTimeout(f"no answer within {timeout_s:g} s") from None
        except asyncio.CancelledError:  # the client went away: nobody waits for this job any more
            job.abandoned = True
            raise

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].requests)
            opened = loop.time()
            deadline = opened + self.window()
            while size < self.max_batch_size:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                batch.append(job)
                size += len(job.requests)
                # a burst is still arriving: keep the window open a little longer (never past max_window_s)
                deadline = max(deadline, min(opened + self.max_window_s, loop.time() + self.window_s))
            await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        groups: dict[DecodingConfig, list[_Job]] = {}
        for job in batch:
            if not job.abandoned and not job.future.done():
                groups.setdefault(job.decoding, []).append(job)
        for decoding, jobs in groups.items():
            requests = [r for job in jobs for r in job.requests]
            decoding = _with_batch_size(decoding, self.max_batch_size)
            self._inflight = len(requests)
            started = time.monotonic()
            try:
                outputs = await loop.run_in_executor(self._executor, self._generate, requests, decoding)
            except Exception as err:  # noqa: BLE001 - a failed batch fails its jobs, never the server
                log.exception("generation failed for a batch of %d requests", len(requests))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(GenerationError(f"generation failed: {type(err).__name__}: {err}"))
                continue
            finally:
                self._inflight = 0
            self._recent_batch_s = 0.5 * self._recent_batch_s + 0.5 * (time.monotonic() - started)
            self._recent_batch_requests = 0.7 * self._recent_batch_requests + 0.3 * len(requests)
            pos = 0
            for job in jobs:
                answer, pos = outputs[pos:pos + len(job.requests)], pos + len(job.requests)
                if not job.future.done():
                    job.future.set_result(answer)

    def _generate(self, requests: list[Request], decoding: DecodingConfig) -> list[str]:
        """Runs on the worker thread."""
        before = self.engine.tokens_generated
        started = time.monotonic()
        self.metrics.observe_batch(len(requests))
        outputs = self.engine.generator.generate(requests, decoding)
        self.metrics.observe_generation(len(requests), self.engine.tokens_generated - before,
                                        time.monotonic() - started)
        if len(outputs) != len(requests):
            raise GenerationError(f"the generator returned {len(outputs)} answers for {len(requests)} requests")
        return list(outputs)


def _with_batch_size(decoding: DecodingConfig, batch_size: int) -> DecodingConfig:
    from dataclasses import replace

    return decoding if decoding.batch_size == batch_size else replace(decoding, batch_size=batch_size)
