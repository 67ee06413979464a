"""The ``batch`` task: a nested task over a list, in chunks, retried and resumed per item.

The list is handed to the engine (``stream_batches``), which chunks, schedules, commits
each chunk in one transaction and resumes: a re-run runs only missing and failed items.
Inside a chunk, items run concurrently on a shared pool of ``max_concurrency`` threads,
each rendered on its own (after ``batch`` exists, so no ``{% raw %}`` is ever needed) and
retried on its own; an item that still fails, or whose template does not render, is
recorded as failed without failing its neighbours.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchline.backends.threads import DaemonThreadPool
from batchline.engine import (
    Attempts,
    Batch,
    ItemFailed,
    ItemNotRun,
    ItemResults,
    RetryPolicy,
    abandon_requested,
    aretry_call,
    child_run_id,
    content_keys,
    item_outcome,
    retry_call,
    run_coroutine,
    stop_event,
    stop_requested,
    stream_batches,
)
from batchline.errors import BatchRunError, ConfigurationError, StopRun
from batchline.redact import Redactor
from batchline.workflow.batch_context import BatchContext
from batchline.workflow.batch_state import BatchState, unwrap
from batchline.workflow.errors import TaskError, TemplateError
from batchline.workflow.loopthread import LoopThread
from batchline.workflow.results import lists_for_sets
from batchline.workflow.schema import RetrySpec, batch_retry_problem, did_you_mean
from batchline.workflow.stepinputs import render_inputs
from batchline.workflow.tasks import TaskConfig, get_task, load_function, register_task

BATCH_INPUTS = frozenset(
    {
        "items",
        "chunk_size",
        "batch_size",
        "max_concurrency",
        "max_workers",
        "retry",
        "task",
        "mode",
        "key",
        "arg_name",
    }
)


def _item_result(
    done: Attempts,
    redactor: Redactor | None = None,
    client_retries: int = 0,
    stopping: bool = False,
) -> Any:
    """A stored item result ``[value, attempts]``, its failure (``ItemFailed``), or
    ``ItemNotRun``; secret values redacted. ``client_retries`` are the requests a task
    repeated inside one attempt (an LLM client's 5xx and 429s), counted as attempts so they
    show in the ``retried`` stat.

    An item that failed while the run was stopping (its retries cut short, or its command
    killed by a second signal) is left pending, never recorded as failed because of the
    signal: the resume runs it.

    Raises:
        StopRun: the task asked the run to stop (a budget): the item is not failed, its
            chunk stays missing and a resume runs it.
    """
    if isinstance(done.error, StopRun):
        raise done.error
    if done.error is not None and stopping:
        return ItemNotRun()
    done = Attempts(done.value, done.error, done.attempts + client_retries)
    outcome = item_outcome(done, _wrap)
    if redactor:
        if isinstance(outcome, ItemFailed):
            outcome.message = redactor.text(outcome.message)
        else:
            outcome = redactor.data(outcome)
    return outcome


def _wrap(value: Any, attempts: int) -> list[Any]:
    return [lists_for_sets(value), attempts]  # a set is kept as a list, as step results are


class _NotStarted(BaseException):
    """An async item whose turn came after the run was asked to stop."""


def _signal_stop() -> threading.Event:
    """Set by the first SIGINT/SIGTERM: cuts an item's retry wait short."""
    return stop_event()


def _stop_names() -> set[str]:
    """Class names of ``StopRun`` and its subclasses: outcomes failed by them were stops."""
    names, todo = set(), [StopRun]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def _policy(spec: Any, step: str) -> RetryPolicy:
    if spec is None:
        return RetryPolicy.none()
    if isinstance(spec, RetrySpec):
        return spec.policy()
    problem = batch_retry_problem(spec)
    if problem:
        raise TaskError(f"step `{step}`: {problem}", "batch")
    return RetrySpec.model_validate(spec).policy()


def _aliased(config: TaskConfig, key: str, alias: str, default: int) -> int:
    """An input also accepted under yaml-workflow's name (both at once is an error)."""
    if key in config.inputs and alias in config.inputs:
        raise TaskError(
            f"step `{config.name}`: `{key}` and `{alias}` are the same input (`{alias}` is "
            f"yaml-workflow's name); give one",
            "batch",
        )
    return _positive(config, alias if alias in config.inputs else key, default)


def _key_function(
    config: TaskConfig, field_name: Any, items: Sequence[Any]
) -> Callable[[tuple[int, Any]], Any]:
    """Items keyed by the field ``key`` names (every item must have it: a missing one is
    an error naming the item and the field), else by their content (``content_keys``: a
    resume after the list changed runs the new items and repeats none); items that are not
    JSON fall back to their positions."""
    if not field_name:
        try:
            by_content = content_keys(items)
        except ConfigurationError:
            return lambda pair: pair[0]
        return lambda pair: by_content[pair[0]]
    name = str(field_name)

    def keyed(pair: tuple[int, Any]) -> Any:
        index, item = pair
        if isinstance(item, Mapping) and name in item:
            value = item[name]
            if isinstance(value, str | int) and not isinstance(value, bool):
                return value
            raise TaskError(
                f"step `{config.name}`: item {index} has `{name}` = {value!r}; a key must be "
                "text or an integer",
                "batch",
            )
        fields = sorted(item) if isinstance(item, Mapping) else None
        raise TaskError(
            f"step `{config.name}`: item {index} has no field `{name}` (key: {name}); "
            + (
                f"its fields: {', '.join(map(str, fields))}.{did_you_mean(name, map(str, fields))}"
                if fields is not None
                else f"it is a {type(item).__name__}, not a mapping"
            )
            + " Give every item that field, or drop `key` to key items by position.",
            "batch",
        )

    return keyed


def _positive(config: TaskConfig, key: str, default: int) -> int:
    value = config.inputs.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise TaskError(
            f"step `{config.name}`: `{key}` is {value!r}; expected a positive integer", "batch"
        )
    return value


@dataclass
class ChunkRunner:
    """Runs the nested task over one chunk: rendered per item, retried per item.

    Picklable (only plain data and the task's name), so the Ray backend can ship it to a
    worker; the thread pool and the stop event are made where it runs.
    """

    step: str
    nested_type: str
    nested_inputs: dict[str, Any]
    context: BatchContext
    workspace: Any
    base_dir: Any
    settings: dict[str, Any]
    policy: RetryPolicy
    mode: str
    inner: int
    arg_name: str | None = None
    # async items of every chunk share one loop and one gate of `inner` (set on the local
    # backend; elsewhere each chunk runs on its own loop with its own gate)
    shared_loop: bool = False
    _local: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_local"] = {}
        return state

    def stop_event(self) -> threading.Event:
        """Set to stop retrying (a run being interrupted)."""
        event: threading.Event = self._local.setdefault("stop", threading.Event())
        return event

    def close(self) -> None:
        """Shut the item pool and the shared loop down (without waiting for abandoned
        items)."""
        pool = self._local.pop("pool", None)
        if pool is not None:
            pool.shutdown(wait=not abandon_requested(), cancel_futures=True)
        loop: LoopThread | None = self._local.pop("loop", None)
        if loop is not None:
            loop.close(getattr(get_task(self.nested_type), "aclose", None),
                       wait=not abandon_requested())  # fmt: skip

    def _loop(self) -> LoopThread:
        with _POOL_LOCK:
            loop: LoopThread | None = self._local.get("loop")
            if loop is None:
                loop = self._local["loop"] = LoopThread(f"batchline-{self.step}-loop")
        return loop

    def _gate(self) -> asyncio.Semaphore:
        """The step's gate (made on the shared loop, by the coroutines that use it)."""
        gate: asyncio.Semaphore | None = self._local.get("gate")
        if gate is None:
            gate = self._local["gate"] = asyncio.Semaphore(self.inner)
        return gate

    def _pool(self) -> DaemonThreadPool | None:
        if self.inner <= 1:
            return None
        with _POOL_LOCK:
            pool: DaemonThreadPool | None = self._local.get("pool")
            if pool is None:
                pool = DaemonThreadPool(
                    int(self.settings.get("max_concurrency") or self.inner),
                    thread_name_prefix=f"batchline-{self.step}",
                )
                self._local["pool"] = pool
        return pool

    def _prepare(self, inputs_context: dict[str, Any]) -> TaskConfig | ItemFailed:
        try:
            inputs = render_inputs(
                self.nested_type,
                self.nested_inputs,
                inputs_context,
                step=self.step,
                max_size=self.settings.get("max_render_size"),
            )
        except TemplateError as exc:
            failed = ItemFailed(exc, 0)
            redactor = self.settings.get("redactor")
            if redactor:
                failed.message = redactor.text(failed.message)
            return failed
        if not isinstance(inputs, dict):
            return ItemFailed(TaskError("nested inputs must be a mapping"), 0)
        if self.arg_name and "item" in inputs_context.get("batch", {}):
            inputs[self.arg_name] = inputs_context["batch"]["item"]
        settings = {**self.settings, "client_retries": [0]}  # the task adds its own retries
        return TaskConfig(
            name=self.step,
            type=self.nested_type,
            inputs=inputs,
            workspace=self.workspace,
            base_dir=self.base_dir,
            context=inputs_context,
            raw_inputs=self.nested_inputs,
            settings=settings,
        )

    def _stopping(self) -> bool:
        """The run was asked to stop: start no new item (it stays pending for the resume)."""
        return stop_requested() or self.stop_event().is_set()

    def run_one(self, inputs_context: dict[str, Any]) -> Any:
        """One item (or chunk), with its retries; ``ItemNotRun`` once the run is stopping."""
        if self._stopping():
            return ItemNotRun()
        task_config = self._prepare(inputs_context)
        if isinstance(task_config, ItemFailed):
            return task_config
        handler = get_task(self.nested_type)
        done = retry_call(lambda: handler(task_config), self.policy, stop=_signal_stop())
        return _item_result(
            done,
            self.settings.get("redactor"),
            task_config.settings["client_retries"][0],
            self._stopping(),
        )

    async def arun_one(self, inputs_context: dict[str, Any], gate: asyncio.Semaphore) -> Any:
        """One item of an async task, with its retries."""
        if self._stopping():
            return ItemNotRun()
        task_config = self._prepare(inputs_context)
        if isinstance(task_config, ItemFailed):
            return task_config
        handler = get_task(self.nested_type)

        async def attempt() -> Any:
            async with gate:
                if self._stopping():
                    raise _NotStarted
                return await handler(task_config)

        try:
            done = await aretry_call(attempt, self.policy, stop=_signal_stop())
        except _NotStarted:
            return ItemNotRun()
        return _item_result(
            done,
            self.settings.get("redactor"),
            task_config.settings["client_retries"][0],
            self._stopping(),
        )

    async def _arun_chunk(self, batch: Batch[tuple[int, Any]]) -> list[Any]:
        shared = self.shared_loop  # its connections stay open for the next chunk
        gate = self._gate() if shared else asyncio.Semaphore(self.inner)
        try:
            return list(
                await asyncio.gather(
                    *(
                        self.arun_one(self.context.create_item_context(item, index, key), gate)
                        for (index, item), key in zip(batch.items, batch.keys, strict=True)
                    )
                )
            )
        finally:
            closer = getattr(get_task(self.nested_type), "aclose", None)
            if closer is not None and not shared:  # (close() ends the shared loop's)
                await closer()

    def __batchline_preflight__(self) -> None:
        """Load what every item needs, where the batches run (a Ray worker checks it once).

        Raises:
            TaskLoadError: a ``python`` task's ``function`` (a literal name) does not load.
        """
        get_task(self.nested_type)
        target = self.nested_inputs.get("function")
        if self.nested_type == "python" and isinstance(target, str) and "{" not in target:
            load_function(self.step, target)

    def __call__(self, batch: Batch[tuple[int, Any]]) -> ItemResults:
        """Per-item outcomes of the chunk: a result the store refuses (not JSON) fails
        only its item."""
        return ItemResults(self._outcomes(batch))

    def _outcomes(self, batch: Batch[tuple[int, Any]]) -> list[Any]:
        is_async = inspect.iscoroutinefunction(get_task(self.nested_type))
        if is_async and self.mode == "item":
            if self.shared_loop:
                return list(self._loop().run(self._arun_chunk(batch)))
            return list(run_coroutine(self._arun_chunk(batch)))
        if self.mode == "chunk":
            values = [item for _, item in batch.items]
            ctx = self.context.create_chunk_context(values, batch.index)
            result = (
                run_coroutine(self.arun_one(ctx, asyncio.Semaphore(1)))
                if is_async
                else self.run_one(ctx)
            )
            if isinstance(result, ItemFailed | ItemNotRun):
                return [result] * len(values)  # the chunk failed (or never ran): all its items
            return [result, *([None] * (len(values) - 1))]
        pool = self._pool()
        if pool is None:
            return [
                self.run_one(self.context.create_item_context(item, index, key))
                for (index, item), key in zip(batch.items, batch.keys, strict=True)
            ]
        futures = [
            pool.submit(self.run_one, self.context.create_item_context(item, index, key))
            for (index, item), key in zip(batch.items, batch.keys, strict=True)
        ]
        return [future.result() for future in futures]


_POOL_LOCK = threading.Lock()


@register_task("batch", inputs=BATCH_INPUTS)
def batch_task(config: TaskConfig) -> dict[str, Any]:
    """Run ``inputs.task`` for every item of ``inputs.items`` (see the module docstring).

    Inputs: ``items`` (a list), ``chunk_size`` (default 20), ``max_concurrency`` (default
    the workflow's), ``retry`` (``max_attempts``, ``delay``, ``backoff``), ``task`` (the
    nested task: ``{task, inputs}``), ``mode`` (``item`` or ``chunk``), ``key`` (a field
    naming each item for resume; default its position).
    Result: ``{"results": [...], "stats": {...}, "failed": {...}}``.
    """
    items = config.require("items")
    if not isinstance(items, list):
        raise TaskError(
            f"step `{config.name}`: `items` is {type(items).__name__}; expected a list "
            '(e.g. items: "{{ steps.list.result }}")',
            "batch",
        )
    unknown = sorted(set(config.inputs) - BATCH_INPUTS)
    if unknown:
        raise TaskError(
            f"step `{config.name}`: the batch task has no input `{unknown[0]}`."
            f"{did_you_mean(unknown[0], BATCH_INPUTS)} Its inputs: "
            f"{', '.join(sorted(BATCH_INPUTS))}.",
            "batch",
        )
    chunk_size = _aliased(config, "chunk_size", "batch_size", 20)
    concurrency = _aliased(
        config, "max_concurrency", "max_workers", int(config.settings.get("max_concurrency", 4))
    )
    mode = str(config.inputs.get("mode", "item"))
    if mode not in ("item", "chunk"):
        raise TaskError(
            f"step `{config.name}`: `mode` is {mode!r}; expected item or chunk", "batch"
        )
    nested = config.raw_inputs.get("task")
    if not isinstance(nested, Mapping) or "task" not in nested:
        raise TaskError(f"step `{config.name}`: `task` must name the nested task", "batch")
    nested_type = str(nested["task"])
    if nested_type == "batch":
        raise TaskError(f"step `{config.name}`: a batch task cannot nest another batch", "batch")
    handler = get_task(nested_type)
    nested_inputs = nested.get("inputs") or {}
    policy = _policy(config.inputs.get("retry"), config.name)
    arg_name = config.inputs.get("arg_name")
    if arg_name is not None and (not isinstance(arg_name, str) or not arg_name.isidentifier()):
        raise TaskError(
            f"step `{config.name}`: `arg_name` is {arg_name!r}; expected a name such as item",
            "batch",
        )
    context = BatchContext(
        config.context,
        name=config.name,
        total=len(items),
        chunk_size=chunk_size,
        arg_name=arg_name,
    )
    declared_key = bool(config.inputs.get("key"))
    keyed = _key_function(config, config.inputs.get("key"), items)
    is_async = inspect.iscoroutinefunction(handler)
    # `max_concurrency` items in flight: as many chunks at once as that allows (items of
    # a chunk then run one after another, with no pool overhead), and a pool inside each
    # chunk only when there are fewer chunks than the concurrency asked for.
    chunks = max(1, math.ceil(len(items) / chunk_size))
    outer = min(concurrency, chunks)
    inner = max(1, math.ceil(concurrency / chunks))
    backend = config.settings.get("backend")
    local = getattr(backend, "name", "local") == "local"
    shared_loop = False
    if is_async:
        # Async tasks (llm): 64 in flight are 64 coroutines, not 64 threads. Locally every
        # chunk's items run on one loop behind one gate of `max_concurrency`, with one chunk
        # more in flight than the gate needs, so the next chunk's requests take the slots
        # the last one's tail frees. Elsewhere (Ray) each chunk has its own loop and a share
        # of the gate, so the cluster as a whole keeps to `max_concurrency`.
        width = min(chunk_size, concurrency)
        outer = min(chunks, max(1, math.ceil(concurrency / width)))
        inner = math.ceil(concurrency / outer)
        if local and mode == "item":
            shared_loop, outer, inner = True, min(chunks, outer + 1), concurrency
    settings: dict[str, Any] = {
        "max_concurrency": concurrency,
        "llm_model": config.settings.get("llm_model"),
        "llm_prices": config.settings.get("llm_prices"),
        "confine_paths": config.settings.get("confine_paths", False),
        "max_render_size": config.settings.get("max_render_size"),
        "redactor": config.settings.get("redactor"),
    }
    collects = getattr(handler, "collects", None)
    if callable(collects) and collects(nested_inputs):
        # The nested task gathers its calls into provider jobs (llm, mode: batch): every
        # chunk in flight at once, so the requests of the step share as few jobs as the
        # provider allows; the task keeps its jobs in a child of the step's run.
        outer, inner, shared_loop = min(chunks, 64), chunk_size, False
        settings["store"] = config.settings.get("store")
        settings["run_id"] = config.settings.get("run_id")
    run_chunk = ChunkRunner(
        step=config.name,
        nested_type=nested_type,
        nested_inputs=dict(nested_inputs),
        context=context,
        workspace=config.workspace,
        base_dir=config.base_dir,
        settings=settings,
        policy=policy,
        mode=mode,
        inner=inner,
        arg_name=arg_name,
        shared_loop=shared_loop,
    )
    stop = run_chunk.stop_event()
    if local:
        run_chunk.__batchline_preflight__()  # Ray checks it in a worker, before the run

    store = config.settings.get("store")
    run_id = config.settings.get("run_id")
    results: list[Any] = [None] * len(items)
    failed: dict[str, dict[str, Any]] = {}
    # The engine counts items (processed, failed, resumed); this step adds what only it
    # knows: item-level retries and template failures.
    extra = {"template_failures": 0, "retried": 0}
    stream = stream_batches(
        list(enumerate(items)),
        run_chunk,
        chunk_size=chunk_size,
        key=keyed,
        store=store,
        run_id=child_run_id(run_id, config.name) if run_id else None,
        max_concurrency=outer,
        backend=backend,
        retry=RetryPolicy.none(),
        progress=config.settings.get("progress"),
        handle_signals=bool(config.settings.get("handle_signals", True)),
    )

    def step_stats() -> dict[str, int]:
        counted = stream.stats
        return {
            "total": len(items),
            "processed": counted.succeeded,
            "failed": counted.failed,
            "template_failures": extra["template_failures"],
            "retried": extra["retried"],
            "resumed": counted.resumed,
        }

    on_item = config.settings.get("on_progress")
    failed_positions: set[int] = set()
    stopped: BatchRunError | None = None
    stop_names = _stop_names()
    stop_reason: str | None = None
    try:
        for outcome in stream:
            failed_keys = {}
            for failure in outcome.failures:
                if failure.error_type in stop_names:  # stopped, not failed: left missing
                    stop_reason = stop_reason or failure.message
                    continue
                for key in failure.keys:
                    failed_keys[key] = failure
            stopped_batch = any(f.error_type in stop_names for f in outcome.failures)
            for (position, _), key, stored in zip(
                outcome.batch.items, outcome.batch.keys, outcome.results, strict=True
            ):
                if stopped_batch and key not in failed_keys:
                    continue
                if key in failed_keys:
                    failure = failed_keys[key]
                    # Named by the declared key, else by position (like `results`).
                    failed[str(key) if declared_key else str(position)] = {
                        "key": key,
                        "error": failure.message,
                        "error_type": failure.error_type,
                        "attempts": failure.attempts,
                        "time": time.time(),
                    }
                    failed_positions.add(position)
                    extra["retried"] += max(0, failure.attempts - 1)
                    if failure.error_type == "TemplateError":
                        extra["template_failures"] += 1
                    continue
                value, attempts = unwrap(stored)
                results[position] = value
                extra["retried"] += max(0, attempts - 1)
            if callable(on_item):
                on_item(step_stats())
    except BatchRunError as exc:  # an interruption: state is committed, say so upstream
        stopped = exc
    finally:
        stop.set()
        run_chunk.close()
    if stopped is not None:
        if stop_reason is not None:  # a budget (or another StopRun): resumable, nothing failed
            so_far = step_stats()
            raise StopRun(
                f"step `{config.name}` stopped after {so_far['processed']} of {so_far['total']} "
                f"items ({so_far['failed']} failed): {stop_reason}"
            ) from stopped
        raise stopped
    if mode == "chunk":
        results = [r for r in results if r is not None]
    stats: dict[str, Any] = step_stats()
    stats["success_rate"] = (
        (stats["processed"] / stats["total"] * 100.0) if stats["total"] else 100.0
    )
    processed = [item for index, item in enumerate(items) if index not in failed_positions]
    return {"results": results, "processed": processed, "stats": stats, "failed": failed}


__all__ = ["BATCH_INPUTS", "BatchContext", "BatchState", "ChunkRunner", "batch_task"]
