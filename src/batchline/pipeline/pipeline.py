"""The Pipeline: a compiled flow, run on a context, batch scopes on the engine."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from typing import Any

from opentelemetry import trace

from batchline.backends import Backend, resolve_backend
from batchline.engine import RetryPolicy, RunSession, child_run_id
from batchline.errors import ConfigurationError
from batchline.observe.tracing import Tracing
from batchline.pipeline.calls import run_parallel
from batchline.pipeline.errors import PipelineBatchError, StepError
from batchline.pipeline.executor import PipelineBatchExecutor, ScopeOutcome
from batchline.pipeline.flow import Chunked, Node, Step, to_node
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
            current = dict(context or {})
            for unit in self.units:
                current.update(self._run_unit(unit, current))
            stats = PipelineStats(duration=time.perf_counter() - started)
            return PipelineResult(current, [], stats, self.run_id)
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
        # With a store, the pipeline run itself holds a session (its scopes are child runs).
        session = (
            RunSession(self.store, self.run_id, meta={"kind": "pipeline"})
            if (self.store is not None and self.run_id)
            else None
        )
        with (
            session or nullcontext(),
            self.tracing.span(
                "batchline.pipeline",
                {"pipeline.flow": repr(self.flow)[:200], "pipeline.run_id": self.run_id or ""},
            ) as span,
        ):
            try:
                yield from self._run_units(self.units, state, path="")
            finally:
                state.stats.duration = time.perf_counter() - started
                span.set_attribute("pipeline.failed_batches", len(state.failures))
            if session is not None and (state.failures or state.stopped is not None):
                session.final_status = "stopped" if state.stopped is not None else "failed"
        result = state.result(self.run_id)
        if state.stopped is not None:
            raise PipelineBatchError(
                f"pipeline stopped after a failed batch (on_error='stop'): {state.stopped}",
                result,
            )
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
            if state.stopped is not None:
                return
            if isinstance(unit, ScopeUnit):
                yield from self._run_scope(unit.scope, state, f"{path}{number}")
            else:
                state.context.update(self._run_unit(unit, state.context))

    def _run_unit(self, unit: Unit, context: dict[str, Any]) -> dict[str, Any]:
        if isinstance(unit, Step | Chunked):
            return self.nodes.run_node(unit, context)
        if isinstance(unit, ParallelUnit):
            branches = [self._branch(branch) for branch in unit.branches]
            names = [repr(node) for node in unit.node.branches]
            return run_parallel(branches, context, names)
        raise AssertionError(f"unexpected unit {unit!r}")  # pragma: no cover

    def _branch(self, units: tuple[Unit, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def run(context: dict[str, Any]) -> dict[str, Any]:
            produced: dict[str, Any] = {}
            for unit in units:
                if isinstance(unit, ScopeUnit):
                    state = _RunState(context)
                    for _ in self._run_scope(unit.scope, state, f"branch-{unit.scope.index}"):
                        pass
                    if state.failures:
                        raise StepError(
                            f"scope `{unit.scope.name}` in a parallel branch had "
                            f"{len(state.failures)} failed batch(es): "
                            f"{state.failures[0].error_type}: {state.failures[0].message}",
                            unit.scope.name,
                        )
                    new = {k: v for k, v in state.context.items() if context.get(k) is not v}
                else:
                    new = self._run_unit(unit, context)
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
    ) -> Iterator[PipelineUpdate]:
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
        )
        for item in executor.stream(state.context):
            if isinstance(item, ScopeOutcome):
                state.absorb(item)
            else:
                yield item


class _RunState:
    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.failures: list[PipelineFailure] = []
        self.stats = PipelineStats()
        self.stopped: Exception | None = None

    def absorb(self, outcome: ScopeOutcome) -> None:
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
        if outcome.stopped is not None:
            self.stopped = outcome.stopped

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
