"""The bounded request queue and the one worker thread that runs the engine for every request.

All requests share one model. A request is a ``Job``: its inputs (image files, PDF pages), its
``Settings`` and what to keep. The worker takes up to ``max_batch`` inputs at a time from the
waiting jobs whose options equal the first one's (oldest first; a job with inputs left over goes
to the back, so a 100-page PDF does not hold up a one-image request) and hands them to
``dbcli.engine.pipeline.run_pipeline`` in ONE call: the micro-batch. The engine then decodes the next
inputs in its threads while the network runs, and batches same-size inputs (``batch_size``, 8 on
CUDA), across requests as within one.

Bounds: at most ``max_jobs`` jobs are admitted (running or waiting); ``submit`` raises ``Busy``
(with a ``Retry-After`` estimate) beyond that, so memory never grows with the load; and when the
estimated wait (inputs ahead x the measured seconds per input) is over ``max_wait`` seconds, or a
job is still not started ``max_wait`` seconds after it was admitted, it gets ``Busy`` at once
instead of a place it would wait too long in. A cancelled job (its client went away) loses its
inputs not yet started; what is in flight finishes and is dropped. ``drain(timeout)`` stops
admitting and fails every job not finished within ``timeout`` seconds with ``Closed`` (SIGTERM's
drain); ``close`` ends the worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.settings import Settings
from dbcli.engine.sources import Source

Item = ImageRecord | Failure


class Busy(Exception):
    """The queue is full; ``retry_after``: whole seconds after which a retry will likely be admitted."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class Closed(Exception):
    """The server is shutting down: it admits nothing new, and a job not finished by the end of the
    drain fails with this."""


@dataclass(eq=False)
class Job:
    """One request's work. ``future`` gets the list of results (one per input, in order) or is
    cancelled. ``keep_images``: results hold their decoded image; ``crops``: each detection's crop."""

    sources: Sequence[Source]
    settings: Settings
    crops: bool = False
    keep_images: bool = False
    future: Future = field(default_factory=Future)
    results: list[Item | None] = field(default_factory=list)
    scheduled: int = 0  # inputs handed to the engine so far
    finished: int = 0  # inputs done
    cancelled: bool = False
    admitted_at: float = 0.0  # time.monotonic() seconds
    started_at: float | None = None  # when its first input went to the engine

    @property
    def queue_wait(self) -> float | None:
        """Seconds between admission and its first input's engine call (None: never started)."""
        return None if self.started_at is None else self.started_at - self.admitted_at

    def same_work(self, other: Job) -> bool:
        """Can the two share an engine call (the same settings and outputs)?"""
        return (self.settings == other.settings and self.crops == other.crops
                and self.keep_images == other.keep_images)


@dataclass
class Stats:
    """Counters for ``/health`` and the ``Retry-After`` estimate."""

    images_done: int = 0
    requests_done: int = 0
    engine_calls: int = 0
    seconds_per_image: float = 0.0  # exponential moving average of the worker's busy time per input
    last_seconds_per_image: float = 0.0  # the last engine call's


