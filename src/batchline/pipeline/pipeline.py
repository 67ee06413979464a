"""The Pipeline: a compiled flow, run on a context, batch scopes on the engine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import nullcontext
from typing import Any

from opentelemetry import trace

from batchline.backends import Backend, resolve_backend
from batchline.engine import RetryPolicy, RunSession, child_run_id, interruption_message
from batchline.errors import BatchRunError, ConfigurationError, RunInterrupted
from batchline.observe.tracing import Tracing
from batchline.pipeline.calls import run_parallel
from batchline.pipeline.errors import PipelineBatchError, PipelineInterrupted
from batchline.pipeline.executor import PipelineBatchExecutor, ScopeOutcome
from batchline.pipeline.flow import Chunked, Node, Step, to_node
from batchline.pipeline.interrupt import InterruptGuard, signal_name
from batchline.pipeline.progress import BatchProgressContext
from batchline.pipeline.result import PipelineFailure, PipelineResult, PipelineStats, PipelineUpdate
from batchline.pipeline.scopes import BatchingScope, ParallelUnit, ScopeUnit, Unit, compile_flow
from batchline.pipeline.steps import NodeRunner, plain_call
from batchline.state import StateStore

log = logging.getLogger("batchline.pipeline")

TRANSIENT_ONLY = RetryPolicy(max_attempts=3, retry_on=(TimeoutError, ConnectionError))
"""Pipelines retry only transient errors by default (``TransientError`` always counts)."""


class Pipeline:
    """A flow of agents, run on a context; batching scopes run batch by batch.

    Args:
        flow: agents combined with ``>>`` and ``|`` (or a single agent).
        max_concurrency: batches of a scope in flight at once (default 1).
        retry: retry policy for scope batches (default: 3 attempts for transient errors:
            ``TransientError``, ``TimeoutError``, ``ConnectionError``).
        on_error: ``"continue"`` keeps going after a failed batch; ``"stop"`` raises
            ``PipelineBatchError`` with the partial result.
        progress: True for a progress bar per scope, or a callable fed every
            ``BatchProgressContext``.
        store: a state store; with ``run_id``, a re-run resumes committed batches.
        run_id: the pipeline run's id in the store.
        tracer_provider: OpenTelemetry provider (default: the global one).
        backend: where scope batches run: ``"local"`` (threads) or ``"ray"`` (Ray tasks;
            agents must be picklable), or a backend object.
        ray_address: the Ray cluster to join with ``backend="ray"``.

    Raises:
        BatchingConfigurationError: a scope is misplaced (raised here, at build time).
    """

    def __init__(
        self,
        flow: object,
        *,
        max_concurrency: int = 1,
        retry: RetryPolicy | None = None,
        on_error: str = "continue",
        progress: bool | Callable[[BatchProgressContext], Any] = False,
        store: StateStore | None = None,
        run_id: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        backend: str | Backend | None = None,
        ray_address: str | None = None,
    ) -> None:
        self.flow: Node = to_node(flow)
        self.units, self.scopes = compile_flow(self.flow)
        if type(max_concurrency) is not int or max_concurrency < 1:
            raise ConfigurationError(
                f"`max_concurrency` is {max_concurrency!r}; expected an integer >= 1 "
                "(batches of a scope in flight at once)."
            )
        if on_error not in ("continue", "stop"):
            raise ConfigurationError(f"`on_error` is {on_error!r}; expected 'continue' or 'stop'.")
        if progress is not True and progress is not False and not callable(progress):
            raise ConfigurationError(
                f"`progress` is {progress!r}; expected True, False or a callable(progress)."
            )
        if store is not None and run_id is None:
            raise ConfigurationError(
                "`store` is set but `run_id` is not: give the run an id, e.g. run_id='nov', "
                "so that a re-run can find and resume it."
            )
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else TRANSIENT_ONLY
        self.on_error = on_error
        self.progress = progress
        self.store = store
        self.run_id = run_id
        self.tracing = Tracing(tracer_provider)
        self.nodes = NodeRunner(self._call, self.retry)
        self.backend = resolve_backend(backend, ray_address)
        if os.environ.get("BATCHLINE_DEBUG", "").strip() in {"1", "true", "yes"}:
            _enable_debug_logging()

    def __repr__(self) -> str:
        return f"Pipeline({self.flow!r}, scopes={len(self.scopes)})"

    # -- public entry points ------------------------------------------------------------

    def run(self, context: Mapping[str, Any] | None = None) -> PipelineResult:
        """Run the flow on ``context``; return the final context, failures and stats."""
        if not self.scopes and not self.tracing.enabled and isinstance(context, dict | None):
            # No scope, nobody tracing: the agents one after another, nothing else.
            started = time.perf_counter()
            state = _RunState(dict(context or {}))
            try:
                for unit in self.units:
                    state.current = _unit_name(unit)
                    state.context.update(self._run_unit(unit, state.context, state))
            except KeyboardInterrupt as exc:
                state.stats.duration = time.perf_counter() - started
                raise self._interrupted(state, exc) from exc
            state.stats.duration = time.perf_counter() - started
            return PipelineResult(state.context, [], state.stats, self.run_id)
        result: PipelineResult | None = None
        for update in self.stream(context):
            if update.done:
                result = update.result
        assert result is not None
        return result

    def stream(self, context: Mapping[str, Any] | None = None) -> Iterator[PipelineUpdate]:
        """Run the flow, yielding an update after every finished batch and a final one."""
        if context is not None and not isinstance(context, Mapping):
            raise ConfigurationError(
                f"the initial context is {type(context).__name__}; expected a dict of fields, "
                "e.g. pipeline.run({'query': 'fintech in Berlin'})."
            )
        state = _RunState(dict(context or {}))
        started = time.perf_counter()
        guard = InterruptGuard()
        # With a store, the pipeline run itself holds a session (its scopes are child runs).
        session = (
            RunSession(self.store, self.run_id, meta={"kind": "pipeline"})
            if (self.store is not None and self.run_id)
            else None
        )
        with (
            guard,
            session or nullcontext(),
            self.tracing.span(
                "batchline.pipeline",
                {"pipeline.flow": repr(self.flow)[:200], "pipeline.run_id": self.run_id or ""},
            ) as span,
        ):
            state.guard = guard
            try:
                yield from self._run_units(self.units, state, path="")
            except KeyboardInterrupt as exc:
                if isinstance(exc, PipelineInterrupted):
                    raise
                state.interrupted = exc
            finally:
                state.stats.duration = time.perf_counter() - started
                span.set_attribute("pipeline.failed_batches", len(state.failures))
            if guard:
                state.signal_number = guard.signal_number
                if state.interrupted is None:
                    state.interrupted = KeyboardInterrupt()
            if session is not None:
                if state.interrupted is not None:
                    session.final_status = "interrupted"
                elif state.failures or state.stopped is not None:
                    session.final_status = "stopped" if state.stopped is not None else "failed"
        if state.interrupted is not None:
            raise self._interrupted(state, state.interrupted) from state.interrupted
        result = state.result(self.run_id)
        if state.stopped is not None:
            raise PipelineBatchError(self._stop_message(state), result) from state.cause
        yield PipelineUpdate(
            scope="",
            batch_number=0,
            total_batches=0,
            results={},
            context=result.context,
            done=True,
            result=result,
        )

    async def arun(self, context: Mapping[str, Any] | None = None) -> PipelineResult:
        """``run`` from async code (on a worker thread, so the loop stays free)."""
        return await asyncio.to_thread(self.run, context)

    # -- execution --------------------------------------------------------------------

    def _run_units(
        self, units: tuple[Unit, ...], state: _RunState, path: str
    ) -> Iterator[PipelineUpdate]:
        for number, unit in enumerate(units):
            if state.halted:
                return
            state.current = _unit_name(unit)
            if isinstance(unit, ScopeUnit):
                outcome = yield from self._run_scope(unit.scope, state, f"{path}{number}")
                state.absorb(outcome)
                state.note(outcome.fields, state.current)
            else:
                produced = self._run_unit(unit, state.context, state)
                state.context.update(produced)
                state.note(produced, state.current)

    def _run_unit(self, unit: Unit, context: dict[str, Any], state: _RunState) -> dict[str, Any]:
        if isinstance(unit, Step | Chunked):
            return self.nodes.run_node(unit, context)
        if isinstance(unit, ParallelUnit):
            branches = [self._branch(branch, state) for branch in unit.branches]
            names = [repr(node) for node in unit.node.branches]
            return run_parallel(branches, context, names)
        raise AssertionError(f"unexpected unit {unit!r}")  # pragma: no cover

    def _branch(
        self, units: tuple[Unit, ...], state: _RunState
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A parallel branch: its units on the branch's copy of the context.

        A scope in a branch counts into the run's failures and stats like any other;
        the fields it produced are the branch's output.
        """

        def run(context: dict[str, Any]) -> dict[str, Any]:
            produced: dict[str, Any] = {}
            for unit in units:
                if isinstance(unit, ScopeUnit):
                    local = _RunState(context, origins=state.origins)
                    local.guard = state.guard
                    steps = self._run_scope(unit.scope, local, f"branch-{unit.scope.index}")
                    outcome = _exhaust(steps)
                    with state.lock:
                        state.absorb(outcome, update_context=False)
                    new = outcome.fields
                    if outcome.stopped is not None or outcome.interrupted is not None:
                        context.update(new)
                        produced.update(new)
                        break
                else:
                    new = self._run_unit(unit, context, state)
                context.update(new)
                produced.update(new)
            return produced

        return run

    def _call(self, step: Step, context: dict[str, Any]) -> dict[str, Any]:
        if not self.tracing.enabled:
            return plain_call(step, context)
        with self.tracing.span("batchline.agent", {"agent.name": step.name}):
            return plain_call(step, context)

    def _run_scope(
        self, scope: BatchingScope, state: _RunState, path: str
    ) -> Generator[PipelineUpdate, None, ScopeOutcome]:
        executor = PipelineBatchExecutor(
            scope,
            self.nodes.run_nodes,
            max_concurrency=self.max_concurrency,
            retry=self.retry,
            on_error=self.on_error,
            store=self.store,
            run_id=child_run_id(self.run_id, f"scope-{path}-{scope.name}") if self.run_id else None,
            progress=self.progress,
            tracing=self.tracing,
            backend=self.backend,
            origins=state.origins,
            should_stop=state.guard.__bool__ if state.guard is not None else None,
        )
        for item in executor.stream(state.context):
            if isinstance(item, ScopeOutcome):
                return item
            yield item
        raise AssertionError("a scope ended without its outcome")  # pragma: no cover

    # -- how a run ends ---------------------------------------------------------------

    def _interrupted(self, state: _RunState, exc: BaseException) -> PipelineInterrupted:
        """The ``PipelineInterrupted`` for a signal, naming the run and how to resume."""
        signum = state.signal_number
        if isinstance(exc, RunInterrupted) and exc.signal_number is not None:
            signum = exc.signal_number
        if signum is None and not isinstance(exc, RunInterrupted):
            signum = signal.SIGINT  # a bare KeyboardInterrupt: Ctrl-C without a handler
        during = f"it stopped during {state.current}" if state.current else "it stopped"
        if self.store is not None and self.run_id is not None:
            where = f"{during}; the batches committed so far are saved in {self.store.location}"
            resume = (
                f"Run it again with the same store and run_id={self.run_id!r} to resume: only "
                "the missing items of each scope run (steps outside scopes run again)."
            )
        else:
            where = f"{during}; nothing was saved (no store)"
            resume = (
                "Running it again starts over; pass store=SQLiteStateStore(...) and "
                "run_id=... to make runs resumable."
            )
        if self.run_id is not None:
            message = "pipeline " + interruption_message(
                self.run_id,
                where=where,
                resume=resume,
                signal_number=signum,
                items_done=state.stats.succeeded,
            )
        else:
            message = (
                f"pipeline interrupted by {signal_name(signum)} after {state.stats.succeeded} "
                f"items; {where}. {resume}"
            )
        return PipelineInterrupted(message, state.result(self.run_id), signum, self.run_id)

    def _stop_message(self, state: _RunState) -> str:
        """Why the run stopped: the scope, batch and agent that failed, and what to do."""
        run = f"pipeline run {self.run_id!r}" if self.run_id else "pipeline"
        failure = state.stop_failure
        if failure is None:
            what = f"{run} stopped: {state.stopped}"
        else:
            what = (
                f"{run} stopped (on_error='stop'): batch {failure.batch_number} of scope "
                f"`{failure.scope}` failed in agent `{failure.agent}` after {failure.attempts} "
                f"attempt(s): {failure.error_type}: {failure.message}"
            )
        if self.store is not None and self.run_id is not None:
            hint = (
                f"Fix the cause and run it again with the same store and run_id="
                f"{self.run_id!r}: it resumes, running only the failed and missing items."
            )
        else:
            hint = (
                "Fix the cause and run it again (it starts over: no store was given), or "
                "pass on_error='continue' to keep going past failed batches."
            )
        return f"{what}. The error's .result holds what finished before it. {hint}"


