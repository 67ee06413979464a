"""Agents: units of a pipeline, declared as classes (or plain functions).

An agent reads a read-only context mapping and returns a dict of new fields. Classes
compose with ``>>`` (sequence) and ``|`` (parallel) at class level, through the
``AgentMeta`` metaclass, and so do instances and plain functions. Batching
configuration lives on the class as a frozen ``BatchingConfig``; declaring something
replaces it (under a lock). As in RAAF, it belongs to the class that declared it: a
subclass starts with no batching declaration of its own.
"""

from __future__ import annotations

import linecache
import re
import sys
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
    check_arity,
    check_callable,
    check_chunk_size,
    check_over,
)
from batchline.pipeline.errors import BatchingConfigurationError

if TYPE_CHECKING:
    from batchline.pipeline.flow import Node

_CONFIG_LOCK = threading.RLock()
_CONFIG_SLOT = "_batchline_batching_config"
_NO_BATCHING = BatchingConfig()
A = TypeVar("A", bound="type[Agent]")
H = TypeVar("H", bound=Hook)


class AgentMeta(type):
    """Lets agent classes compose: ``Discover >> Enrich``, ``A | B``.

    It also keeps each class's batching configuration on that class alone:
    ``Child.batching_config`` is the default until ``Child`` declares something, whatever
    its parent declared.
    """

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> AgentMeta:
        declared = namespace.get("batching_config")
        if isinstance(declared, BatchingConfig):  # ``batching_config = BatchingConfig(...)``
            namespace = {k: v for k, v in namespace.items() if k != "batching_config"}
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if isinstance(declared, BatchingConfig):
            _set_config(cls, declared)
        return cls

    @property
    def batching_config(cls) -> BatchingConfig:
        """The batching configuration declared on this class (not inherited)."""
        config: BatchingConfig = cls.__dict__.get(_CONFIG_SLOT, _NO_BATCHING)
        return config

    @batching_config.setter
    def batching_config(cls, config: BatchingConfig) -> None:
        if not isinstance(config, BatchingConfig):
            raise BatchingConfigurationError(
                f"`{cls.__name__}.batching_config` must be a BatchingConfig, not "
                f"{type(config).__name__}; declare batching with triggers_batching(...)."
            )
        with _CONFIG_LOCK:
            _set_config(cls, config)

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


class _InstanceConfig:
    """``agent.batching_config`` on an instance: its class's own configuration."""

    def __get__(self, obj: object, owner: type | None = None) -> BatchingConfig:
        cls = type(obj) if obj is not None else owner
        config: BatchingConfig = vars(cls).get(_CONFIG_SLOT, _NO_BATCHING) if cls else _NO_BATCHING
        return config


def _set_config(cls: type, config: BatchingConfig) -> None:
    """Store ``config`` on ``cls`` itself (callers hold ``_CONFIG_LOCK``)."""
    type.__setattr__(cls, _CONFIG_SLOT, config)


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
    batching_config = _InstanceConfig()

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
        runs_to_end: bool = False,
        force_reprocess: bool = False,
        override: bool = False,
    ) -> A:
        """Make this agent start a batching scope over ``context[over]`` in chunks.

        Args:
            chunk_size: items per batch.
            over: the list field to batch (None: the context's only list field).
            skip_if: ``fn(item, context) -> bool``; True skips the item.
            load_existing: ``fn(item, context) -> result | None``: the result of a skipped
                item (needs ``skip_if``); later agents of the batch see it.
            persist_batch: ``fn(results, context)`` with the batch's newly computed items,
                before the batch is committed; if it raises, the batch fails.
            key: how items are keyed for resume: a field name (``"id"``), a callable
                ``item -> str | int``, or None for a hash of the item's canonical JSON.
            runs_to_end: the scope has no terminator on purpose and runs to the end of
                its sequence (without it, agents after a trigger with no terminator are
                a build error).
            force_reprocess: ignore ``skip_if``: every item runs again.
            override: replace an earlier ``triggers_batching`` of this class.

        Raises:
            BatchingConfigurationError: an argument is invalid, ``load_existing`` is given
                without ``skip_if``, or the class already triggers batching differently
                and ``override`` is False.
        """
        where = f"`{cls.__name__}`.triggers_batching"
        return _declare_trigger(
            cls,
            where,
            chunk_size=chunk_size,
            over=over,
            skip_if=skip_if,
            load_existing=load_existing,
            persist_batch=persist_batch,
            key=key,
            runs_to_end=runs_to_end,
            force_reprocess=force_reprocess,
            override=override,
        )

    @classmethod
    def ends_batching(cls: A) -> A:
        """Make this agent the last one of the batching scope it is in."""
        with _CONFIG_LOCK:
            _set_config(cls, cls.batching_config.replace(terminator=True))
        return cls

    @classmethod
    def batching_trigger(cls) -> bool:
        """Whether this agent starts a batching scope (declared on this very class)."""
        return cls.batching_config.trigger

    @classmethod
    def batching_terminator(cls) -> bool:
        """Whether this agent ends a batching scope (declared on this very class)."""
        return cls.batching_config.terminator

    @classmethod
    def is_batching_trigger(cls) -> bool:
        """Same as ``batching_trigger()``."""
        return cls.batching_config.trigger

    @classmethod
    def is_batching_terminator(cls) -> bool:
        """Same as ``batching_terminator()``."""
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
        where = f"`{cls.__name__}`.{event}"
        if not callable(hook):
            raise BatchingConfigurationError(f"{where}: the hook is {hook!r}; expected a callable.")
        check_arity(event, hook, where)
        with _CONFIG_LOCK:
            _set_config(cls, cls.batching_config.with_hook(event, hook))
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


