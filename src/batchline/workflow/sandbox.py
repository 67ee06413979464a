"""The Jinja2 sandbox workflow templates run in: immutable, and bounded in size.

- Immutable: ``ImmutableSandboxedEnvironment`` refuses every method that changes a list,
  dict or set (``env.update(...)``, ``batch.item.append(...)``), so a template can never
  change what a later step sees.
- Bounded: a value larger than the render limit (``settings.max_render_size``, default
  :data:`DEFAULT_MAX_RENDER_SIZE` characters) is refused *before* it is built: ``*`` and
  ``+`` on strings and lists, ``%`` and ``format`` widths, ``**`` on huge numbers, ``~``,
  captured blocks, and width arguments of filters and methods are checked against the
  limit, and the rendered output is counted as it streams.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from jinja2 import Environment, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_MAX_RENDER_SIZE = 5_000_000
_MAX_POWER_BITS = 100_000
_WIDTH = re.compile(r"%[-#0 +]*(\d+)|\{[^{}]*?:[^{}]*?(\d+)[^{}]*\}")
_SIZED_FILTERS = ("center", "indent", "wordwrap", "format", "replace", "join", "batch", "slice")
_LIMIT = threading.local()

__all__ = [
    "DEFAULT_MAX_RENDER_SIZE",
    "RenderTooLarge",
    "Sandbox",
    "current_limit",
    "limited",
]


class RenderTooLarge(Exception):  # noqa: N818 - an internal signal, turned into a TemplateError
    """A value would exceed the render limit (raised before it is built)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the rendered value would be {size:,} characters, over the limit of {limit:,} "
            "(settings.max_render_size); render less, or raise the limit"
        )
        self.size = size
        self.limit = limit


def current_limit() -> int:
    """The render limit of this thread (set by :func:`limited`)."""
    return int(getattr(_LIMIT, "value", None) or DEFAULT_MAX_RENDER_SIZE)


class limited:  # noqa: N801 - used like a function: `with limited(n):`
    """Context manager: render with a size limit of ``limit`` characters in this thread."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.before: int | None = None

    def __enter__(self) -> None:
        self.before = getattr(_LIMIT, "value", None)
        _LIMIT.value = self.limit or DEFAULT_MAX_RENDER_SIZE

    def __exit__(self, *_: object) -> None:
        _LIMIT.value = self.before


def _check(size: int) -> None:
    limit = current_limit()
    if size > limit:
        raise RenderTooLarge(size, limit)


def _size(value: Any) -> int | None:
    if isinstance(value, str | list | tuple | bytes):
        return len(value)
    return None


def _check_widths(text: str) -> None:
    for match in _WIDTH.finditer(text):
        width = match.group(1) or match.group(2)
        if width and len(width) < 30:
            _check(int(width))
        elif width:
            _check(10**30)


def _check_arguments(args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            _check(abs(value))


def sized_join(parts: Iterable[Any]) -> str:
    """``"".join`` that refuses a result over the limit before building it."""
    texts = [part if isinstance(part, str) else str(part) for part in parts]
    _check(sum(len(text) for text in texts))
    return "".join(texts)


class _Generator(CodeGenerator):
    """Compiles ``a ~ b`` to a size-checked join."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 - Jinja's name
        self.write("environment.sized_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable, size-bounded sandbox (see the module docstring)."""

    code_generator_class = _Generator
    intercepted_binops = frozenset(["*", "+", "%", "**"])
    concat = staticmethod(sized_join)
    sized_join = staticmethod(sized_join)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _SIZED_FILTERS:
            self.filters[name] = _sized_filter(name, self.filters[name])

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``ns.name`` on a namespace (a dict marked ``keys_before_attributes``) is its key
        ``name`` when it has one, so a step named ``items`` is that step, not ``dict.items``."""
        if getattr(type(obj), "keys_before_attributes", False) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        """``*`` ``+`` ``%`` ``**`` with their result size checked first."""
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                length = _size(seq)
                if length is not None and isinstance(times, int):
                    _check(length * max(0, times))
        elif operator_ == "+":
            left_size, right_size = _size(left), _size(right)
            if left_size is not None and right_size is not None:
                _check(left_size + right_size)
        elif operator_ == "%" and isinstance(left, str):
            _check_widths(left)
        elif operator_ == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = right * math.log2(abs(left)) if abs(left) > 1 else 0
            if bits > _MAX_POWER_BITS:
                raise RenderTooLarge(int(bits / 3.32), current_limit())
        return super().call_binop(context, operator_, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Calls, with width-like arguments and format specs checked against the limit."""
        _check_arguments(args, kwargs)
        wrapped = getattr(__obj, "__wrapped__", None)
        owner = getattr(wrapped if wrapped is not None else __obj, "__self__", None)
        if isinstance(owner, str):
            _check_widths(owner)
            name = getattr(__obj, "__name__", "")
            if name in ("replace", "join") and args:
                _estimate_method(owner, name, args)
        return super().call(__context, __obj, *args, **kwargs)


def _estimate_method(owner: str, name: str, args: tuple[Any, ...]) -> None:
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        _check(len(owner) + count * max(0, len(str(args[1])) - len(args[0])))
    elif name == "join" and isinstance(args[0], list | tuple):
        _check(sum(len(str(v)) for v in args[0]) + len(owner) * max(0, len(args[0]) - 1))


def _sized_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, Context | EvalContext | Environment)]
        value = values[0] if values else None
        rest = values[1:]
        if name != "join":
            _check_arguments(rest, kwargs)
        if name == "format" and isinstance(value, str):
            _check_widths(value)
        if name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _estimate_method(value, "replace", tuple(str(r) for r in rest[:2]))
        if name == "indent" and isinstance(value, str):
            width = rest[0] if rest and isinstance(rest[0], int) else 4
            _check(len(value) + (value.count("\n") + 1) * (width if isinstance(width, int) else 4))
        if name == "join" and isinstance(value, list | tuple):
            separator = str(rest[0]) if rest else ""
            _check(sum(len(str(v)) for v in value) + len(separator) * max(0, len(value) - 1))
        return func(*args, **kwargs)

    for attribute in ("jinja_pass_arg", "__name__", "__doc__"):
        if hasattr(func, attribute):
            setattr(guarded, attribute, getattr(func, attribute))
    return guarded
