"""Feeding the model: one worker thread owns the generator, HTTP requests submit jobs to it, and each job's answers
come back to the event loop piece by piece as they are decoded.

With a generator that has writetune's continuous-batching engine (`TransformersGenerator.open_engine`), the worker
adds every job's sequences to the engine as soon as they arrive (`add_shared`: a prompt that repeats the system
prompt and instruction of the one before prefills only what follows them), so a request that comes while others
decode joins them at the engine's next admitting step, and runs one engine step after another; each new token becomes a text
piece (`TextStream`) delivered at once, and a sequence stops at its stop token, its budget, one of its request's
stop strings, or when its job is cancelled (timeout, client gone). Any other generator (a model the engine does not
support, or a stand-in in tests) gets the jobs waiting when it is free, grouped by decoding settings, in one
`generate` call per group; its answers arrive whole. A failure there in a group of several jobs is retried job by
job, so it fails only the job that causes it.

The queue is bounded in generation sequences that wait for the model, not jobs (a job of 64 prompts weighs 64): a
job that does not fit is refused at once (`QueueFull`, with a suggested retry delay).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from writetune.generate import DecodingConfig, Request
from writetune.generate.text import cut_at_stop_string
from writetune.serve.served_model import ServedModel
from writetune.serve.prometheus import ServerMetrics

log = logging.getLogger("writetune.serve")


class QueueFull(Exception):
    """The queue is at its bound; `retry_after` is a suggested wait in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy (queue full); retry after {retry_after} s")
        self.retry_after = retry_after


class RequestTimeout(Exception):
    """A job was not answered within its timeout."""


class GenerationError(Exception):
    """The generator raised while generating a job's sequences."""


class _Abandoned(Exception):
    """Raised inside a generator's progress callback to stop a group that nobody waits for any more."""


@dataclass(frozen=True)
class Answer:
    """One finished sequence: its text (stop strings cut), answer tokens generated, and why it ended."""

    text: str
    tokens: int
    finish_reason: str  # "stop" (a stop token or string) or "length" (the budget)