def _declare_trigger(
    cls: A,
    where: str,
    *,
    chunk_size: object,
    over: object,
    skip_if: SkipIf | None,
    load_existing: LoadExisting | None,
    persist_batch: PersistBatch | None,
    key: KeySpec,
    runs_to_end: bool,
    force_reprocess: bool,
    override: bool,
) -> A:
    """Validate a ``triggers_batching`` declaration and store it on ``cls``."""
    size = check_chunk_size(chunk_size, where)
    field = check_over(over, where)
    _check_state_options(where, skip_if, load_existing, persist_batch, key)
    for name, flag in (
        ("runs_to_end", runs_to_end),
        ("force_reprocess", force_reprocess),
        ("override", override),
    ):
        if not isinstance(flag, bool):
            raise BatchingConfigurationError(
                f"{where}: `{name}` is {flag!r}; expected True or False."
            )
    with _CONFIG_LOCK:
        current = cls.batching_config
        config = current.replace(
            trigger=True,
            chunk_size=size,
            over=field,
            skip_if=skip_if,
            load_existing=load_existing,
            persist_batch=persist_batch,
            key=key,
            runs_to_end=runs_to_end,
            force_reprocess=force_reprocess,
        )
        if current.trigger and not override and config != current:
            raise BatchingConfigurationError(
                f"{where}: `{cls.__name__}` already triggers batching (chunk_size="
                f"{current.chunk_size}, over={current.over!r}); declaring it again would "
                "silently replace that declaration. Declare it once, or pass override=True "
                "to replace it on purpose."
            )
        _set_config(cls, config)
    return cls


def _check_state_options(
    where: str,
    skip_if: object,
    load_existing: object,
    persist_batch: object,
    key: object,
) -> None:
    for name, value in (
        ("skip_if", skip_if),
        ("load_existing", load_existing),
        ("persist_batch", persist_batch),
    ):
        check_callable(name, value, where)
    if load_existing is not None and skip_if is None:
        raise BatchingConfigurationError(
            f"{where}: `load_existing` is given without `skip_if`; it is called only for the "
            "items skip_if skips, so it would never run. Add skip_if=fn(item, context) -> bool "
            "(True for the items whose result load_existing returns), or drop load_existing."
        )
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not key.strip():
        raise BatchingConfigurationError(
            f"{where}: `key` is {key!r}; expected the name of an id-like field of the items "
            "(e.g. key='id'), a callable item -> str | int, or None to key items by a hash "
            "of their JSON."
        )


def triggers_batching(
    chunk_size: int,
    over: str | None = None,
    *,
    skip_if: SkipIf | None = None,
    load_existing: LoadExisting | None = None,
    persist_batch: PersistBatch | None = None,
    key: KeySpec = None,
    runs_to_end: bool = False,
    force_reprocess: bool = False,
    override: bool = False,
) -> Callable[[A], A]:
    """Class decorator: ``@triggers_batching(chunk_size=50, over="companies")``.

    Takes the arguments of ``Agent.triggers_batching``. Validates at once, so a bad
    declaration fails where it is written, naming the class it decorates.
    """
    where = f"@triggers_batching on {_decorated_class(sys._getframe(1))}"
    check_chunk_size(chunk_size, where)
    check_over(over, where)
    _check_state_options(where, skip_if, load_existing, persist_batch, key)

    def decorate(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise BatchingConfigurationError(
                f"@triggers_batching decorates Agent subclasses, not {cls!r}."
            )
        return _declare_trigger(
            cls,
            f"@triggers_batching on class `{cls.__name__}`",
            chunk_size=chunk_size,
            over=over,
            skip_if=skip_if,
            load_existing=load_existing,
            persist_batch=persist_batch,
            key=key,
            runs_to_end=runs_to_end,
            force_reprocess=force_reprocess,
            override=override,
        )

    return decorate


_CLASS_LINE = re.compile(r"^\s*class\s+([A-Za-z_]\w*)")


def _decorated_class(frame: Any) -> str:
    """``class `Name` (file:line)`` for a decorator call, read from the source when possible.

    A decorator's arguments are checked before the class exists, so the class name is
    taken from the first ``class`` line below the decorator.
    """
    filename, line = frame.f_code.co_filename, frame.f_lineno
    where = f"{filename.rsplit('/', 1)[-1]}:{line}"
    for number in range(line, line + 12):
        text = linecache.getline(filename, number)
        match = _CLASS_LINE.match(text)
        if match:
            return f"class `{match.group(1)}` ({where})"
        if text and not text.lstrip().startswith(("@", "#", ")")) and number > line + 8:
            break
    return f"the class at {where}"


def ends_batching(cls: A | None = None) -> Any:
    """Class decorator: ``@ends_batching`` (or ``@ends_batching()``)."""

    def decorate(target: A) -> A:
        if not (isinstance(target, type) and issubclass(target, Agent)):
            raise BatchingConfigurationError(
                f"@ends_batching decorates Agent subclasses, not {target!r}."
            )
        return target.ends_batching()

    return decorate if cls is None else decorate(cls)
