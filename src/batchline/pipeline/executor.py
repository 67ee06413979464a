"""Running one batching scope on the engine.

The scope's list is handed to ``stream_batches``: the engine chunks, schedules,
retries, commits and resumes. Items are keyed by their content (or the scope's
``key``), never by position, so a resume after the list changed runs the new items,
drops the removed ones and repeats nothing. Each batch runs the scope's agents on its
own copy of the context with the ``over`` field set to the chunk and commits one
record per item (see ``scope_batch``); the fields are rebuilt from the records and
merged across batches (lists concatenated in batch order, dicts deep-merged, other
values last-wins with a ``PipelineWarning``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from batchline.backends import Backend, LocalBackend
from batchline.engine import (
    BatchOutcome,
    BatchProgress,
    Key,
    RetryPolicy,
    RunStats,
    call_hook,
    merge_into,
    merge_outputs,
    stream_batches,
)
from batchline.errors import BatchRunError, RunInterrupted
from batchline.observe.tracing import Tracing
from batchline.pipeline.errors import PipelineWarning
from batchline.pipeline.frozen import freeze
from batchline.pipeline.progress import BatchProgressContext
from batchline.pipeline.result import PipelineFailure, PipelineUpdate
from batchline.pipeline.scope_batch import (
    BATCH_KEY,
    Record,
    RunSteps,
    ScopeBatch,
    read_records,
)
from batchline.pipeline.scope_items import item_keys, resolve_over
from batchline.pipeline.scopes import BatchingScope
from batchline.pipeline.snapshot import Snapshot
from batchline.pipeline.steps import NodeRunner, plain_call
from batchline.state import MemoryStateStore, StateStore

log = logging.getLogger("batchline.pipeline")

__all__ = ["BATCH_KEY", "PipelineBatchExecutor", "RunSteps", "ScopeOutcome", "resolve_over"]


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
    interrupted: RunInterrupted | None = None
    cause: BaseException | None = None


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
        backend: where batches run.
        origins: what set each context field, for error messages.
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
        origins: Mapping[str, str] | None = None,
        should_stop: Callable[[], bool] | None = None,
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
        self.backend: Backend = backend or LocalBackend()
        self.origins = origins or {}
        self.should_stop = should_stop
        self._failed_agent: dict[int, str] = {}
        self._errors: dict[int, BaseException] = {}
        self._failures: dict[int, PipelineFailure] = {}
        self._fields_cache: dict[int, dict[str, Any]] = {}
        self._skipped: dict[int, int] = {}
        self._warned: set[str] = set()
        self._over = ""
        self._keys: set[Key] = set()
        self._stale = False
        self._orphans: dict[Key, None] = {}

    def stream(self, context: dict[str, Any]) -> Iterator[PipelineUpdate | ScopeOutcome]:
        """Yield an update per finished batch, then the ``ScopeOutcome``."""
        scope = self.scope
        over = self._over = resolve_over(scope, context, self.origins)
        items: list[Any] = context[over]
        outcome = ScopeOutcome(fields={over: []})
        if not items:
            yield outcome
            return
        chunk_size = len(items) if _env_flag("BATCHLINE_DISABLE_BATCHING") else scope.chunk_size
        assert chunk_size is not None
        config = scope.config
        base = dict(context)
        started = time.perf_counter()
        keys = item_keys(items, config.key, scope.name, by_content=self.store is not None)
        if self.store is not None:
            self._keys = set(keys)
        pairs = list(zip(keys, items, strict=True))
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
            scope_batch = ScopeBatch(
                scope=scope.name,
                steps=scope.steps,
                skip_if=None if _forced(config.force_reprocess, context) else config.skip_if,
                load_existing=config.load_existing,
                persist_batch=config.persist_batch,
                base=base,
                over=over,
                total=total_batches,
                run_steps=self.run_steps if local else plain.run_nodes,
                key_field=config.key if isinstance(config.key, str) else None,
                should_stop=self.should_stop if local else None,
            )

            def traced_batch(batch: Any) -> list[Record]:
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

            def progress_of(p: BatchProgress) -> BatchProgressContext:
                start = (p.batch_number - 1) * chunk_size
                return BatchProgressContext(
                    batch_number=p.batch_number,
                    total_batches=total_batches,
                    batch_size=p.batch_size,
                    items=items[start : start + chunk_size],
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

            def on_start(p: BatchProgress) -> None:
                if _env_flag("BATCHLINE_DEBUG"):
                    log.info(
                        "scope %s: batch %d/%d starts", scope.name, p.batch_number, total_batches
                    )
                hooks = config.hooks.get("on_batch_start", ())
                if hooks:
                    progress = progress_of(p)
                    for hook in hooks:
                        call_hook("on_batch_start", hook, progress)

            def on_complete(p: BatchProgress, result: BatchOutcome[Any, Any]) -> None:
                progress = progress_of(p)
                hooks = config.hooks.get("on_batch_complete", ())
                if hooks:
                    fields = self._fields(result)
                    self._fields_cache[p.batch_number] = fields
                    frozen = freeze(fields)
                    for hook in hooks:
                        call_hook("on_batch_complete", hook, progress, frozen)
                if callable(self.progress):
                    call_hook("progress", self.progress, progress)

            def on_error(p: BatchProgress, error: BaseException) -> None:
                agent = getattr(error, "batchline_agent", None)
                if isinstance(agent, str):
                    self._failed_agent.setdefault(p.batch_number, agent)
                self._errors.setdefault(p.batch_number, error)
                progress = progress_of(p)
                for hook in config.hooks.get("on_batch_error", ()):
                    call_hook("on_batch_error", hook, progress, error)
                if callable(self.progress):
                    call_hook("progress", self.progress, progress)

            watch_start = bool(config.hooks.get("on_batch_start")) or _env_flag("BATCHLINE_DEBUG")
            watch_complete = bool(config.hooks.get("on_batch_complete")) or callable(self.progress)
            stream = stream_batches(
                pairs,
                traced_batch if local and self.tracing.enabled else scope_batch,
                chunk_size=chunk_size,
                key=_FIRST,
                store=self.store or MemoryStateStore(keep_results=False, require_json=False),
                run_id=self.run_id,
                max_concurrency=self.max_concurrency,
                retry=self.retry,
                on_error="stop" if self.on_error == "stop" else "continue",
                on_batch_start=on_start if watch_start else None,
                on_batch_complete=on_complete if watch_complete else None,
                on_batch_error=on_error,
                progress=self.progress is True,
                handle_signals=True,
                backend=self.backend,
            )
            try:
                for result in stream:
                    if result.failures and all(f.error_type == "StopRun" for f in result.failures):
                        continue  # stopped before it ran (an interrupt): pending, not failed
                    fields = self._account(outcome, result)
                    if fields is not None:
                        merge_into(
                            running,
                            fields,
                            source=f"scope {scope.name}",
                            on_conflict=self._conflict,
                        )
                        outputs.append(fields)
                    snapshot = Snapshot(base, running, outputs)
                    yield self._update(result, fields, snapshot, total_batches)
            except RunInterrupted as exc:
                outcome.interrupted = exc
            except BatchRunError as exc:
                if self.should_stop is not None and self.should_stop():
                    outcome.interrupted = RunInterrupted(str(exc), exc.result)  # see ScopeBatch
                else:
                    outcome.stopped = exc
                    first = min(self._errors) if self._errors else None
                    outcome.cause = self._errors[first] if first is not None else exc
            _count(outcome, stream.stats)
            scope_span.set_attribute("scope.failed_batches", len(outcome.failures))
        running.setdefault(over, [])
        self._adopt_orphans(running)
        if self._stale:
            self._warn(
                f"scope `{scope.name}`: on this resume the list {over!r} changed, and fields "
                "computed per batch (not per item) in the earlier run covered items that are no "
                "longer in it (or were computed together with them); they are kept as they "
                "were. Compute such totals after the scope, from the merged list."
            )
        if _env_flag("BATCHLINE_DEBUG"):
            log.info(
                "scope %s: merged %d batches into fields %s",
                scope.name,
                outcome.batches - len(outcome.failures),
                ", ".join(sorted(running)),
            )
        outcome.fields = running
        yield outcome

    def _fields(self, result: BatchOutcome[Any, Any]) -> dict[str, Any]:
        """The fields a batch produced, rebuilt from its item records."""
        records: list[Record | None] = result.results
        outputs, extras, skipped = read_records(records)
        self._skipped[result.batch.number] = skipped
        fields: dict[str, Any] = {self._over: outputs}
        if len(extras) == 1:
            fields.update(extras[0])
        elif extras:
            fields.update(merge_outputs(extras, on_conflict=self._conflict))
        if result.resumed_items and self._keys:
            self._check_stale(records)
        return fields

    def _check_stale(self, records: list[Record | None]) -> None:
        keys = self._keys
        for record in records:
            if type(record) is not dict:
                continue
            if any(key not in keys for key in record.get("g", ())):
                self._stale = True
            carrier = record.get("c")
            if carrier is not None and carrier not in keys:
                self._orphans[carrier] = None

    def _adopt_orphans(self, running: dict[str, Any]) -> None:
        """Batch-level fields whose batch's first item left the list: keep them.

        On a resume after the list changed, a batch of the earlier run may have lost
        its first item (which holds the fields computed for the whole batch) while
        other items of it stay. Those fields are read back from the store and merged,
        so nothing the staying items contributed is lost.
        """
        if not self._orphans or self.store is None or self.run_id is None:
            return
        found = self.store.lookup(self.run_id, list(self._orphans))
        for key in self._orphans:
            record = found.get(key)
            result = record.result if record is not None and record.status == "done" else None
            if isinstance(result, dict) and "x" in result:
                merge_into(running, result["x"], on_conflict=self._conflict)
                self._stale = True

    def _account(
        self, outcome: ScopeOutcome, result: BatchOutcome[Any, Any]
    ) -> dict[str, Any] | None:
        """Record a finished batch's failure; return the fields it produced (None if all
        its items failed). Item and batch counts are the engine's (``_count``)."""
        size = len(result.batch.items)
        failed = sum(len(failure.keys) for failure in result.failures)
        if result.failures:
            outcome.failures.append(self._failure(result))
        if failed >= size:
            return None
        number = result.batch.number
        cached = self._fields_cache.pop(number, None)
        fields = cached if cached is not None else self._fields(result)
        outcome.skipped += self._skipped.pop(number, 0)
        return fields

    def _failure(self, result: BatchOutcome[Any, Any]) -> PipelineFailure:
        """The failure of a batch, made once and cached (counted and streamed alike)."""
        number = result.batch.number
        cached = self._failures.get(number)
        if cached is None:
            first = result.failures[0]
            failed = result.failed_keys
            cached = self._failures[number] = PipelineFailure(
                scope=self.scope.name,
                batch_number=number,
                agent=self._failed_agent.get(number, self.scope.name),
                items=[item for key, item in result.batch.items if key in failed],
                error_type=first.error_type,
                message=first.message,
                attempts=first.attempts,
            )
        return cached

    def _conflict(self, path: str, old: Any, new: Any) -> None:
        """A value computed per batch was overwritten by a later batch: warn once per field."""
        if path in self._warned:
            return
        self._warned.add(path)
        self._warn(
            f"scope `{self.scope.name}`: field {path!r} has different values in different "
            f"batches; the last one wins ({_short(new)} replaces {_short(old)}), so it "
            "describes one batch, not the whole list. Batches concatenate lists and merge "
            "dicts key by key, but numbers and strings are replaced: compute totals and "
            "counts after the scope (in an agent after its terminator), from the merged list."
        )

    def _warn(self, message: str) -> None:
        log.warning(message)
        warnings.warn(message, PipelineWarning, stacklevel=2)

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


def _count(outcome: ScopeOutcome, stats: RunStats) -> None:
    """The scope's counts, as the engine counted them (final once its stream ended)."""
    outcome.batches = stats.batches
    outcome.items = stats.total
    outcome.succeeded = stats.succeeded
    outcome.failed = stats.failed
    outcome.resumed = stats.resumed
    outcome.retries = stats.retries


_FIRST = itemgetter(0)


FORCE_REPROCESS = "force_reprocess"
"""A truthy ``context["force_reprocess"]`` makes every scope ignore ``skip_if`` (as in RAAF)."""


def _forced(declared: bool, context: Mapping[str, Any]) -> bool:
    return declared or bool(context.get(FORCE_REPROCESS))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
