"""Running one batching scope on the engine.

The scope's list is handed to ``stream_batches``: the engine chunks, schedules,
retries, commits and resumes. Each batch runs the scope's agents on its own copy of
the context with the ``over`` field set to the chunk; the fields the batch produces
are its result, committed with the batch, and merged across batches afterwards
(lists concatenated in batch order, dicts deep-merged, scalars last-wins).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from batchline.backends import Backend, LocalBackend
from batchline.engine import (
    Batch,
    BatchOutcome,
    BatchProgress,
    RetryPolicy,
    RunStats,
    call_hook,
    merge_into,
    merge_outputs,
    stream_batches,
)
from batchline.errors import BatchRunError
from batchline.observe.tracing import Tracing
from batchline.pipeline.errors import StepError
from batchline.pipeline.progress import BatchProgressContext
from batchline.pipeline.result import PipelineFailure, PipelineUpdate
from batchline.pipeline.scopes import BatchingScope
from batchline.pipeline.steps import NodeRunner, plain_call
from batchline.state import MemoryStateStore, StateStore

log = logging.getLogger("batchline.pipeline")

BATCH_KEY = "_batch"
"""Inside a scope, ``context["_batch"]`` is ``{"number", "total", "size", "index"}``."""

RunSteps = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]


@dataclass
class ScopeOutcome:
    """What a finished scope contributes to the pipeline."""

    fields: dict[str, Any]
    failures: list[PipelineFailure] = field(default_factory=list)
    batches: int = 0
    items: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    resumed: int = 0
    retries: int = 0
    stopped: BatchRunError | None = None


def resolve_over(scope: BatchingScope, context: Mapping[str, Any]) -> str:
    """The list field the scope batches, or a ``StepError`` that names what is there."""
    lists = sorted(name for name, value in context.items() if isinstance(value, list))
    listed = ", ".join(repr(name) for name in lists) or "none"
    if scope.over is not None:
        if scope.over not in context:
            raise StepError(
                f"batching scope `{scope.name}` batches over {scope.over!r}, which the context "
                f"does not have (list fields present: {listed}). Provide it earlier in the "
                "flow or fix `over=`.",
                scope.name,
            )
        if not isinstance(context[scope.over], list):
            raise StepError(
                f"batching scope `{scope.name}` batches over {scope.over!r}, but it is a "
                f"{type(context[scope.over]).__name__}, not a list (list fields present: "
                f"{listed}).",
                scope.name,
            )
        return scope.over
    if len(lists) != 1:
        raise StepError(
            f"batching scope `{scope.name}` has no `over=` and the context has "
            f"{'no' if not lists else len(lists)} list fields ({listed}); name the field to "
            f"batch with triggers_batching(chunk_size={scope.chunk_size}, over='...').",
            scope.name,
        )
    return lists[0]


class PipelineBatchExecutor:
    """Runs one scope on the engine, batch by batch.

    Args:
        scope: the scope to run.
        run_steps: runs a tuple of flow nodes on a context, returning new fields.
        max_concurrency: batches in flight.
        retry: the engine's retry policy.
        on_error: "continue" or "stop".
        store: where batches are committed (None: memory, nothing kept).
        run_id: the scope's run id in the store (the pipeline derives it).
        progress: True for a progress bar, or a callable fed each ``BatchProgressContext``.
        tracing: spans for the scope and its batches.
    """

    def __init__(
        self,
        scope: BatchingScope,
        run_steps: RunSteps,
        *,
        max_concurrency: int = 1,
        retry: RetryPolicy | None = None,
        on_error: str = "continue",
        store: StateStore | None = None,
        run_id: str | None = None,
        progress: bool | Callable[[BatchProgressContext], Any] = False,
        tracing: Tracing | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.scope = scope
        self.run_steps = run_steps
        self.max_concurrency = max_concurrency
        self.retry = retry
        self.on_error = on_error
        self.store = store
        self.run_id = run_id
        self.progress = progress
        self.tracing = tracing or Tracing()
        self._failed_agent: dict[int, str] = {}
        self._failures: dict[int, PipelineFailure] = {}
        self.backend: Backend = backend or LocalBackend()
        self._batch_outputs: dict[int, list[Any]] = {}

    def stream(self, context: dict[str, Any]) -> Iterator[PipelineUpdate | ScopeOutcome]:
        """Yield an update per finished batch, then the ``ScopeOutcome``."""
        scope = self.scope
        over = resolve_over(scope, context)
        items: list[Any] = context[over]
        outcome = ScopeOutcome(fields={over: []})
        if not items:
            yield outcome
            return
        chunk_size = len(items) if _env_flag("BATCHLINE_DISABLE_BATCHING") else scope.chunk_size
        config = scope.config
        base = dict(context)
        started = time.perf_counter()
        key = config.key
        pairs = list(enumerate(items))
        keyed = _FIRST if key is None else _key_of_pair(key)
        total_batches = -(-len(items) // chunk_size)
        outputs: list[dict[str, Any]] = []
        running: dict[str, Any] = {}
        with self.tracing.span(
            "batchline.scope",
            {
                "scope.name": scope.name,
                "scope.over": over,
                "scope.chunk_size": chunk_size,
                "scope.total_items": len(items),
                "scope.total_batches": total_batches,
            },
        ) as scope_span:
            local = self.backend.name == "local"
            # On another process (Ray) agents are called plainly: tracing stays here.
            plain = NodeRunner(plain_call, self.retry or RetryPolicy.none())
            steps = self.run_steps if local else plain.run_nodes
            scope_batch = ScopeBatch(
                scope.name,
                scope.steps,
                config.skip_if,
                config.load_existing,
                base,
                over,
                total_batches,
                steps,
            )

            def traced_batch(batch: Batch[tuple[int, Any]]) -> list[Any]:
                with self.tracing.span(
                    "batchline.batch",
                    {
                        "batch.number": batch.number,
                        "batch.total": total_batches,
                        "batch.size": len(batch.items),
                        "scope.name": scope.name,
                    },
                    parent=scope_span,
                ) as span:
                    begin = time.perf_counter()
                    try:
                        return scope_batch(batch)
                    finally:
                        span.set_attribute(
                            "batch.duration_ms", (time.perf_counter() - begin) * 1000
                        )

            def progress_of(p: BatchProgress, batch_items: list[Any]) -> BatchProgressContext:
                return BatchProgressContext(
                    batch_number=p.batch_number,
                    total_batches=total_batches,
                    batch_size=p.batch_size,
                    items=batch_items,
                    completed_items=p.completed_items,
                    total_items=len(items),
                    percentage=p.percentage if p.percentage is not None else 0.0,
                    is_first=p.is_first,
                    is_last=p.is_last,
                    scope=scope.name,
                    run_id=p.run_id,
                    elapsed=time.perf_counter() - started,
                    attempt=p.attempt,
                )

            def batch_items(number: int) -> list[Any]:
                start = (number - 1) * chunk_size
                return items[start : start + chunk_size]

            def on_start(p: BatchProgress) -> None:
                if _env_flag("BATCHLINE_DEBUG"):
                    log.info(
                        "scope %s: batch %d/%d starts", scope.name, p.batch_number, total_batches
                    )
                progress = progress_of(p, batch_items(p.batch_number))
                for hook in config.hooks.get("on_batch_start", ()):
                    call_hook("on_batch_start", hook, progress)

            def on_complete(p: BatchProgress, result: BatchOutcome[Any, Any]) -> None:
                progress = progress_of(p, batch_items(p.batch_number))
                fields = _fields_of(_payloads(result))
                if config.persist_batch is not None:
                    call_hook(
                        "persist_batch", config.persist_batch, fields.get(over, []), _ReadOnly(base)
                    )
                for hook in config.hooks.get("on_batch_complete", ()):
                    call_hook("on_batch_complete", hook, progress, fields)
                if callable(self.progress):
                    call_hook("progress", self.progress, progress)

            def on_error(p: BatchProgress, error: BaseException) -> None:
                agent = getattr(error, "batchline_agent", None)
                if isinstance(agent, str):
                    self._failed_agent.setdefault(p.batch_number, agent)
                progress = progress_of(p, batch_items(p.batch_number))
                for hook in config.hooks.get("on_batch_error", ()):
                    call_hook("on_batch_error", hook, progress, error)
                if callable(self.progress):
                    call_hook("progress", self.progress, progress)

            watch_start = bool(config.hooks.get("on_batch_start")) or _env_flag("BATCHLINE_DEBUG")
            watch_complete = (
                bool(config.hooks.get("on_batch_complete"))
                or config.persist_batch is not None
                or callable(self.progress)
            )
            stream = stream_batches(
                pairs,
                traced_batch if local and self.tracing.enabled else scope_batch,
                chunk_size=chunk_size,
                key=keyed,
                store=self.store or MemoryStateStore(keep_results=False, require_json=False),
                run_id=self.run_id,
                max_concurrency=self.max_concurrency,
                retry=self.retry,
                on_error="stop" if self.on_error == "stop" else "continue",
                on_batch_start=on_start if watch_start else None,
                on_batch_complete=on_complete if watch_complete else None,
                on_batch_error=on_error,
                progress=self.progress is True,
                handle_signals=False,
                backend=self.backend,
            )
            try:
                for result in stream:
                    fields = self._account(outcome, result)
                    if fields is not None:
                        merge_into(running, fields, source=f"scope {scope.name}")
                        outputs.append(fields)
                    snapshot = _Snapshot(base, running, outputs)
                    yield self._update(result, fields, snapshot, total_batches)
            except BatchRunError as exc:
                outcome.stopped = exc
            _count(outcome, stream.stats)
            scope_span.set_attribute("scope.failed_batches", len(outcome.failures))
        running.setdefault(over, [])
        if _env_flag("BATCHLINE_DEBUG"):
            log.info(
                "scope %s: merged %d batches into fields %s",
                scope.name,
                outcome.batches - len(outcome.failures),
                ", ".join(sorted(running)),
            )
        outcome.fields = running
        yield outcome

    def _account(
        self, outcome: ScopeOutcome, result: BatchOutcome[Any, Any]
    ) -> dict[str, Any] | None:
        """Record a finished batch's failure; return the fields it produced (None if it
        failed). Item and batch counts are the engine's (``_count``)."""
        if result.failures:
            outcome.failures.append(self._failure(result))
            return None
        payloads = _payloads(result)
        for payload in payloads:
            outcome.skipped += int(payload.get("skipped", 0))
        return _fields_of(payloads)

    def _failure(self, result: BatchOutcome[Any, Any]) -> PipelineFailure:
        """The failure of a batch, made once and cached (counted and streamed alike)."""
        number = result.batch.number
        cached = self._failures.get(number)
        if cached is None:
            first = result.failures[0]
            cached = self._failures[number] = PipelineFailure(
                scope=self.scope.name,
                batch_number=number,
                agent=self._failed_agent.get(number, self.scope.name),
                items=[item for _, item in result.batch.items],
                error_type=first.error_type,
                message=first.message,
                attempts=first.attempts,
            )
        return cached

    def _update(
        self,
        result: BatchOutcome[Any, Any],
        fields: dict[str, Any] | None,
        snapshot: Mapping[str, Any],
        total: int,
    ) -> PipelineUpdate:
        failure = self._failure(result) if result.failures else None
        return PipelineUpdate(
            scope=self.scope.name,
            batch_number=result.batch.number,
            total_batches=total,
            results=fields or {},
            context=snapshot,
            failure=failure,
            resumed=result.resumed,
        )


