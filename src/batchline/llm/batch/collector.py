"""The batch collector: requests in, provider jobs out, answers back per request.

``ChatModel(mode="batch")`` hands each request (after its response cache) to one
collector. The collector runs on its own thread and event loop, so requests from every
chunk thread of a step land in the same queue:

1. requests wait ``linger`` seconds for company (at most 60 lingers after the first of
   them, while more keep coming), then are grouped into as few jobs as
   the provider's limits (requests and bytes per job) allow; one request per item,
   ``custom_id`` the item's key (or a hash of the request);
2. each job's estimated cost (batch prices) is reserved against ``max_cost_usd`` before
   it is submitted, and the job's id is written to the journal (the run's state) before
   it is polled;
3. jobs are polled every ``poll_interval`` seconds; results are matched by ``custom_id``;
   errored and expired requests are submitted again in a new job up to ``max_attempts``
   submissions, then fail with the provider's error; a job that fails as a whole is
   reported and its requests retried the same way;
4. a request whose key a journaled job already holds (a resumed run) waits for that job
   instead of being submitted again, and a job that ended while nothing ran is collected.

A first Ctrl-C (SIGINT/SIGTERM during an engine run) stops waiting without cancelling the
jobs: the waiting calls raise ``BatchWaitInterrupted``, and a resume collects the jobs
(``cancel_on_interrupt=True``, the CLI's ``--cancel-jobs``, cancels them instead).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchline.engine import RetryPolicy, aretry_call, on_stop_signal
from batchline.llm.batch.journal import BatchJournal
from batchline.llm.batch.providers import BatchProvider, ItemResult, JobStatus
from batchline.llm.cache import request_key
from batchline.llm.errors import (
    BudgetExceededError,
    LLMError,
    LLMRequestError,
    LLMTransientError,
)
from batchline.llm.prices import Usage

__all__ = ["BatchCollector", "BatchWaitInterrupted", "JobView"]

log = logging.getLogger("batchline.llm.batch")

Answer = tuple[dict[str, Any], Usage]
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class BatchWaitInterrupted(KeyboardInterrupt):
    """Waiting for provider jobs was stopped (Ctrl-C); the jobs themselves go on."""


@dataclass
class JobView:
    """One job as the collector tracks it (also its journal record)."""

    job_id: str
    provider: str
    requests: dict[str, str]  # custom_id -> request key
    state: str = "submitted"
    submitted_at: float = field(default_factory=time.time)
    error: str | None = None
    reserved: float = 0.0
    collected: int = 0
    done: bool = False
    results: dict[str, ItemResult] | None = None

    def record(self) -> dict[str, Any]:
        """The journal record."""
        return {
            "job_id": self.job_id,
            "provider": self.provider,
            "requests": self.requests,
            "state": self.state,
            "submitted_at": self.submitted_at,
            "error": self.error,
            "done": self.done,
        }


class BatchCollector:
    """Submits, journals, polls and collects one model's provider batch jobs.

    Args:
        provider: the provider's batch protocol.
        journal: where job ids are committed before polling.
        usage_of: the usage (tokens, batch-priced cost) of one answer.
        on_usage: told each answer's usage (the model's totals).
        estimate: the estimated batch cost of one request (for the budget reservation).
        budget: ``() -> (max_cost_usd or None, spent so far)``.
        poll_interval: seconds between polls of a job.
        max_attempts: submissions of one request before it fails.
        linger: seconds a request waits for others before a job is made.
        cancel_on_interrupt: cancel the jobs on Ctrl-C instead of leaving them running.
        label: how messages name the model.
    """

    def __init__(
        self,
        provider: BatchProvider,
        journal: BatchJournal,
        *,
        usage_of: Callable[[dict[str, Any]], Usage],
        on_usage: Callable[[Usage], None],
        estimate: Callable[[dict[str, Any]], float],
        budget: Callable[[], tuple[float | None, float]],
        poll_interval: float = 30.0,
        max_attempts: int = 3,
        linger: float = 0.5,
        cancel_on_interrupt: bool = False,
        label: str = "model",
        timeout: float = 120.0,
    ) -> None:
        self.provider = provider
        self.journal = journal
        self.usage_of = usage_of
        self.on_usage = on_usage
        self.estimate = estimate
        self.budget = budget
        self.poll_interval = poll_interval
        self.max_attempts = max(1, max_attempts)
        self.linger = linger
        self.cancel_on_interrupt = cancel_on_interrupt
        self.label = label
        self.timeout = timeout
        self.jobs: dict[str, JobView] = {}
        self.submitted_jobs = 0
        self.submitted_requests = 0
        self.reserved = 0.0
        self._by_key: dict[str, str] = {}
        self._custom: dict[str, str] = {}
        self._bodies: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, list[concurrent.futures.Future[Answer]]] = {}
        self._attempts: Counter[str] = Counter()
        self._queue: list[str] = []
        self._flush_at: float | None = None
        self._first_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._session: Any = None
        self._started = threading.Lock()
        self._interrupted = False
        self._remove_listener: Callable[[], None] | None = None
        self._driver: asyncio.Task[None] | None = None
        self._retry = RetryPolicy(
            max_attempts=6, backoff=0.5, max_backoff=30.0, retry_on=(LLMTransientError,)
        )

    # -- the caller's side (any thread, any loop) --------------------------------------

    async def request(self, body: dict[str, Any], custom_id: str | None = None) -> Answer:
        """The answer to ``body`` (and its usage), through a provider job."""
        loop = self._start()
        future: concurrent.futures.Future[Answer] = concurrent.futures.Future()
        key = request_key(body)
        loop.call_soon_threadsafe(self._enqueue, key, body, custom_id, future)
        return await asyncio.wrap_future(future)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._started:
            if self._loop is None:
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._serve, args=(ready,), name="batchline-batch-jobs", daemon=True
                )
                thread.start()
                ready.wait(30)
                self._remove_listener = on_stop_signal(self._signalled)
            assert self._loop is not None
            return self._loop

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        try:
            self._load()
        except Exception:  # a journal that cannot be read: every request fails with it
            log.exception("could not read the batch journal %r", self.journal.run_id)
        self._loop = loop
        ready.set()
        self._driver = loop.create_task(self._drive())
        loop.run_forever()

    def _signalled(self, signal_number: int) -> None:
        loop = self._loop
        if loop is not None and self._waiters:
            loop.call_soon_threadsafe(self._interrupt, signal_number)

    # -- state ------------------------------------------------------------------------------

    def _load(self) -> None:
        for record in self.journal.load():
            job = JobView(
                job_id=str(record["job_id"]),
                provider=str(record.get("provider", self.provider.name)),
                requests=dict(record.get("requests") or {}),
                state=str(record.get("state", "submitted")),
                submitted_at=float(record.get("submitted_at") or time.time()),
                error=record.get("error"),
                done=bool(record.get("done")),
            )
            self.jobs[job.job_id] = job
            for custom_id, key in job.requests.items():
                self._by_key[key] = job.job_id
                self._custom[key] = custom_id
                self._attempts[key] += 1
        if self.jobs:
            log.info(
                "%s: %d provider batch job(s) found in %r; their requests are not submitted again",
                self.label,
                len(self.jobs),
                self.journal.run_id,
            )

    def _enqueue(
        self,
        key: str,
        body: dict[str, Any],
        custom_id: str | None,
        future: concurrent.futures.Future[Answer],
    ) -> None:
        waiting = self._waiters.setdefault(key, [])
        waiting.append(future)
        if len(waiting) > 1:
            return  # the same request is already on its way
        self._bodies[key] = body
        if key not in self._custom:
            self._custom[key] = _custom_id(custom_id, key)
        job_id = self._by_key.get(key)
        if job_id is not None:
            job = self.jobs[job_id]
            if job.results is not None:
                self._settle(job, key)
            assert self._wake is not None
            self._wake.set()  # poll (or fetch the results of) the job that has it
            return
        self._submit_later(key)

    def _submit_later(self, key: str) -> None:
        self._queue.append(key)
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
        # wait for company, but never more than 60 lingers (30 s) after the first request:
        # a job takes minutes to hours, and a step still queueing its requests (a few
        # hundred a second reach here from 2 cores) should send them as one job
        self._flush_at = min(now + self.linger, self._first_at + 60 * self.linger)
        assert self._wake is not None
        self._wake.set()

    # -- the driver -------------------------------------------------------------------------

    async def _drive(self) -> None:
        import aiohttp  # noqa: PLC0415

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        assert self._wake is not None
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if self._queue and self._flush_at is not None and now >= self._flush_at:
                await self._guard(self._flush())
                next_poll = 0.0
            if now >= next_poll and self._needed():
                await self._guard(self._poll())
                next_poll = time.monotonic() + self.poll_interval
            waits = [next_poll - time.monotonic()] if self._needed() else []
            if self._queue and self._flush_at is not None:
                waits.append(self._flush_at - time.monotonic())
            timeout = max(0.01, min(waits)) if waits else None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            else:
                if self._needed() and not self._queue:
                    # a new waiter for an existing job: look at it soon, not at once again
                    next_poll = min(next_poll, time.monotonic() + 0.05)

    async def _guard(self, step: Any) -> None:
        try:
            await step
        except Exception as exc:  # never let the driver die: fail what waits instead
            log.exception("%s: provider batch driver error", self.label)
            for key in list(self._waiters):
                if key not in self._queue and not self._in_open_job(key):
                    self._fail(key, exc)

    def _in_open_job(self, key: str) -> bool:
        job_id = self._by_key.get(key)
        return job_id is not None and not self.jobs[job_id].done

    def _needed(self) -> bool:
        """Whether a job has someone waiting on it."""
        return any(key in self._by_key for key in self._waiters if key not in self._queue)

    # -- submitting -------------------------------------------------------------------------

    async def _flush(self) -> None:
        keys = [key for key in dict.fromkeys(self._queue) if key in self._waiters]
        self._queue.clear()
        self._flush_at = self._first_at = None
        for group in self._groups(keys):
            await self._submit(group)

    def _groups(self, keys: list[str]) -> list[list[str]]:
        """Consecutive groups within the provider's requests- and bytes-per-job limits."""
        groups: list[list[str]] = []
        current: list[str] = []
        size = 0
        for key in keys:
            one = self.provider.size(self._custom[key], self._bodies[key])
            if current and (
                len(current) >= self.provider.max_requests or size + one > self.provider.max_bytes
            ):
                groups.append(current)
                current, size = [], 0
            current.append(key)
            size += one
        if current:
            groups.append(current)
        return groups

    async def _submit(self, keys: list[str]) -> None:
        limit, spent = self.budget()
        estimate = sum(self.estimate(self._bodies[key]) for key in keys)
        if limit is not None and spent + self.reserved + estimate > limit:
            error = BudgetExceededError(
                f"{self.label}: a batch job of {len(keys)} requests (about ${estimate:.6g} at "
                f"batch prices) does not fit in the budget of ${limit:.6g} (${spent:.6g} spent, "
                f"${self.reserved:.6g} reserved by jobs in progress); raise max_cost_usd to go on"
            )
            for key in keys:
                self._fail(key, error)
            return
        custom_ids: dict[str, str] = {}
        for key in keys:
            custom_id = self._custom[key]
            while custom_id in custom_ids:  # two requests named alike: keep ids unique
                custom_id = _custom_id(f"{custom_id}-{len(custom_ids)}", key)
            self._custom[key] = custom_id
            custom_ids[custom_id] = key
        requests = [(cid, self._bodies[key]) for cid, key in custom_ids.items()]
        done = await aretry_call(lambda: self.provider.submit(self._session, requests), self._retry)
        if done.error is not None:
            for key in keys:
                self._fail(key, done.error)
            return
        job = JobView(str(done.value), self.provider.name, custom_ids, reserved=estimate)
        self.reserved += estimate
        self.journal.save(job.record())  # committed before the first poll
        self.jobs[job.job_id] = job
        self.submitted_jobs += 1
        self.submitted_requests += len(keys)
        for key in keys:
            self._by_key[key] = job.job_id
            self._attempts[key] += 1
        log.info(
            "%s: submitted provider batch job %s (%s, %d requests, about $%.6g reserved)",
            self.label,
            job.job_id,
            self.provider.name,
            len(keys),
            estimate,
        )

    # -- polling and collecting ---------------------------------------------------------------

    async def _poll(self) -> None:
        wanted = {self._by_key[k] for k in self._waiters if k in self._by_key}
        for job_id in sorted(wanted, key=lambda j: self.jobs[j].submitted_at):
            job = self.jobs[job_id]
            if job.done and job.results is not None:
                for key in list(job.requests.values()):
                    if key in self._waiters and self._by_key.get(key) == job_id:
                        self._settle(job, key)
                continue
            if job.done:  # ended before this process looked: read its results now
                status = JobStatus(job.state, True, job.state == "failed", job.error)
            else:
                polled = await aretry_call(self._status_of(job_id), self._retry)
                if polled.error is not None:
                    raise polled.error
                status = polled.value
            if status.state != job.state:
                job.state = status.state
                if not status.done:
                    self.journal.save(job.record())
                self._report(job, status)
            if status.done:
                await self._collect(job, status)

    def _status_of(self, job_id: str) -> Callable[[], Any]:
        return lambda: self.provider.status(self._session, job_id)

    async def _collect(self, job: JobView, status: JobStatus) -> None:
        if status.failed:
            job.error = status.error or f"the job ended as {status.state}"
            job.results = {}
            log.warning(
                "%s: provider batch job %s failed as a whole (%s); its %d requests are "
                "submitted again",
                self.label,
                job.job_id,
                job.error,
                len(job.requests),
            )
        else:
            fetched = await aretry_call(
                lambda: self.provider.results(self._session, job.job_id), self._retry
            )
            if fetched.error is not None:
                raise fetched.error
            job.results = fetched.value
        if not job.done:
            job.done = True
            self.reserved = max(0.0, self.reserved - job.reserved)
            self.journal.save(job.record())
        for key in list(job.requests.values()):
            if key in self._waiters and self._by_key.get(key) == job.job_id:
                self._settle(job, key)
        self._report(job, status)

    def _settle(self, job: JobView, key: str) -> None:
        """Answer ``key``'s callers from ``job``, or submit it again, or fail it."""
        assert job.results is not None
        custom_id = next(cid for cid, k in job.requests.items() if k == key)
        if job.error is not None and not job.results:
            outcome = ItemResult(error=f"job {job.job_id} failed: {job.error}")
        else:
            outcome = job.results.get(custom_id) or ItemResult(
                error=f"job {job.job_id} ({job.state}) has no result for it", expired=True
            )
        if outcome.response is not None:
            usage = self.usage_of(outcome.response)
            self.on_usage(usage)
            job.collected += 1
            for future in self._waiters.pop(key, []):
                if not future.done():
                    future.set_result((outcome.response, usage))
            self._bodies.pop(key, None)
            return
        attempts = self._attempts[key]
        if attempts < self.max_attempts:
            log.info(
                "%s: request %s %s in job %s (%s); submitting it again (%d of %d)",
                self.label,
                custom_id,
                "expired" if outcome.expired else "failed",
                job.job_id,
                outcome.error,
                attempts + 1,
                self.max_attempts,
            )
            del self._by_key[key]
            self._submit_later(key)
            return
        message = (
            f"{self.label}: request `{custom_id}` failed in provider batch job {job.job_id} "
            f"after {attempts} submission(s): {outcome.error}"
        )
        terminal = "invalid_request" in str(outcome.error) or str(outcome.error)[:1] == "4"
        error: LLMError = LLMRequestError(message) if terminal else LLMTransientError(message)
        self._fail(key, error)
        del self._by_key[key]
        self._attempts[key] = 0  # a later call (the item's own retry) starts afresh

    def _fail(self, key: str, error: BaseException) -> None:
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_exception(error)
        self._bodies.pop(key, None)

    def _report(self, job: JobView, status: JobStatus) -> None:
        waited = time.time() - job.submitted_at
        log.info(
            "%s: batch job %s %s; %d/%d items collected; $%.6g so far; waiting %.0fs",
            self.label,
            job.job_id,
            status.state,
            job.collected,
            len(job.requests),
            self.spent(),
            waited,
        )

    def spent(self) -> float:
        """Dollars spent so far (from the budget callback)."""
        return self.budget()[1]

    # -- interrupts -------------------------------------------------------------------------

    def _interrupt(self, signal_number: int) -> None:
        open_jobs = sorted({self._by_key[k] for k in self._waiters if k in self._by_key})
        if self.cancel_on_interrupt and open_jobs:
            assert self._loop is not None
            self._loop.create_task(self._cancel(open_jobs))
            what = "cancelling them (--cancel-jobs)"
        else:
            what = (
                "they were NOT cancelled and go on at the provider; resume the run to "
                "collect their results (or resume with --cancel-jobs to cancel them)"
            )
        message = (
            f"{self.label}: stopped waiting for {len(open_jobs)} provider batch job(s) "
            f"({', '.join(open_jobs) or 'none submitted yet'}); {what}"
        )
        log.warning(message)
        error = BatchWaitInterrupted(message)
        for key in list(self._waiters):
            self._fail(key, error)
        self._queue.clear()
        del signal_number

    async def _cancel(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            try:
                await self.provider.cancel(self._session, job_id)
            except Exception as exc:
                log.warning("%s: could not cancel job %s: %s", self.label, job_id, exc)

    async def cancel_all(self) -> list[str]:
        """Cancel every job not yet ended (from any loop); the ids cancelled."""
        loop = self._start()
        open_jobs = [job_id for job_id, job in self.jobs.items() if not job.done]
        future = asyncio.run_coroutine_threadsafe(self._cancel(open_jobs), loop)
        await asyncio.wrap_future(future)
        return open_jobs

    def close(self) -> None:
        """Stop the driver thread (jobs at the provider are left as they are)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        loop = self._loop
        if loop is None:
            return
        self._loop = None

        async def stop() -> None:
            if self._session is not None:
                await self._session.close()
            loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop)


def _custom_id(wanted: str | None, key: str) -> str:
    """A provider-safe custom id (``[A-Za-z0-9_-]{1,64}``): the item's key, or a hash."""
    if wanted:
        cleaned = _SAFE.sub("_", str(wanted))[:64]
        if cleaned:
            return cleaned
    return f"req-{key[:48]}"