class Scheduler:
    """The queue and its worker (see the module doc). ``model``: a loaded ``dbcli.backends.Model``.
    ``max_jobs``: requests admitted at once; ``max_batch``: inputs per engine call."""

    def __init__(self, model: Any, max_jobs: int, max_batch: int,
                 pipeline: Callable[..., Any] = run_pipeline, max_wait: float | None = None):
        self.model, self.max_jobs, self.max_batch, self.max_wait = model, max_jobs, max_batch, max_wait
        self._pipeline = pipeline
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()  # jobs with inputs not yet handed to the engine
        self._admitted = 0
        self._closing = False
        self._in_flight: list[tuple[Job, int]] = []  # the engine call's inputs
        self._running: Any = ()  # the jobs of the engine call in flight
        self.stats = Stats()
        self._thread = threading.Thread(target=self._work, name="dbnet-serve-worker", daemon=True)
        self._thread.start()

    # --- the request side --------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Admit ``job`` (its ``future`` will hold the results). Raises ``Busy`` when ``max_jobs``
        are admitted already, ``Closed`` while shutting down."""
        with self._cond:
            if self._closing:
                raise Closed()
            if self._admitted >= self.max_jobs or self._too_long():
                raise Busy(self._retry_after())
            job.results = [None] * len(job.sources)
            job.admitted_at = time.monotonic()
            self._admitted += 1
            if job.sources:
                self._waiting.append(job)
                self._cond.notify()
            else:
                self._finish(job)
        return job

    def cancel(self, job: Job) -> None:
        """The client is gone: drop the job's inputs not yet started (those in flight finish)."""
        with self._cond:
            if job.cancelled or job.future.done():
                return
            job.cancelled = True
            if job in self._waiting and job.finished == job.scheduled:
                self._waiting.remove(job)
                self._finish(job)

    def full(self) -> bool:
        """True when a new request would be refused now (shutting down, every slot taken, or a wait
        over ``max_wait`` ahead of it)."""
        with self._cond:
            return self._closing or self._admitted >= self.max_jobs or self._too_long()

    @property
    def closing(self) -> bool:
        return self._closing

    def depth(self) -> tuple[int, int]:
        """``(requests admitted, inputs waiting)`` now: the queue's depth, for the metrics."""
        with self._cond:
            return self._admitted, self._inputs_ahead()

    def retry_after(self) -> int:
        with self._cond:
            return self._retry_after()

    def snapshot(self) -> dict:
        """Queue figures for ``/health``."""
        with self._cond:
            return {"requests": self._admitted, "max_requests": self.max_jobs, "max_batch": self.max_batch,
                    "waiting_inputs": sum(len(j.sources) - j.scheduled for j in self._waiting),
                    "images_done": self.stats.images_done, "requests_done": self.stats.requests_done,
                    "engine_calls": self.stats.engine_calls, "closing": self._closing}

    def drain(self, timeout: float) -> None:
        """Admit nothing more; jobs not finished ``timeout`` seconds from now fail with ``Closed``
        (their clients get a 503 then, whatever the engine is still doing)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        timer = threading.Timer(timeout, self._abandon)
        timer.daemon = True
        timer.start()

    def _abandon(self) -> None:
        """The drain is over: every job still admitted fails with ``Closed``."""
        with self._cond:
            jobs = list(self._waiting) + [j for j in self._running if not j.future.done()]
            self._waiting.clear()
            for job in {id(j): j for j in jobs}.values():
                if not job.future.done():
                    job.future.set_exception(Closed())
                    job.cancelled = True
                    self._admitted -= 1
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Admit nothing more, finish what was admitted, stop the worker. True when it stopped
        within ``timeout`` seconds."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the worker side ---------------------------------------------------------------------
    def _inputs_ahead(self) -> int:
        """(lock held) Inputs admitted and not done: waiting, and in the engine call in flight."""
        return sum(len(j.sources) - j.finished for j in self._waiting) + len(self._in_flight)

    def _too_long(self) -> bool:
        """(lock held) Would one more input wait over ``max_wait`` seconds (by the measured pace)?"""
        pace = max(self.stats.seconds_per_image, self.stats.last_seconds_per_image)  # the slower: a busy machine
        if self.max_wait is None or not pace:
            return False
        return self._inputs_ahead() * pace > self.max_wait

    def _retry_after(self) -> int:
        inputs = self._inputs_ahead() + self.max_batch
        per_image = self.stats.seconds_per_image or 0.5
        return max(1, min(60, math.ceil(inputs * per_image)))

    def _expire(self, now: float) -> None:
        """(lock held) Jobs not started ``max_wait`` seconds after admission get ``Busy``."""
        if self.max_wait is None:
            return
        for job in [j for j in self._waiting if j.started_at is None and now - j.admitted_at > self.max_wait]:
            self._waiting.remove(job)
            job.cancelled = True
            self._admitted -= 1
            job.future.set_exception(Busy(self._retry_after()))

    def _finish(self, job: Job) -> None:
        """(lock held) The job is over: its future gets the results, or is cancelled."""
        self._admitted -= 1
        self.stats.requests_done += 1
        if job.cancelled:
            job.future.cancel()
        elif not job.future.done():
            job.future.set_result(job.results)

    def _next_batch(self) -> list[tuple[Job, int]] | None:
        """Block for work; the ``(job, input index)`` pairs of the next engine call, or None to stop."""
        with self._cond:
            self._in_flight = []
            self._expire(time.monotonic())
            while not self._waiting:
                if self._closing:
                    return None
                self._cond.wait()
                self._expire(time.monotonic())
            head = self._waiting[0]
            taken: list[tuple[Job, int]] = []
            again: list[Job] = []
            for job in list(self._waiting):
                if len(taken) >= self.max_batch:
                    break
                if job.cancelled or not job.same_work(head):
                    continue
                n = min(self.max_batch - len(taken), len(job.sources) - job.scheduled)
                if job.started_at is None:
                    job.started_at = time.monotonic()
                taken += [(job, job.scheduled + k) for k in range(n)]
                job.scheduled += n
                self._waiting.remove(job)
                if job.scheduled < len(job.sources):
                    again.append(job)
            self._waiting.extend(again)  # round robin: a long job's next inputs wait their turn
            self.stats.engine_calls += 1
            self._in_flight = taken
            self._running = {id(j): j for j, _ in taken}.values()
            return taken

    def _work(self) -> None:
        while (taken := self._next_batch()) is not None:
            job0 = taken[0][0]
            started = time.perf_counter()
            done = 0
            try:
                items = self._pipeline([job.sources[i] for job, i in taken], self.model, job0.settings,
                                       keep_images=job0.keep_images, with_crops=job0.crops)
                for (job, i), item in zip(taken, items):
                    done += 1
                    with self._cond:
                        job.results[i] = item
                        job.finished += 1
                        self.stats.images_done += 1
                        if not job.future.done():  # (not abandoned by the drain)
                            self._settle(job)
            except BaseException as exc:  # the engine failed as a whole: every job in the call fails
                with self._cond:
                    for job in {id(j): j for j, _ in taken[done:]}.values():
                        if not job.future.done():
                            job.future.set_exception(exc)
                            job.cancelled = True
                            if job in self._waiting:
                                self._waiting.remove(job)
                            self._admitted -= 1
            seconds = (time.perf_counter() - started) / len(taken)
            with self._cond:
                ema = self.stats.seconds_per_image
                self.stats.seconds_per_image = seconds if ema == 0 else 0.8 * ema + 0.2 * seconds
                self.stats.last_seconds_per_image = seconds

    def _settle(self, job: Job) -> None:
        """(lock held) Finish ``job`` when nothing of it is in flight and nothing more will run."""
        if job.finished < job.scheduled:
            return
        if job.scheduled == len(job.sources) or job.cancelled:
            if job in self._waiting:
                self._waiting.remove(job)
            self._finish(job)