class Job:
    """One HTTP request's sequences. The worker thread delivers (index, piece, answer) events through the event loop:
    `answer` is None until the sequence's last piece."""

    def __init__(self, requests: Sequence[Request], decoding: DecodingConfig, stops: Sequence[str],
                 loop: asyncio.AbstractEventLoop):
        self.requests, self.decoding, self.stops = list(requests), decoding, list(stops)
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.answers: list[Answer | None] = [None] * len(self.requests)
        self.done: asyncio.Future = loop.create_future()
        self.cancelled = False
        self.started = time.monotonic()

    def deliver(self, index: int, piece: str, answer: Answer | None) -> None:
        """Event-loop side of a delivery."""
        if self.done.done():
            return
        self.events.put_nowait((index, piece, answer))
        if answer is not None:
            self.answers[index] = answer
            if all(a is not None for a in self.answers):
                self.done.set_result(list(self.answers))

    def fail(self, err: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(err)
            self.events.put_nowait((None, "", None))  # wakes a streaming reader, which then sees the error

    def post(self, index: int, piece: str, answer: Answer | None) -> None:
        """Worker-thread side: deliver on the event loop."""
        self.loop.call_soon_threadsafe(self.deliver, index, piece, answer)

    def post_failure(self, err: Exception) -> None:
        self.loop.call_soon_threadsafe(self.fail, err)


class Scheduler:
    """The queue and worker thread in front of one served model. `start()` and `stop()` run inside the serving event
    loop; `submit` returns a `Job`, whose answers `answers` awaits and `stream` yields piece by piece."""

    def __init__(self, model: ServedModel, *, max_batch_size: int = 8, max_queue: int = 64,
                 metrics: ServerMetrics | None = None):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.metrics = metrics or ServerMetrics()
        self.metrics.queue_depth = self.queue_depth
        self.metrics.inflight = lambda: self._inflight
        self._inbox: deque[Job] = deque()
        self._cancelled: deque[Job] = deque()
        self._wake = threading.Condition()
        self._queued_sequences = 0
        self._inflight = 0
        self._recent_job_s = 1.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- event-loop side --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="writetune-generate", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        with self._wake:
            self._stopping = True
            waiting = list(self._inbox)
            self._inbox.clear()
            self._wake.notify()
        for job in waiting:
            job.fail(GenerationError("the server is shutting down"))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    def queue_depth(self) -> int:
        """Jobs waiting for the model."""
        return len(self._inbox)

    def queued_sequences(self) -> int:
        """Generation sequences waiting for the model (what `max_queue` bounds)."""
        return self._queued_sequences

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained by one batch's worth: at least 1."""
        batches = math.ceil((self._queued_sequences + 1) / max(1, self.max_batch_size))
        return max(1, min(60, math.ceil(batches * self._recent_job_s)))

    def submit(self, requests: Sequence[Request], decoding: DecodingConfig, stops: Sequence[str] = ()) -> Job:
        """Queue `requests` (answered in order); QueueFull when they do not fit."""
        if self._thread is None or self._loop is None:
            raise GenerationError("the scheduler is not running")
        if self._queued_sequences + len(requests) > self.max_queue:
            self.metrics.reject("queue_full")
            raise QueueFull(self.retry_after())
        job = Job(requests, decoding, stops, self._loop)
        with self._wake:
            self._queued_sequences += len(job.requests)
            self._inbox.append(job)
            self._wake.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Nobody waits for `job` any more: its sequences stop at the worker's next step."""
        if job.cancelled or job.done.done():
            return
        job.cancelled = True
        with self._wake:
            if job in self._inbox:  # never started: it leaves the queue at once
                self._inbox.remove(job)
                self._queued_sequences -= len(job.requests)
            else:
                self._cancelled.append(job)
            self._wake.notify()

    async def answers(self, job: Job, timeout_s: float) -> list[Answer]:
        """The job's answers, in order; RequestTimeout after `timeout_s` (the job is then cancelled)."""
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), timeout_s)
        except asyncio.TimeoutError:
            self.cancel(job)
            self.metrics.reject("timeout")
            raise RequestTimeout(f"no answer within {timeout_s:g} s") from None
        except asyncio.CancelledError:  # the client went away
            self.cancel(job)
            raise

    async def stream(self, job: Job, timeout_s: float) -> AsyncIterator[tuple[int, str, Answer | None]]:
        """(index, piece, answer) as they are decoded, until every sequence has its answer. Leaving early (the
        client went away) or passing `timeout_s` cancels the job."""
        deadline = job.loop.time() + timeout_s
        finished = 0
        try:
            while finished < len(job.requests):
                remaining = deadline - job.loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                index, piece, answer = await asyncio.wait_for(job.events.get(), remaining)
                if index is None:
                    job.done.result()  # raises the job's error
                finished += answer is not None
                yield index, piece, answer
        except asyncio.TimeoutError:
            self.metrics.reject("timeout")
            raise RequestTimeout(f"no answer within {timeout_s:g} s") from None
        finally:
            if finished < len(job.requests):
                self.cancel(job)

    # ---- worker side --------------------------------------------------------------------------------------------

    def _take(self, block: bool, limit: int | None = None) -> tuple[list[Job], list[Job]]:
        """Waiting jobs (the first ones up to `limit` sequences, at least one) and newly cancelled ones; with
        `block`, waits until there is one or the server stops."""
        with self._wake:
            while block and not self._inbox and not self._cancelled and not self._stopping:
                self._wake.wait()
            new, size = [], 0
            while self._inbox and (limit is None or not new or size + len(self._inbox[0].requests) <= limit):
                job = self._inbox.popleft()
                new.append(job)
                size += len(job.requests)
            self._queued_sequences -= size
            gone = list(self._cancelled)
            self._cancelled.clear()
        return new, gone

    def _work(self) -> None:
        generator = self.model.generator
        engine = generator.open_engine(self.max_batch_size) if hasattr(generator, "open_engine") else None
        try:
            if engine is not None:
                self._feed_engine(generator, engine)
            else:
                self._run_whole(generator)
        except Exception:  # noqa: BLE001 - the worker must never die silently
            log.exception("the generation worker stopped")

    def _feed_engine(self, generator, engine) -> None:
        """Continuous admission: every job's sequences go into the engine as they arrive; one step at a time."""
        sequences: dict[int, tuple[Job, int, object]] = {}  # engine sequence -> (job, index, its TextStream)
        by_job: dict[Job, list[int]] = {}

        def drop(job: Job) -> None:
            for seq in by_job.pop(job, []):
                engine.cancel(seq)
                sequences.pop(seq, None)

        while not self._stopping:
            new, gone = self._take(block=engine.idle)
            for job in gone:
                drop(job)
            for job in new:
                if job.cancelled:
                    continue
                seqs: list[int] = []
                try:
                    for index, request in enumerate(job.requests):
                        decoding = replace(job.decoding, seed=job.decoding.seed + index)
                        seq = engine.add_shared(generator.encode(request), generator.budget(request, job.decoding),
                                                sampler=generator.sampler(decoding))
                        seqs.append(seq)
                        sequences[seq] = (job, index, generator.text_stream(job.stops))
                    by_job[job] = seqs
                except Exception as err:  # noqa: BLE001 - a request the model cannot take fails alone
                    log.exception("could not start a job of %d requests", len(job.requests))
                    by_job[job] = seqs
                    drop(job)
                    job.post_failure(GenerationError(f"generation failed: {type(err).__name__}: {err}"))
            if engine.idle:
                continue
            self._inflight = engine.running + engine.waiting
            started = time.monotonic()
            try:
                events = engine.step()
            except Exception as err:  # noqa: BLE001 - a failed step fails the jobs in it, never the server
                log.exception("an engine step failed")
                for job in list(by_job):
                    drop(job)
                    job.post_failure(GenerationError(f"generation failed: {type(err).__name__}: {err}"))
                engine = generator.open_engine(self.max_batch_size)
                continue
            finished_sequences = 0
            for seq, token, finished in events:
                if seq not in sequences:
                    continue
                job, index, stream = sequences[seq]
                piece = stream.push(token)
                if stream.done and not finished:  # a stop string: the sequence ends here
                    engine.cancel(seq)
                    finished = True
                if finished:
                    piece += stream.finish() if not stream.done else ""
                    del sequences[seq]
                    by_job[job].remove(seq)
                    if not by_job[job]:
                        del by_job[job]
                        self._recent_job_s = 0.5 * self._recent_job_s + 0.5 * (time.monotonic() - job.started)
                    finished_sequences += 1
                    answer = Answer(stream.text, stream.tokens, "stop" if stream.stopped else "length")
                    job.post(index, piece, answer)
                elif piece:
                    job.post(index, piece, None)
            self.metrics.observe_batch(len(events))
            self.metrics.observe_generation(finished_sequences, len(events), time.monotonic() - started)
            self._inflight = engine.running + engine.waiting

    def _run_whole(self, generator) -> None:
        """Whole answers from `generator.generate`: the jobs waiting when it is free, up to `max_batch_size`
        sequences per call (more when one job alone is larger), grouped by decoding settings."""
        while not self._stopping:
            new, _ = self._take(block=True, limit=self.max_batch_size)
            groups: dict[DecodingConfig, list[Job]] = {}
            for job in new:
                if not job.cancelled:
                    groups.setdefault(job.decoding, []).append(job)
            for decoding, jobs in groups.items():
                try:
                    self._run_group(generator, jobs, decoding)
                except _Abandoned:
                    log.info("stopped a batch of %d jobs: nobody waits for its answers", len(jobs))
                except Exception as err:  # noqa: BLE001 - a failed batch fails its jobs, never the server
                    if len(jobs) == 1:
                        log.exception("generation failed for a job of %d requests", len(jobs[0].requests))
                        jobs[0].post_failure(GenerationError(f"generation failed: {type(err).__name__}: {err}"))
                        continue
                    log.warning("generation failed for a batch of %d jobs (%s); retrying them one by one",
                                len(jobs), type(err).__name__)
                    for job in jobs:
                        try:
                            self._run_group(generator, [job], decoding)
                        except _Abandoned:
                            pass
                        except Exception as err:  # noqa: BLE001 - this job's own failure
                            log.exception("generation failed for a job of %d requests", len(job.requests))
                            job.post_failure(GenerationError(f"generation failed: {type(err).__name__}: {err}"))

    def _run_group(self, generator, jobs: list[Job], decoding: DecodingConfig) -> None:
        """The jobs' requests in one `generate` call; each job gets its share. Stops (`_Abandoned`) at the next
        finished sequence once every job of the call has been cancelled."""

        def progress(_finished: int) -> None:
            if all(job.cancelled for job in jobs):
                raise _Abandoned()

        progress(0)
        requests = [r for job in jobs for r in job.requests]
        if decoding.batch_size != self.max_batch_size:
            decoding = replace(decoding, batch_size=self.max_batch_size)
        self._inflight = len(requests)
        self.metrics.observe_batch(len(requests))
        before, started = self.model.tokens_generated, time.monotonic()
        try:
            outputs = generator.generate(requests, decoding, progress)
        finally:
            self._inflight = 0
            self.metrics.observe_generation(len(requests), self.model.tokens_generated - before,
                                            time.monotonic() - started)
        if len(outputs) != len(requests):
            raise GenerationError(f"the generator returned {len(outputs)} answers for {len(requests)} requests")
        self._recent_job_s = 0.5 * self._recent_job_s + 0.5 * (time.monotonic() - started)
        pos = 0
        for job in jobs:
            for index in range(len(job.requests)):
                text, stopped = cut_at_stop_string(outputs[pos], job.stops)
                tokens = min(self.model.count_tokens(text), job.decoding.max_new_tokens)  # re-tokenised: estimate
                reason = "stop" if stopped or tokens < job.decoding.max_new_tokens else "length"
                job.post(index, text, Answer(text, tokens, reason))
                pos += 1