class _Snapshot(Mapping[str, Any]):
    """The context as it stood after a batch: built lazily, only when read.

    List fields are prefixes of the running (append-only) lists; other fields are
    merged from the batch outputs so far on first access. Nothing is copied for
    updates nobody reads, so streaming stays linear.
    """

    __slots__ = ("_base", "_cache", "_count", "_lengths", "_outputs", "_running")

    def __init__(
        self, base: Mapping[str, Any], running: dict[str, Any], outputs: list[dict[str, Any]]
    ) -> None:
        self._base = base
        self._running = running
        self._outputs = outputs
        self._count = len(outputs)
        self._lengths = {
            name: len(value) for name, value in running.items() if isinstance(value, list)
        }
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name in self._lengths:
            value: Any = self._running[name][: self._lengths[name]]
        elif name in self._running and self._count:
            value = merge_outputs([out for out in self._outputs[: self._count] if name in out]).get(
                name, self._base.get(name)
            )
            if name not in self._base and value is None:
                raise KeyError(name)
        else:
            value = self._base[name]
        self._cache[name] = value
        return value

    def _names(self) -> list[str]:
        scope = [
            n
            for n in self._running
            if n in self._lengths or any(n in out for out in self._outputs[: self._count])
        ]
        return [*scope, *(n for n in self._base if n not in scope)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


@dataclass
class ScopeBatch:
    """One batch of a scope, as a picklable callable (Ray ships it to a worker)."""

    scope: str
    steps: tuple[Any, ...]
    skip_if: Any
    load_existing: Any
    base: dict[str, Any]
    over: str
    total: int
    run_steps: RunSteps

    def __call__(self, batch: Batch[tuple[int, Any]]) -> list[Any]:
        chunk = list(map(_SECOND, batch.items))
        loaded: dict[int, Any] = {}
        skipped = 0
        if self.skip_if is None:
            run_offsets: list[int] | range = range(len(chunk))
            to_run = chunk
        else:
            view = _ReadOnly(self.base)
            run_offsets = []
            for offset, item in enumerate(chunk):
                if self.skip_if(item, view):
                    existing = self.load_existing(item, view) if self.load_existing else None
                    if existing is not None:
                        loaded[offset] = existing
                    else:
                        skipped += 1
                else:
                    run_offsets.append(offset)
            to_run = [chunk[i] for i in run_offsets]
        context = dict(self.base)
        context[self.over] = to_run
        context[BATCH_KEY] = {
            "number": batch.number,
            "total": self.total,
            "size": len(chunk),
            "index": batch.index,
        }
        produced: dict[str, Any] = {}
        if to_run:
            try:
                produced = self.run_steps(self.steps, context)
            except StepError as exc:
                exc.batchline_agent = exc.step_name  # type: ignore[attr-defined]
                raise
            except Exception as exc:
                if not hasattr(exc, "batchline_agent"):
                    exc.batchline_agent = self.scope  # type: ignore[attr-defined]
                raise
        produced.pop(BATCH_KEY, None)
        processed = produced.get(self.over, to_run)
        if not isinstance(processed, list):
            processed = [processed]
        if loaded:
            if len(processed) == len(to_run):
                by_offset = dict(zip(run_offsets, processed, strict=True))
                by_offset.update(loaded)
                processed = [by_offset[i] for i in sorted(by_offset)]
            else:
                log.warning(
                    "scope %s batch %d: agents returned %d items for %d processed; loaded "
                    "results are appended after them",
                    self.scope,
                    batch.number,
                    len(processed),
                    len(to_run),
                )
                processed = [*processed, *(loaded[i] for i in sorted(loaded))]
        produced[self.over] = processed
        payload = {"fields": produced, "skipped": skipped}
        return [payload, *([None] * (len(batch.items) - 1))]


def _count(outcome: ScopeOutcome, stats: RunStats) -> None:
    """The scope's counts, as the engine counted them (final once its stream ended)."""
    outcome.batches = stats.batches
    outcome.items = stats.total
    outcome.succeeded = stats.succeeded
    outcome.failed = stats.failed
    outcome.resumed = stats.resumed
    outcome.retries = stats.retries


def _payloads(result: BatchOutcome[Any, Any]) -> list[dict[str, Any]]:
    """The batch payloads of an outcome (one per commit; the other items hold None)."""
    return [payload for payload in result.results if payload is not None]


def _fields_of(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields a batch produced (merged over its commits, when resumed in parts)."""
    parts = [payload["fields"] for payload in payloads if "fields" in payload]
    if len(parts) == 1:
        return dict(parts[0])
    return merge_outputs(parts)


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


def _key_of_pair(key: Any) -> Callable[[tuple[int, Any]], Any]:
    if isinstance(key, str):
        return lambda pair: pair[1][key]
    return lambda pair: key(pair[1])


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class _ReadOnly(Mapping[str, Any]):
    """A read-only view of a dict (cheaper to reason about than a copy)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)
