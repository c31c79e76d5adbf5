"""Micro-batching: concurrent requests wait a few milliseconds in a bounded asyncio queue and are generated together.

One collector task takes the first waiting job, then keeps taking jobs until the batch holds `max_batch_size`
generation requests or the batching window has closed, and runs the batch on one dedicated worker thread (the
generator is not re-entrant, and one model call at a time is what a CPU or single GPU does best) while new jobs queue
up behind it. The window is `window_s` after the first job, and after each job that joins (a burst arriving at an idle
server goes out as one batch). It stays open longer, up to `max_window_s`, while other requests are still inside the
server (being answered, e.g. their edits typed) or were just answered on a connection that has not sent its next
request yet: closed-loop clients come back staggered by their answers' handling, and waiting a few hundred
milliseconds for them costs far less than generating a batch of one and then another. A lone client's next request
arrives on the connection it is expected on, so it is never held back beyond `window_s`.

Jobs whose decoding settings differ are generated in separate groups of the same batch. The queue is bounded in
generation sequences, not jobs (a job of 64 prompts weighs 64): a job that does not fit is refused at once
(`QueueFull`, with a suggested retry delay). A job not answered within its timeout, or whose client went away, is
abandoned (`RequestTimeout`, cancellation), and once every job of a running group is abandoned the generator is
stopped at its next finished sequence instead of running to the end. A generator error in a group of several jobs
is retried job by job, so it fails only the job that causes it (`GenerationError`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


class _Abandoned(Exception):
    """Raised inside the generator's progress callback to stop a group that nobody waits for any more."""


