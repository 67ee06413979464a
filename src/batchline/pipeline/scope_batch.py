"""One batch of a scope, and the per-item records it commits.

A scope batch runs the scope's agents on a chunk and returns one *record* per item,
so the engine commits (and a resume loads) each item on its own, by its key. A record
is a list, the outputs of the ``over`` field that belong to the item (usually one; none
when an agent filtered it out; several when it expanded it), or, when there is more to
say, a dict with those outputs under ``"o"`` and:

- ``"s": 1`` when ``skip_if`` skipped the item and there was nothing to load,
  ``"l": 1`` when ``load_existing`` gave its result;
- on the batch's first item (its *carrier*), what cannot be split per item: ``"x"``
  the batch's other fields, ``"a"`` the ``over`` outputs that could not be attributed,
  and ``"g"`` the keys of the items they were computed from; the other items then
  hold ``"c"``, the carrier's key.

Outputs are attributed per item by the scope's ``key`` field when every output carries
it, else by position when the agents returned one output per item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, cast

from batchline.engine import Batch, Key
from batchline.errors import StopRun
from batchline.pipeline.errors import StepError

BATCH_KEY = "_batch"
"""Inside a scope, ``context["_batch"]`` is ``{"number", "total", "size", "index"}``."""

RunSteps = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]
Record = list[Any] | dict[str, Any]

_SECOND = itemgetter(1)


@dataclass
class ScopeBatch:
    """One batch of a scope, as a picklable callable (Ray ships it to a worker)."""

    scope: str
    steps: tuple[Any, ...]
    skip_if: Any
    load_existing: Any
    persist_batch: Any
    base: dict[str, Any]
    over: str
    total: int
    run_steps: RunSteps
    key_field: str | None = None
    should_stop: Callable[[], bool] | None = None

    def __call__(self, batch: Batch[tuple[Key, Any]]) -> list[Record]:
        if self.should_stop is not None and self.should_stop():
            # A signal reached the pipeline while this scope runs off the main thread
            # (in a parallel branch): start nothing new; the batch stays pending.
            raise StopRun(f"scope `{self.scope}` interrupted before batch {batch.number}")
        chunk = list(map(_SECOND, batch.items))
        keys = list(batch.keys)
        loaded, skipped, run_offsets = self._skip(chunk)
        context = dict(self.base)
        context[self.over] = (
            chunk if len(run_offsets) == len(chunk) else [chunk[i] for i in run_offsets]
        )
        context[BATCH_KEY] = {
            "number": batch.number,
            "total": self.total,
            "size": len(chunk),
            "index": batch.index,
        }
        produced, present = self._run(context, keys, loaded, run_offsets)
        produced.pop(BATCH_KEY, None)
        outputs = produced.pop(self.over, context[self.over])
        if not isinstance(outputs, list):
            outputs = [outputs]
        per_item, unattributed = self._attribute(outputs, keys, present)
        if self.persist_batch is not None and run_offsets:
            fresh = _fresh_outputs(per_item, unattributed, run_offsets, loaded)
            try:
                self.persist_batch(fresh, _ReadOnly(context))
            except Exception as exc:
                _mark(exc, f"{self.scope}.persist_batch")
                raise
        return _records(keys, per_item, unattributed, produced, skipped, loaded)

    def _skip(self, chunk: list[Any]) -> tuple[dict[int, Any], set[int], list[int]]:
        """Loaded results by offset, skipped offsets, and the offsets to run."""
        if self.skip_if is None:
            return {}, set(), list(range(len(chunk)))
        view = _ReadOnly(self.base)
        loaded: dict[int, Any] = {}
        skipped: set[int] = set()
        run_offsets: list[int] = []
        for offset, item in enumerate(chunk):
            if not self.skip_if(item, view):
                run_offsets.append(offset)
                continue
            existing = self.load_existing(item, view) if self.load_existing else None
            if existing is None:
                skipped.add(offset)
            else:
                loaded[offset] = existing
        return loaded, skipped, run_offsets

    def _run(
        self,
        context: dict[str, Any],
        keys: list[Key],
        loaded: dict[int, Any],
        run_offsets: list[int],
    ) -> tuple[dict[str, Any], list[int]]:
        """Run the agents; loaded results join the list after the trigger.

        Returns the fields produced and the offsets of the items that reached the end
        (in order), used to attribute outputs by position.
        """
        produced: dict[str, Any] = {}
        if not loaded:
            if run_offsets:
                produced = self._steps(self.steps, context)
            return produced, run_offsets
        present = sorted([*run_offsets, *loaded])
        if run_offsets:
            produced = self._steps(self.steps[:1], context)
            fresh = produced.get(self.over, context[self.over])
            context[self.over] = self._join(fresh, keys, loaded, run_offsets)
        else:
            context[self.over] = [loaded[i] for i in sorted(loaded)]
        produced[self.over] = context[self.over]
        if len(self.steps) > 1:
            produced.update(self._steps(self.steps[1:], context))
        return produced, present

    def _join(
        self,
        fresh: Any,
        keys: list[Key],
        loaded: dict[int, Any],
        run_offsets: list[int],
    ) -> list[Any]:
        """The trigger's outputs and the loaded results, in item order where known."""
        fresh = fresh if isinstance(fresh, list) else [fresh]
        by_offset: dict[int, list[Any]] = {offset: [value] for offset, value in loaded.items()}
        if len(fresh) == len(run_offsets):
            for offset, value in zip(run_offsets, fresh, strict=True):
                by_offset[offset] = [value]
        else:
            attributed = self._by_key(fresh, keys)
            if attributed is None:
                # Neither aligned nor keyed: loaded results follow the fresh outputs.
                return [*fresh, *(loaded[i] for i in sorted(loaded))]
            for offset, values in attributed.items():
                by_offset.setdefault(offset, []).extend(values)
        return [value for offset in sorted(by_offset) for value in by_offset[offset]]

    def _attribute(
        self, outputs: list[Any], keys: list[Key], present: list[int]
    ) -> tuple[list[list[Any]], list[Any]]:
        """Outputs per item offset, and those that belong to no single item."""
        size = len(keys)
        attributed = self._by_key(outputs, keys)
        if attributed is not None:
            return [attributed.get(offset, []) for offset in range(size)], []
        if len(outputs) == len(present):
            if len(present) == size:
                return [[value] for value in outputs], []
            per_item: list[list[Any]] = [[] for _ in range(size)]
            for offset, value in zip(present, outputs, strict=True):
                per_item[offset] = [value]
            return per_item, []
        return [[] for _ in range(size)], outputs

    def _by_key(self, outputs: list[Any], keys: list[Key]) -> dict[int, list[Any]] | None:
        """Outputs grouped by the offset of the item whose key they carry, if all do."""
        field = self.key_field
        if field is None or not outputs:
            return None
        offsets = {key: offset for offset, key in enumerate(keys)}
        grouped: dict[int, list[Any]] = {}
        for value in outputs:
            if not isinstance(value, Mapping) or field not in value:
                return None
            offset = offsets.get(value[field])
            if offset is None:
                return None
            grouped.setdefault(offset, []).append(value)
        return grouped

    def _steps(self, steps: tuple[Any, ...], context: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.run_steps(steps, context)
        except StepError as exc:
            _mark(exc, exc.step_name)
            raise
        except Exception as exc:
            _mark(exc, self.scope)
            raise


def _mark(exc: BaseException, agent: str) -> None:
    """Remember which agent raised (kept when already set by the agent call itself)."""
    if not hasattr(exc, "batchline_agent"):
        with contextlib.suppress(AttributeError):  # exceptions with __slots__
            exc.batchline_agent = agent  # type: ignore[attr-defined]


def _fresh_outputs(
    per_item: list[list[Any]],
    unattributed: list[Any],
    run_offsets: list[int],
    loaded: dict[int, Any],
) -> list[Any]:
    """The outputs of the items that ran in this batch (not the loaded ones)."""
    fresh = [value for offset in run_offsets for value in per_item[offset]]
    if unattributed:
        loaded_ids = {id(value) for value in loaded.values()}
        fresh.extend(value for value in unattributed if id(value) not in loaded_ids)
    return fresh


def _records(
    keys: list[Key],
    per_item: list[list[Any]],
    unattributed: list[Any],
    extras: dict[str, Any],
    skipped: set[int],
    loaded: dict[int, Any],
) -> list[Record]:
    records: list[Record] = list(per_item)
    if not (extras or unattributed or skipped or loaded):
        return records
    for offset in skipped:
        records[offset] = {"o": per_item[offset], "s": 1}
    for offset in loaded:
        records[offset] = {"o": per_item[offset], "l": 1}
    if extras or unattributed:
        carrier = _as_dict(records[0])
        if extras:
            carrier["x"] = extras
        if unattributed:
            carrier["a"] = unattributed
        carrier["g"] = list(keys)
        records[0] = carrier
        for offset in range(1, len(records)):
            other = _as_dict(records[offset])
            other["c"] = keys[0]
            records[offset] = other
    return records


def _as_dict(record: Record) -> dict[str, Any]:
    return record if isinstance(record, dict) else {"o": record}


# -- reading records back -------------------------------------------------------------


def read_records(
    records: Sequence[Record | None],
) -> tuple[list[Any], list[dict[str, Any]], int]:
    """A batch's committed records, read back in one pass.

    Returns:
        the ``over`` outputs in item order, the batch-level field parts (one per
        carrier), and how many items ``skip_if`` skipped with nothing to load.
    """
    if dict not in set(map(type, records)) and None not in records:
        return list(chain.from_iterable(cast("Sequence[list[Any]]", records))), [], 0
    outputs: list[Any] = []
    extras: list[dict[str, Any]] = []
    skipped = 0
    for record in records:
        if isinstance(record, dict):
            outputs.extend(record.get("a", ()))
            outputs.extend(record["o"])
            if "x" in record:
                extras.append(record["x"])
            skipped += bool(record.get("s"))
        elif record is not None:
            outputs.extend(record)
    return outputs, extras, skipped


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
