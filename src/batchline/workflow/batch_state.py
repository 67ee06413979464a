"""``BatchState``: a batch step's state, read from (and recorded through) the engine's
state store; not a second state system."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchline.engine import ItemFailed, RetryPolicy, run_batches, split_run_id
from batchline.errors import StateError
from batchline.state import SQLiteStateStore, StateStore
from batchline.workflow.errors import TemplateError

STATE_FILE = "state.db"
# engine.content_keys: a 128-bit hash of the item's canonical JSON, `~n` for repeats.
_CONTENT_KEY = re.compile(r"[0-9a-f]{32}(?:~[0-9]+)?")


class BatchState:
    """The state of a batch step: a read-only view of what the engine committed to the
    workspace's state store (not a second state system).

    ``BatchState(workspace, name)`` (the planned API) and ``BatchState.load(workspace,
    name)`` read it; ``workspace`` is the folder holding ``state.db`` (or a
    ``StateStore``), ``name`` the step's sub-run ``RUN_ID/STEP`` or a step name (its
    latest run). ``state`` holds ``processed`` (item names, input order: a batch
    step's items by their input position, as in the step's result, unless the step
    declares ``key``; items recorded with ``mark_processed`` by the key given),
    ``results`` (their results), ``failed`` (name ->
    ``{key, error, error_type, attempts, time}``, ``key`` being the engine's item key),
    ``template_errors`` (key -> message), ``namespaces`` (``args``, ``env``, ``steps``,
    ``batch``; ``env`` is never stored, it may hold secrets) and ``stats`` (``total``,
    ``processed``, ``failed``, ``template_failures``, ``retried``, ``success_rate``).
    """

    def __init__(self, workspace: str | os.PathLike[str] | StateStore, name: str) -> None:
        self.workspace = workspace
        self.name = name
        self.run_id = name
        self.state: dict[str, Any] = _empty_state(name)
        self._pending: dict[str, Any] = {}
        self.reload()

    @classmethod
    def load(
        cls, workspace: str | os.PathLike[str] | StateStore, name: str, step: str = ""
    ) -> BatchState:
        """Read a batch step's state back from the store."""
        del step  # the step's name is the last part of `name`
        return cls(workspace, name)

    def reload(self) -> None:
        """Read the state again (items committed since are included); a workspace without
        a state file, or without this run, reads as an empty state."""
        store, owned = self._store(create=False)
        if store is None:
            return
        try:
            self.run_id = _sub_run(store, self.name)
            namespaces = self.state["namespaces"]
            self.state = (
                _read_state(store, self.run_id)
                if _exists(store, self.run_id)
                else (_empty_state(self.run_id))
            )
            for space, values in namespaces.items():  # kept from update_namespace
                if values and not self.state["namespaces"].get(space):
                    self.state["namespaces"][space] = values
        finally:
            if owned:
                store.close()

    def _store(self, *, create: bool) -> tuple[StateStore | None, bool]:
        if not isinstance(self.workspace, str | os.PathLike):
            return self.workspace, False
        path = Path(self.workspace)
        path = path if path.suffix == ".db" else path / STATE_FILE
        if not path.exists():
            if not create:
                return None, False
            path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStateStore(path), True

    # -- recording (yaml-workflow's BatchState API), committed by the engine on save() --

    def mark_processed(self, item: Any, result: Any = None) -> None:
        """Record ``item`` (its key is ``str(item)``) as processed with ``result``."""
        self._pending[str(item)] = [result, 1]

    def mark_failed(self, item: Any, error: str | BaseException) -> None:
        """Record ``item`` as failed with ``error``."""
        self._pending[str(item)] = ItemFailed(error)

    def mark_template_error(self, item: Any, error: str) -> None:
        """Record ``item`` as failed because its template did not render."""
        self._pending[str(item)] = ItemFailed(TemplateError(str(error)))

    def update_namespace(self, namespace: str, data: Mapping[str, Any]) -> None:
        """Merge ``data`` into a namespace (``args``, ``steps``, ``batch``; kept in memory:
        namespaces come from the run, and ``env`` is never stored)."""
        if namespace in self.state["namespaces"] and namespace != "env":
            self.state["namespaces"][namespace].update(data)

    def save(self) -> None:
        """Commit the recorded items to the workspace's state store, through the engine
        (one run ``name``; items recorded before keep their place), then reload."""
        if not self._pending:
            return
        store, owned = self._store(create=True)
        assert store is not None
        try:
            previous = {}
            if _exists(store, self.run_id):
                for record in store.iter_items(self.run_id):
                    previous[str(record.key)] = (
                        [record.result[0] if isinstance(record.result, list) else record.result, 1]
                        if record.status == "done"
                        else _failure(record.message or "", record.error_type, record.attempts)
                    )
            outcome = {**previous, **self._pending}
            run_batches(
                list(outcome),
                lambda batch: [outcome[key] for key in batch.items],
                key=lambda key: key,
                store=store,
                run_id=self.run_id,
                retry=RetryPolicy.none(),
                progress=False,
                handle_signals=False,
            )
            self._pending.clear()
        finally:
            if owned:
                store.close()
        self.reload()

    def reset(self) -> None:
        """Forget this batch's state (its run is deleted from the store)."""
        self._pending.clear()
        store, owned = self._store(create=False)
        if store is not None:
            try:
                if _exists(store, self.run_id):
                    store.delete_run(self.run_id)
            finally:
                if owned:
                    store.close()
        self.state = _empty_state(self.run_id)

    @property
    def step(self) -> str:
        """The batch step's name."""
        return split_run_id(self.run_id)[1] or self.run_id

    @property
    def processed(self) -> list[Any]:
        """Keys of the processed items, in input order."""
        return list(self.state["processed"])

    @property
    def results(self) -> list[Any]:
        """Results of the processed items, in input order."""
        return list(self.state["results"])

    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed items: key -> error info."""
        return dict(self.state["failed"])

    @property
    def template_errors(self) -> dict[str, str]:
        """Items whose template did not render: key -> message."""
        return dict(self.state["template_errors"])

    @property
    def stats(self) -> dict[str, Any]:
        """``total``, ``processed``, ``failed``, ``template_failures``, ``retried``,
        ``success_rate`` (percent)."""
        return dict(self.state["stats"])

    @property
    def namespaces(self) -> dict[str, Any]:
        """The namespaces the step ran with (``env`` left empty: never stored)."""
        return dict(self.state["namespaces"])

    def get_stats(self) -> dict[str, Any]:
        """yaml-workflow's name for :attr:`stats`."""
        return self.stats

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data."""
        return {"step": self.step, "run_id": self.run_id, **self.state}


def _sub_run(store: StateStore, name: str) -> str:
    """``RUN_ID/STEP`` as given, the latest sub-run of a step called ``name``, or
    ``name`` itself (a batch state of its own)."""
    if split_run_id(name)[1] is not None or _exists(store, name):
        return name
    for info in store.list_runs():
        if split_run_id(info.run_id)[1] == name:
            return info.run_id
    return name


def _exists(store: StateStore, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except StateError:
        return False
    return True


def _failure(message: str, error_type: str | None, attempts: int) -> ItemFailed:
    failed = ItemFailed(message, attempts)
    failed.error_type = error_type or "Error"
    return failed


def _empty_state(run_id: str) -> dict[str, Any]:
    return {
        "processed": [],
        "results": [],
        "failed": {},
        "template_errors": {},
        "namespaces": {
            "args": {},
            "env": {},
            "steps": {},
            "batch": {"name": split_run_id(run_id)[1] or run_id, "total": 0},
        },
        "stats": {
            "total": 0,
            "processed": 0,
            "failed": 0,
            "template_failures": 0,
            "retried": 0,
            "success_rate": 100.0,
        },
    }


def _read_state(store: StateStore, run_id: str) -> dict[str, Any]:
    processed: list[Any] = []
    results: list[Any] = []
    failed: dict[str, dict[str, Any]] = {}
    template_errors: dict[str, str] = {}
    retried = 0
    # Items keyed by their content (a batch step without `key`: a hash) are named by
    # their input position, as in the step's result; other keys (a declared `key`, or
    # those given to mark_processed/mark_failed) name their items themselves.
    seen: set[str] = set()
    for record in store.iter_items(run_id):
        name: Any = record.key
        if isinstance(name, str) and _CONTENT_KEY.fullmatch(name):
            name = record.position
            if str(name) in seen:  # the input changed between runs: positions repeat
                name = record.key
        seen.add(str(name))
        if record.status == "done":
            value, attempts = unwrap(record.result)
            processed.append(name)
            results.append(value)
            retried += max(0, attempts - 1)
            continue
        key = str(name)
        failed[key] = {
            "key": record.key,
            "error": record.message,
            "error_type": record.error_type,
            "attempts": record.attempts,
            "time": None,
        }
        if record.error_type == "TemplateError":
            template_errors[key] = record.message or ""
        retried += max(0, record.attempts - 1)
    info = store.get_run(run_id)
    total = info.total_items or (len(processed) + len(failed))
    parent_id, child = split_run_id(run_id)
    step = child or run_id
    if child is None:
        parent_id = ""
    args: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    if parent_id:
        try:
            parent = store.get_run(parent_id)
        except StateError:
            parent = None
        if parent is not None:
            args = dict(parent.meta.get("params") or {})
            for item in store.iter_items(parent_id):
                if isinstance(item.key, str) and item.key.startswith("step:") and item.result:
                    steps[item.key[5:]] = {
                        "result": item.result.get("result"),
                        "status": item.result.get("status"),
                    }
    return {
        "processed": processed,
        "results": results,
        "failed": failed,
        "template_errors": template_errors,
        "namespaces": {
            "args": args,
            "env": {},
            "steps": steps,
            "batch": {"name": step, "total": total},
        },
        "stats": {
            "total": total,
            "processed": len(processed),
            "failed": len(failed),
            "template_failures": len(template_errors),
            "retried": retried,
            "success_rate": (len(processed) / total * 100.0) if total else 100.0,
        },
    }


def unwrap(stored: Any) -> tuple[Any, int]:
    if isinstance(stored, list) and len(stored) == 2 and isinstance(stored[1], int):
        return stored[0], stored[1]
    return stored, 1


__all__ = ["BatchState", "unwrap"]