@dataclass
class _Job:
    requests: list[Request]
    decoding: DecodingConfig
    future: asyncio.Future
    abandoned: bool = False
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """The micro-batching queue in front of one engine. `start()` and `stop()` run inside the serving event loop."""

    def __init__(self, engine: Engine, *, max_batch_size: int = 8, window_s: float = 0.01, max_window_s: float = 0.5,
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
        self._queued_sequences = 0
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight = 0
        self._recent_batch_s = 1.0
        self._active = 0  # HTTP requests inside the server that generate (see `active`)
        self._returning: dict = {}  # connection -> until when its client is expected back with its next request

    async def start(self) -> None:
        self._queue = asyncio.Queue()  # bounded by `_queued_sequences`, see `submit`
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

    @contextmanager
    def active(self, connection=None) -> Iterator[None]:
        """Wrap the handling of an HTTP request that generates, from arrival to answer (event-loop thread only).
        `connection` (the client's address and port) marks the connection as expected back for `max_window_s` after
        its answer, until its next request arrives: a closed-loop client sends that at once."""
        self._returning.pop(connection, None)
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if connection is not None:
                self._returning[connection] = time.monotonic() + self.max_window_s

    def others_inside(self, batched_jobs: int) -> int:
        """Requests inside the server, or answered a moment ago on a connection whose next request has not come
        yet, that are neither in the batch being collected nor in the queue."""
        now = time.monotonic()
        for connection in [c for c, until in self._returning.items() if until <= now]:
            del self._returning[connection]
        return self._active + len(self._returning) - batched_jobs - self.queue_depth()

    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def queued_sequences(self) -> int:
        """Generation sequences in the queue (what `max_queue` bounds)."""
        return self._queued_sequences

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained by one batch's worth: at least 1."""
        batches = math.ceil((self._queued_sequences + 1) / max(1, self.max_batch_size))
        return max(1, min(60, math.ceil(batches * self._recent_batch_s)))

    async def submit(self, requests: Sequence[Request], decoding: DecodingConfig, timeout_s: float) -> list[str]:
        """Generate answers for `requests` (in order), sharing a batch with whatever else is waiting."""
        if self._queue is None:
            raise GenerationError("the batcher is not running")
        job = _Job(list(requests), decoding, asyncio.get_running_loop().create_future())
        if self._queued_sequences + len(job.requests) > self.max_queue:
            self.metrics.reject("queue_full")
            raise QueueFull(self.retry_after())
        self._queued_sequences += len(job.requests)
        self._queue.put_nowait(job)
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
            self._queued_sequences -= len(batch[0].requests)
            size = len(batch[0].requests)
            opened = last = loop.time()
            while size < self.max_batch_size:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    closes = min(opened + self.max_window_s, last + self.window_s)
                    if self.max_batch_size > 1 and self.others_inside(len(batch)) > 0:
                        closes = opened + self.max_window_s
                    remaining = closes - loop.time()
                    if remaining <= 0:
                        break
                    try:  # wake at least every window_s to look at the other requests again
                        job = await asyncio.wait_for(self._queue.get(), min(remaining, max(self.window_s, 0.005)))
                    except asyncio.TimeoutError:
                        continue
                self._queued_sequences -= len(job.requests)
                batch.append(job)
                size += len(job.requests)
                last = loop.time()
            await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        groups: dict[DecodingConfig, list[_Job]] = {}
        for job in batch:
            if not job.abandoned and not job.future.done():
                groups.setdefault(job.decoding, []).append(job)
        for decoding, jobs in groups.items():
            try:
                await self._run_group(jobs, decoding)
            except _Abandoned:
                log.info("stopped a batch of %d jobs: nobody waits for its answers", len(jobs))
            except Exception as err:  # noqa: BLE001 - a failed batch fails its jobs, never the server
                if len(jobs) == 1:
                    log.exception("generation failed for a job of %d requests", len(jobs[0].requests))
                    _fail(jobs[0], err)
                    continue
                log.warning("generation failed for a batch of %d jobs (%s); retrying them one by one", len(jobs),
                            type(err).__name__)
                for job in jobs:
                    try:
                        await self._run_group([job], decoding)
                    except _Abandoned:
                        pass
                    except Exception as err:  # noqa: BLE001 - this job's own failure
                        log.exception("generation failed for a job of %d requests", len(job.requests))
                        _fail(job, err)

    async def _run_group(self, jobs: list[_Job], decoding: DecodingConfig) -> None:
        """Generate the jobs' requests in one generator call and answer each job with its share."""
        requests = [r for job in jobs for r in job.requests]
        decoding = _with_batch_size(decoding, self.max_batch_size)
        self._inflight = len(requests)
        started = time.monotonic()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._generate, requests,
                                                                       decoding, jobs)
        finally:
            self._inflight = 0
        self._recent_batch_s = 0.5 * self._recent_batch_s + 0.5 * (time.monotonic() - started)
        pos = 0
        for job in jobs:
            answer, pos = outputs[pos:pos + len(job.requests)], pos + len(job.requests)
            if not job.future.done():
                job.future.set_result(answer)

    def _generate(self, requests: list[Request], decoding: DecodingConfig, jobs: list[_Job]) -> list[str]:
        """Runs on the worker thread. Stops (`_Abandoned`) when every job of the call has been abandoned."""

        def progress(_finished: int) -> None:
            if all(job.abandoned for job in jobs):
                raise _Abandoned()

        progress(0)
        before = self.engine.tokens_generated
        started = time.monotonic()
        self.metrics.observe_batch(len(requests))
        try:
            outputs = self.engine.generator.generate(requests, decoding, progress)
        finally:
            self.metrics.observe_generation(len(requests), self.engine.tokens_generated - before,
                                            time.monotonic() - started)
        if len(outputs) != len(requests):
            raise GenerationError(f"the generator returned {len(outputs)} answers for {len(requests)} requests")
        return list(outputs)


def _fail(job: _Job, err: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(GenerationError(f"generation failed: {type(err).__name__}: {err}"))


def _with_batch_size(decoding: DecodingConfig, batch_size: int) -> DecodingConfig:
    from dataclasses import replace

    return decoding if decoding.batch_size == batch_size else replace(decoding, batch_size=batch_size)
