"""Batching configuration declared on agents: triggers, terminators, hooks, skipping."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any

from batchline.engine import KeySpec
from batchline.pipeline.errors import BatchingConfigurationError

Hook = Callable[..., Any]
SkipIf = Callable[[Any, Mapping[str, Any]], bool]
LoadExisting = Callable[[Any, Mapping[str, Any]], Any]
PersistBatch = Callable[[list[Any], Mapping[str, Any]], Any]
HOOK_EVENTS = ("on_batch_start", "on_batch_complete", "on_batch_error")

HOOK_SIGNATURES = {
    "on_batch_start": ("progress",),
    "on_batch_complete": ("progress", "results"),
    "on_batch_error": ("progress", "error"),
    "skip_if": ("item", "context"),
    "load_existing": ("item", "context"),
    "persist_batch": ("results", "context"),
}
"""The positional arguments each callback is called with (checked when it is declared)."""


class HookTable(Mapping[str, tuple[Hook, ...]]):
    """Event name -> hooks, read-only (and, being immutable, copied as itself)."""

    __slots__ = ("_hooks",)

    def __init__(self, hooks: Mapping[str, tuple[Hook, ...]] | None = None) -> None:
        table: dict[str, tuple[Hook, ...]] = dict.fromkeys(HOOK_EVENTS, ())
        table.update(hooks or {})
        self._hooks: dict[str, tuple[Hook, ...]] = table

    def __getitem__(self, event: str) -> tuple[Hook, ...]:
        return self._hooks[event]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def __repr__(self) -> str:
        return f"HookTable({ {k: len(v) for k, v in self._hooks.items()} })"

    def __deepcopy__(self, memo: dict[int, Any]) -> HookTable:
        return self  # immutable: dataclasses.asdict and copy.deepcopy share it

    def __reduce__(self) -> tuple[Any, ...]:
        return (HookTable, (self._hooks,))

    def added(self, event: str, hook: Hook) -> HookTable:
        """A copy with ``hook`` added for ``event``."""
        return HookTable({**self._hooks, event: (*self._hooks.get(event, ()), hook)})


@dataclass(frozen=True)
class BatchingConfig:
    """How an agent takes part in batching (frozen; declarations make new ones).

    Attributes:
        trigger: the agent starts a batching scope.
        terminator: the agent ends the scope it is in (it is still inside it).
        chunk_size: items per batch.
        over: the context field holding the list to batch (None: the only list field).
        hooks: event name -> callbacks, for ``on_batch_start`` / ``_complete`` / ``_error``.
        skip_if: ``fn(item, context) -> bool``; True skips the item.
        load_existing: ``fn(item, context) -> result | None`` for a skipped item.
        persist_batch: ``fn(results, context)`` with each batch's newly computed items,
            before the batch is committed.
        key: how scope items are keyed for resume: a field name (``"id"``), a callable
            ``item -> str | int``, or None for a hash of the item's canonical JSON.
        runs_to_end: the scope deliberately has no terminator and runs to the end of
            its sequence.
        force_reprocess: ignore ``skip_if``: every item runs again.
    """

    trigger: bool = False
    terminator: bool = False
    chunk_size: int | None = None
    over: str | None = None
    hooks: Mapping[str, tuple[Hook, ...]] = dc_field(default_factory=HookTable)
    skip_if: SkipIf | None = None
    load_existing: LoadExisting | None = None
    persist_batch: PersistBatch | None = None
    key: KeySpec = None
    runs_to_end: bool = False
    force_reprocess: bool = False

    @property
    def field(self) -> str | None:
        """The list field batched (the design's name for ``over``)."""
        return self.over

    def with_hook(self, event: str, hook: Hook) -> BatchingConfig:
        """A copy with ``hook`` added for ``event``."""
        table = self.hooks if isinstance(self.hooks, HookTable) else HookTable(self.hooks)
        return replace(self, hooks=table.added(event, hook))

    def replace(self, **changes: Any) -> BatchingConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (callables by name), e.g. for logs or JSON."""
        key = self.key if self.key is None or isinstance(self.key, str) else name_of(self.key)
        return {
            "trigger": self.trigger,
            "terminator": self.terminator,
            "chunk_size": self.chunk_size,
            "over": self.over,
            "key": key,
            "runs_to_end": self.runs_to_end,
            "force_reprocess": self.force_reprocess,
            "skip_if": name_of(self.skip_if),
            "load_existing": name_of(self.load_existing),
            "persist_batch": name_of(self.persist_batch),
            "hooks": {event: [name_of(h) for h in hooks] for event, hooks in self.hooks.items()},
        }


def name_of(value: object) -> str | None:
    """A callable's qualified name (None for None)."""
    if value is None:
        return None
    return str(getattr(value, "__qualname__", None) or getattr(value, "__name__", repr(value)))


def check_chunk_size(chunk_size: object, where: str) -> int:
    """A positive integer, or ``BatchingConfigurationError`` naming ``where``."""
    if type(chunk_size) is not int or chunk_size < 1:
        raise BatchingConfigurationError(
            f"{where}: `chunk_size` is {chunk_size!r} ({type(chunk_size).__name__}); expected "
            "a positive integer, e.g. chunk_size=50."
        )
    return chunk_size


def check_over(over: object, where: str) -> str | None:
    """None or a non-empty string, or ``BatchingConfigurationError`` naming ``where``."""
    if over is None:
        return None
    if not isinstance(over, str) or not over.strip():
        raise BatchingConfigurationError(
            f"{where}: `over` is {over!r}; expected the name of the context field holding the "
            "list to batch (a non-empty string), or None to use the only list field."
        )
    return over


def check_callable(name: str, value: object, where: str) -> None:
    """None or a callable that accepts the arguments ``name`` is called with."""
    if value is None:
        return
    if not callable(value):
        raise BatchingConfigurationError(f"{where}: `{name}` is {value!r}; expected a callable.")
    check_arity(name, value, where)


def check_arity(name: str, hook: Callable[..., Any], where: str) -> None:
    """Raise when ``hook`` cannot take the positional arguments ``name`` is called with.

    A hook with the wrong signature would otherwise fail on every call, and since hook
    errors are logged, not raised, it would silently never run.
    """
    expected = HOOK_SIGNATURES[name]
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return
    try:
        signature.bind(*expected)
    except TypeError as exc:
        wanted = ", ".join(expected)
        label = str(getattr(hook, "__name__", type(hook).__name__))
        suggested = "hook" if label == "<lambda>" else label
        raise BatchingConfigurationError(
            f"{where}: the `{name}` hook `{label}{signature}` cannot be called as "
            f"{name}({wanted}) ({exc}), so it would never run. Give it the signature "
            f"def {suggested}({wanted}): ... (extra parameters need defaults)."
        ) from None
