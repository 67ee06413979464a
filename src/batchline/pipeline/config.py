"""Batching configuration declared on agents: triggers, terminators, hooks, skipping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from batchline.engine import KeySpec
from batchline.pipeline.errors import BatchingConfigurationError

Hook = Callable[..., Any]
SkipIf = Callable[[Any, Mapping[str, Any]], bool]
LoadExisting = Callable[[Any, Mapping[str, Any]], Any]
PersistBatch = Callable[[list[Any], Mapping[str, Any]], Any]
HOOK_EVENTS = ("on_batch_start", "on_batch_complete", "on_batch_error")


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
        persist_batch: ``fn(results, context)`` after each successful batch.
        key: how scope items are keyed for resume (default: their position).
    """

    trigger: bool = False
    terminator: bool = False
    chunk_size: int | None = None
    over: str | None = None
    hooks: Mapping[str, tuple[Hook, ...]] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(HOOK_EVENTS, ()))
    )
    skip_if: SkipIf | None = None
    load_existing: LoadExisting | None = None
    persist_batch: PersistBatch | None = None
    key: KeySpec = None

    def with_hook(self, event: str, hook: Hook) -> BatchingConfig:
        """A copy with ``hook`` added for ``event``."""
        hooks = dict(self.hooks)
        hooks[event] = (*hooks.get(event, ()), hook)
        return replace(self, hooks=MappingProxyType(hooks))

    def replace(self, **changes: Any) -> BatchingConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


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
    """None or a callable."""
    if value is not None and not callable(value):
        raise BatchingConfigurationError(f"{where}: `{name}` is {value!r}; expected a callable.")