def _exhaust(steps: Generator[PipelineUpdate, None, ScopeOutcome]) -> ScopeOutcome:
    """Run a scope generator to its end and return its outcome."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            outcome: ScopeOutcome = stop.value
            return outcome


def _unit_name(unit: Unit) -> str:
    if isinstance(unit, ScopeUnit):
        return f"scope `{unit.scope.name}`"
    if isinstance(unit, ParallelUnit):
        return f"parallel group `{unit.node!r}`"
    return f"agent `{unit.name}`"


class _RunState:
    """Everything one run accumulates: context, failures, counts, and why it ended."""

    def __init__(self, context: dict[str, Any], origins: dict[str, str] | None = None) -> None:
        self.context = context
        self.failures: list[PipelineFailure] = []
        self.stats = PipelineStats()
        self.stopped: BatchRunError | None = None
        self.stop_failure: PipelineFailure | None = None
        self.cause: BaseException | None = None
        self.interrupted: BaseException | None = None
        self.signal_number: int | None = None
        self.guard: InterruptGuard | None = None
        self.current = ""
        self.lock = threading.Lock()
        if origins is None:
            origins = dict.fromkeys(context, "the initial context")
        self.origins = origins

    @property
    def halted(self) -> bool:
        """True when no further unit may start (stopped, interrupted, or a signal came)."""
        if self.guard:
            self.signal_number = self.guard.signal_number if self.guard else None
            return True
        return self.stopped is not None or self.interrupted is not None

    def note(self, produced: Mapping[str, Any], unit: str) -> None:
        """Remember which unit set each field (for error messages)."""
        for name in produced:
            self.origins[name] = unit

    def absorb(self, outcome: ScopeOutcome, *, update_context: bool = True) -> None:
        """Count a finished scope (and take its fields into the context)."""
        if update_context:
            self.context.update(outcome.fields)
        self.failures.extend(outcome.failures)
        stats = self.stats
        stats.scopes += 1
        stats.batches += outcome.batches
        stats.items += outcome.items
        stats.succeeded += outcome.succeeded
        stats.failed += outcome.failed
        stats.skipped += outcome.skipped
        stats.resumed += outcome.resumed
        stats.retries += outcome.retries
        if outcome.interrupted is not None and self.interrupted is None:
            self.interrupted = outcome.interrupted
        if outcome.stopped is not None and self.stopped is None:
            self.stopped = outcome.stopped
            self.cause = outcome.cause
            self.stop_failure = outcome.failures[0] if outcome.failures else None

    def result(self, run_id: str | None) -> PipelineResult:
        self.context.pop("_batch", None)
        return PipelineResult(self.context, list(self.failures), self.stats, run_id)


def _enable_debug_logging() -> None:
    logger = logging.getLogger("batchline")
    if not any(getattr(h, "_batchline_debug", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._batchline_debug = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
