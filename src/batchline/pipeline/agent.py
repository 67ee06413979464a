"""Agents: units of a pipeline, declared as classes (or plain functions).

An agent reads a read-only context mapping and returns a dict of new fields. Classes
compose with ``>>`` (sequence) and ``|`` (parallel) at class level, through the
``AgentMeta`` metaclass, and so do instances and plain functions. Batching
configuration lives on the class as a frozen ``BatchingConfig``; declaring something
replaces it (under a lock), and subclasses inherit it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from batchline.engine import KeySpec
from batchline.pipeline.config import (
    HOOK_EVENTS,
    BatchingConfig,
    Hook,
    LoadExisting,
    PersistBatch,
    SkipIf,
    check_callable,
    check_chunk_size,
    check_over,
)
from batchline.pipeline.errors import BatchingConfigurationError

if TYPE_CHECKING:
    from batchline.pipeline.flow import Node

_CONFIG_LOCK = threading.RLock()
A = TypeVar("A", bound="type[Agent]")
H = TypeVar("H", bound=Hook)


class AgentMeta(type):
    """Lets agent classes compose: ``Discover >> Enrich``, ``A | B``."""

    def __rshift__(cls, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415 - flow imports agent

        return to_node(cls) >> other

    def __rrshift__(cls, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(other) >> to_node(cls)

    def __or__(cls, other: object) -> Node:  # type: ignore[override]
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(cls) | other

    def __ror__(cls, other: object) -> Node:  # type: ignore[override]
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(other) | to_node(cls)


class Agent(metaclass=AgentMeta):
    """Base class of pipeline agents.

    Subclasses set ``requires`` (fields they read) and ``provides`` (fields they
    return) and implement ``run(context) -> dict`` (plain or ``async def``). The
    context is a read-only mapping; inside a batching scope its ``over`` field is the
    current chunk and ``context["_batch"]`` holds ``number``, ``total``, ``size`` and
    ``index`` of the batch.
    """

    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    batching_config: BatchingConfig = BatchingConfig()

    def run(self, context: Mapping[str, Any]) -> Any:
        """Compute new fields from ``context``; return them as a dict."""
        raise NotImplementedError(f"{type(self).__name__}.run(context) is not implemented")

    @property
    def name(self) -> str:
        """The agent's name in logs, spans and failures (its class name)."""
        return type(self).__name__

    # -- composition on instances ---------------------------------------------------

    def __rshift__(self, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(self) >> other

    def __rrshift__(self, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(other) >> to_node(self)

    def __or__(self, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(self) | other

    def __ror__(self, other: object) -> Node:
        from batchline.pipeline.flow import to_node  # noqa: PLC0415

        return to_node(other) | to_node(self)

    # -- batching declarations ------------------------------------------------------

    @classmethod
    def triggers_batching(
        cls: A,
        chunk_size: int,
        over: str | None = None,
        *,
        skip_if: SkipIf | None = None,
        load_existing: LoadExisting | None = None,
        persist_batch: PersistBatch | None = None,
        key: KeySpec = None,
    ) -> A:
        """Make this agent start a batching scope over ``context[over]`` in chunks.

        Raises:
            BatchingConfigurationError: ``chunk_size`` is not a positive integer, or
                ``over`` is not a non-empty string (or None).
        """
        where = f"{cls.__name__}.triggers_batching"
        size = check_chunk_size(chunk_size, where)
        field = check_over(over, where)
        for name, value in (
            ("skip_if", skip_if),
            ("load_existing", load_existing),
            ("persist_batch", persist_batch),
        ):
            check_callable(name, value, where)
        with _CONFIG_LOCK:
            cls.batching_config = cls.batching_config.replace(
                trigger=True,
                chunk_size=size,
                over=field,
                skip_if=skip_if,
                load_existing=load_existing,
                persist_batch=persist_batch,
                key=key,
            )
        return cls

    @classmethod
    def ends_batching(cls: A) -> A:
        """Make this agent the last one of the batching scope it is in."""
        with _CONFIG_LOCK:
            cls.batching_config = cls.batching_config.replace(terminator=True)
        return cls

    @classmethod
    def is_batching_trigger(cls) -> bool:
        """Whether this agent starts a batching scope."""
        return cls.batching_config.trigger

    @classmethod
    def is_batching_terminator(cls) -> bool:
        """Whether this agent ends a batching scope."""
        return cls.batching_config.terminator

    @classmethod
    def on_batch_start(cls, hook: H) -> H:
        """Register ``hook(progress)`` before each batch of this agent's scope."""
        return cls._add_hook("on_batch_start", hook)

    @classmethod
    def on_batch_complete(cls, hook: H) -> H:
        """Register ``hook(progress, results)`` after each successful batch."""
        return cls._add_hook("on_batch_complete", hook)

    @classmethod
    def on_batch_error(cls, hook: H) -> H:
        """Register ``hook(progress, error)`` when a batch fails for good."""
        return cls._add_hook("on_batch_error", hook)

    @classmethod
    def _add_hook(cls, event: str, hook: H) -> H:
        assert event in HOOK_EVENTS
        if not callable(hook):
            raise BatchingConfigurationError(
                f"{cls.__name__}.{event}: the hook is {hook!r}; expected a callable."
            )
        with _CONFIG_LOCK:
            cls.batching_config = cls.batching_config.with_hook(event, hook)
        return hook

    @classmethod
    def in_chunks_of(
        cls, chunk_size: int, *, input_field: str, output_field: str | None = None
    ) -> Node:
        """This agent alone, run over ``context[input_field]`` in chunks (agent-level batching).

        Each chunk runs the agent on a context whose ``input_field`` is the chunk; the
        lists it returns in ``output_field`` (default: ``input_field``) are concatenated.
        """
        from batchline.pipeline.flow import Chunked, Step  # noqa: PLC0415

        where = f"{cls.__name__}.in_chunks_of"
        size = check_chunk_size(chunk_size, where)
        field = check_over(input_field, where)
        if field is None:
            raise BatchingConfigurationError(f"{where}: `input_field` is required.")
        out = check_over(output_field, where) or field
        return Chunked(Step(cls()), size, field, out)


def triggers_batching(
    chunk_size: int,
    over: str | None = None,
    *,
    skip_if: SkipIf | None = None,
    load_existing: LoadExisting | None = None,
    persist_batch: PersistBatch | None = None,
    key: KeySpec = None,
) -> Callable[[A], A]:
    """Class decorator: ``@triggers_batching(chunk_size=50, over="companies")``.

    Validates at once, so a bad declaration fails where it is written.
    """
    check_chunk_size(chunk_size, "@triggers_batching")
    check_over(over, "@triggers_batching")

    def decorate(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise BatchingConfigurationError(
                f"@triggers_batching decorates Agent subclasses, not {cls!r}."
            )
        return cls.triggers_batching(
            chunk_size,
            over,
            skip_if=skip_if,
            load_existing=load_existing,
            persist_batch=persist_batch,
            key=key,
        )

    return decorate


def ends_batching(cls: A | None = None) -> Any:
    """Class decorator: ``@ends_batching`` (or ``@ends_batching()``)."""

    def decorate(target: A) -> A:
        if not (isinstance(target, type) and issubclass(target, Agent)):
            raise BatchingConfigurationError(
                f"@ends_batching decorates Agent subclasses, not {target!r}."
            )
        return target.ends_batching()

    return decorate if cls is None else decorate(cls)
