"""Templates: sandboxed Jinja2 with StrictUndefined, namespaces, and errors that help.

A string that is exactly one ``{{ expression }}`` keeps the expression's native type
(a list stays a list); any other string renders to text. An undefined name raises a
``TemplateError`` naming the step, the input key, the expression, the namespace, the
names available there, and the closest one. Templates run in an immutable, size-bounded
sandbox (:mod:`batchline.workflow.sandbox`); shell commands are rendered with every value
escaped for its quoting context (:func:`render_command`).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateAssertionError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.utils import missing

from batchline.workflow.errors import TemplateError
from batchline.workflow.sandbox import RenderTooLarge, Sandbox, current_limit, limited
from batchline.workflow.schema import did_you_mean
from batchline.workflow.shellfilters import (
    UNSAFE_FILTERS,
    ShellQuoted,
    quote_filter,
    shell_unsafe_filter,
)
from batchline.workflow.shellquote import assemble

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
NAMESPACES = ("args", "env", "steps", "workflow", "batch")


class Namespace(dict[str, Any]):
    """A dict whose keys templates read as attributes: ``batch.items`` is the list of items
    and ``steps.items`` the step named items, not ``dict.items`` (the sandbox looks keys of a
    namespace up before attributes).

    Keys never shadow the dict's own methods in Python (``ns.items()`` stays the method, so
    copying, pickling and Ray serialisation work whatever the keys are); a key that is not a
    method is also an attribute (``ns.result``). Templates cannot change a namespace (the
    sandbox refuses every mutating method).
    """

    keys_before_attributes = True  # read by Sandbox.getattr

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"namespace has no `{name}`; available: {', '.join(sorted(map(str, self)))}"
            ) from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


_LAST = threading.local()
_SLOTS = threading.local()


class _TrackingUndefined(StrictUndefined):
    """StrictUndefined that remembers (per thread) the last name found missing, and where."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _LAST.value = (self._undefined_name, self._undefined_obj)


class _Slots:
    """The values of one command being rendered; each is replaced by a marker holding a
    random nonce (so a value can never forge one)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.nonce = secrets.token_hex(8)
        self.pattern = re.compile(f"\ue000{self.nonce}:(\\d+)\ue001")

    def add(self, value: Any) -> str:
        if isinstance(value, str) and not isinstance(value, ShellQuoted) and self.nonce in value:
            # a captured block (`{% set x %}`) holding slots: its values, unescaped, are part
            # of this one
            value = self.pattern.sub(lambda m: str(self.values[int(m.group(1))]), value)
        self.values.append(value)
        return f"\ue000{self.nonce}:{len(self.values) - 1}\ue001"


@pass_context
def _to_slot(context: Context, value: Any) -> str:
    """Shell commands: each value becomes a slot, escaped later for its quoting context."""
    del context
    slots: _Slots = _SLOTS.current
    return slots.add(value)


class _IncludeLoader(BaseLoader):
    """Finds ``{% include %}`` / ``{% import %}`` targets in the folders set by
    :func:`set_search_path` (the workflow file's folder, then the base folder)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def get_source(self, environment: Any, template: str) -> Any:
        if not self.paths:
            raise TemplateNotFound(template)
        try:
            return FileSystemLoader(self.paths).get_source(environment, template)
        except TemplateNotFound:
            raise TemplateNotFound(
                f"{template} (looked in {', '.join(self.paths)}; include paths are relative "
                "to the workflow file)"
            ) from None


_LOADER = _IncludeLoader()


def set_search_path(*folders: Any) -> None:
    """Where ``{% include "x" %}`` looks for ``x``: the workflow file's folder first."""
    _LOADER.paths = list(dict.fromkeys(str(folder) for folder in folders if folder))


def make_environment(*, commands: bool = False) -> Sandbox:
    """The sandboxed environment every workflow template renders in (``commands``: the one
    for shell commands, where every value becomes a slot to escape).

    ``{% include %}`` / ``{% import %}`` load through :data:`_LOADER` and are compiled by
    this same immutable, size-bounded sandbox.
    """
    options: dict[str, Any] = {"finalize": _to_slot} if commands else {}
    env = Sandbox(
        undefined=_TrackingUndefined,
        keep_trailing_newline=True,
        # A line holding only a block tag ({% if %}, {% for %}) leaves no blank line
        # behind, as in yaml-workflow: the text comes out as it reads.
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        loader=_LOADER,
        cache_size=0,  # included files are re-read: the search path can change per run
        **options,
    )
    env.filters["tojson"] = _tojson
    env.filters["quote"] = quote_filter
    for name in UNSAFE_FILTERS:
        env.filters[name] = shell_unsafe_filter
    return env


def _tojson(value: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value, ensure_ascii=False, default=str)


ENV = make_environment()
SHELL_ENV = make_environment(commands=True)
_CACHE: dict[str, Any] = {}


def is_template(value: str) -> bool:
    """Whether a string contains template syntax."""
    return "{{" in value or "{%" in value or "{#" in value


def render(
    value: Any,
    namespaces: Mapping[str, Any],
    *,
    step: str = "",
    input_key: str = "",
    max_size: int | None = None,
) -> Any:
    """Render every template in ``value`` (strings, lists, dicts) against ``namespaces``.

    ``max_size`` bounds every rendered value (characters; default
    ``DEFAULT_MAX_RENDER_SIZE``): a larger one is a ``TemplateError``, refused before it
    is built.
    """
    if isinstance(value, str):
        return render_string(value, namespaces, step=step, input_key=input_key, max_size=max_size)
    if isinstance(value, list):
        return [
            render(v, namespaces, step=step, input_key=input_key, max_size=max_size) for v in value
        ]
    if isinstance(value, dict):
        return {
            key: render(
                v,
                namespaces,
                step=step,
                input_key=f"{input_key}.{key}" if input_key else str(key),
                max_size=max_size,
            )
            for key, v in value.items()
        }
    return value


def render_string(
    text: str,
    namespaces: Mapping[str, Any],
    *,
    step: str = "",
    input_key: str = "",
    max_size: int | None = None,
    source_name: str = "",
) -> Any:
    """Render one string; a lone ``{{ expr }}`` keeps its native type.

    ``source_name`` (a template file's path) makes errors point at ``file:line`` and
    quote that line, not the whole text.
    """
    if not is_template(text):
        return text
    with limited(max_size), _errors(text, namespaces, step, input_key, source_name):
        single = _SINGLE.match(text) if not source_name else None
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            return _evaluate(text, single.group("expr"), namespaces)
        template = _CACHE.get(text)
        if template is None:
            template = _CACHE[text] = ENV.from_string(text)
        return _stream(template.generate(**namespaces))


def render_file(
    source: str,
    namespaces: Mapping[str, Any],
    *,
    step: str = "",
    source_name: str,
    input_key: str = "",
    max_size: int | None = None,
) -> Any:
    """Render a template file's text (in the same sandbox, with the same size limit);
    errors name ``source_name:line``."""
    return render_string(
        source,
        namespaces,
        step=step,
        input_key=input_key,
        max_size=max_size,
        source_name=source_name,
    )


def render_command(
    text: Any,
    namespaces: Mapping[str, Any],
    *,
    step: str = "",
    input_key: str = "command",
    max_size: int | None = None,
) -> Any:
    """Render a shell ``command``: every value escaped for the quoting context it lands in.

    A list is rendered element by element, unescaped (each element is one argument); a
    mapping (``{unix: ..., windows: ...}``) value by value, each as a command. A
    string that is one ``{{ expression }}`` giving a list is that list of arguments.
    See :mod:`batchline.workflow.shellquote`.
    """
    if isinstance(text, list):
        elements = (
            render(v, namespaces, step=step, input_key=f"{input_key}[{i}]", max_size=max_size)
            for i, v in enumerate(text)
        )
        return [
            v if isinstance(v, str) else _tojson(v) if isinstance(v, dict | list) else str(v)
            for v in elements
        ]
    if isinstance(text, dict):  # yaml-workflow's per-platform `{unix: ..., windows: ...}`
        return {
            key: render_command(
                value, namespaces, step=step, input_key=f"{input_key}.{key}", max_size=max_size
            )
            for key, value in text.items()
        }
    if not isinstance(text, str) or not is_template(text):
        return text
    with limited(max_size), _errors(text, namespaces, step, input_key):
        single = _SINGLE.match(text)
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            value = _evaluate(text, single.group("expr"), namespaces)
            if isinstance(value, list | tuple):
                return [str(v) for v in value]
            stripped = text.strip()
            head, tail = text[: text.index(stripped)], text[text.index(stripped) + len(stripped) :]
            return assemble([head, (value,), tail], step=step, input_key=input_key, expression=text)
        template = _CACHE.get("shell:" + text)
        if template is None:
            template = _CACHE["shell:" + text] = SHELL_ENV.from_string(text)
        previous = getattr(_SLOTS, "current", None)
        slots = _SLOTS.current = _Slots()
        try:
            rendered = _stream(template.generate(**namespaces))
        finally:
            _SLOTS.current = previous
        parts: list[str | tuple[Any]] = []
        last = 0
        for match in slots.pattern.finditer(rendered):
            parts.append(rendered[last : match.start()])
            parts.append((slots.values[int(match.group(1))],))
            last = match.end()
        parts.append(rendered[last:])
        command = assemble(parts, step=step, input_key=input_key, expression=text)
        if len(command) > current_limit():
            raise RenderTooLarge(len(command), current_limit())
        return command


def _evaluate(text: str, expression: str, namespaces: Mapping[str, Any]) -> Any:
    compiled = _CACHE.get("expr:" + text)
    if compiled is None:
        compiled = _CACHE["expr:" + text] = ENV.compile_expression(
            expression, undefined_to_none=False
        )
    result = compiled(**namespaces)
    if isinstance(result, StrictUndefined):
        result._fail_with_undefined_error()
    if isinstance(result, str) and len(result) > current_limit():
        raise RenderTooLarge(len(result), current_limit())
    return result


def _stream(chunks: Iterator[str]) -> str:
    """Join rendered output, stopping as soon as it passes the limit."""
    limit = current_limit()
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RenderTooLarge(size, limit)
        out.append(chunk)
    return "".join(out)


class _errors:  # noqa: N801 - a context manager used like a function
    """Turn whatever rendering raised into a ``TemplateError`` naming step and input (and
    ``file:line`` for a template file)."""

    def __init__(
        self,
        text: str,
        namespaces: Mapping[str, Any],
        step: str,
        input_key: str,
        source_name: str = "",
    ) -> None:
        self.text, self.namespaces, self.step, self.input_key = text, namespaces, step, input_key
        self.source_name = source_name

    def __enter__(self) -> None:
        _LAST.value = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> Literal[False]:
        if exc is None or isinstance(exc, TemplateError) or not isinstance(exc, Exception):
            return False
        raise self.convert(exc) from None

    def convert(self, exc: Exception) -> TemplateError:
        text, step, input_key, source = self.text, self.step, self.input_key, self.source_name
        where = _where(step, input_key)
        if isinstance(exc, SecurityError):
            message = (
                f"{where}{_shown(text, source, _template_line(exc))}: templates cannot change "
                f"or reach into values ({exc}). Namespaces, items and results are read-only "
                "in templates: build a new value instead (e.g. `dict(a, key=value)`, `a + [x]`)"
            )
        elif isinstance(exc, UndefinedError):
            shown = _shown(text, source, _template_line(exc))
            last = getattr(_LAST, "value", None)
            if last is not None:
                return _explain(last[0], last[1], shown, self.namespaces, step, input_key, text)
            message = f"{where}{shown}: {exc}"
        elif isinstance(exc, TemplateAssertionError):
            message = f"{where}{_shown(text, source, exc.lineno)}: {_assertion(exc)}"
        elif isinstance(exc, TemplateSyntaxError):
            message = (
                f"{where}template syntax error in {_shown(text, source, exc.lineno)}: {exc.message}"
            )
        elif isinstance(exc, TemplateNotFound):
            message = (
                f"{where}{_shown(text, source, _template_line(exc))}: "
                f"included template not found: {exc.message}"
            )
        elif isinstance(exc, RenderTooLarge):
            shown = f"{source}" if source else f"`{_short(text)}`"
            message = f"{where}{shown}: {exc}"
        else:  # an error inside the expression itself (1/0, a bad filter)
            message = (
                f"{where}{_shown(text, source, _template_line(exc))} "
                f"failed: {type(exc).__name__}: {exc}"
            )
        return TemplateError(message, step=step, input_key=input_key, expression=text)


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 200 else text[:200] + " ..."


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at (Jinja maps its frames to it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _shown(text: str, source_name: str, line: int | None) -> str:
    """How an error quotes its template: ``file:line `that line```, or the expression."""
    lines = text.splitlines()
    if source_name:
        quoted = lines[line - 1].strip() if line and 0 < line <= len(lines) else ""
        return f"{source_name}:{line or '?'}" + (f" `{quoted}`" if quoted else "")
    if line and len(lines) > 1 and 0 < line <= len(lines):
        return f"line {line} `{lines[line - 1].strip()}`"
    return f"`{text.strip()}`"


def _assertion(exc: TemplateAssertionError) -> str:
    """An unknown filter or test, said so, with the closest known name."""
    found = re.search(r"No (filter|test) named '([^']+)'", exc.message or "")
    if found is None:
        return exc.message or str(exc)
    kind, name = found.groups()
    known = sorted(ENV.filters if kind == "filter" else ENV.tests)
    return f"unknown {kind} `{name}`.{did_you_mean(name, known)} Known {kind}s: {', '.join(known)}."


def _where(step: str, input_key: str) -> str:
    parts = []
    if step:
        parts.append(f"step `{step}`")
    if input_key:
        parts.append(f"input `{input_key}`")
    return (", ".join(parts) + ": ") if parts else ""


def _explain(
    absent: str | None,
    owner: Any,
    text: str,
    namespaces: Mapping[str, Any],
    step: str,
    input_key: str,
    source: str = "",
) -> TemplateError:
    name = absent or "?"
    skipped = _skipped_steps(source or text, namespaces)
    if skipped and (owner is None or owner is missing or isinstance(owner, StrictUndefined)):
        which = skipped[0]
        detail = (
            f"step `{which}` was skipped (its when/condition was false), so its result is "
            f"None and has no `{name}`. Guard the use, e.g. "
            f"{{% if steps.{which}.status != 'skipped' %}}...{{% endif %}}, or add "
            "| default(...)."
        )
    elif owner is None or owner is missing or isinstance(owner, StrictUndefined):
        available = sorted(namespaces)
        detail = (
            f"`{name}` is undefined. Namespaces here: {', '.join(available)}."
            f"{did_you_mean(name, available)}"
        )
    else:
        path = _path_of(owner, namespaces)
        label = path or type(owner).__name__
        namespace = path.split(".")[0] if path else "?"
        if isinstance(owner, Mapping):
            keys = sorted(str(k) for k in owner)
            shown = ", ".join(keys[:30]) + (" ..." if len(keys) > 30 else "")
            detail = (
                f"`{label}` has no `{name}` (namespace `{namespace}`; available there: "
                f"{shown or 'nothing'}).{did_you_mean(name, keys)}"
            )
        else:
            detail = (
                f"`{label}` ({type(owner).__name__}) has no attribute `{name}` "
                f"(namespace `{namespace}`)."
            )
    return TemplateError(
        f"{_where(step, input_key)}{text}: {detail}",
        step=step,
        input_key=input_key,
        expression=source or text,
    )


_STEP_REF = re.compile(r"steps\s*(?:\.\s*(\w+)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


def _skipped_steps(text: str, namespaces: Mapping[str, Any]) -> list[str]:
    """Steps the template names that were skipped (their result is None)."""
    steps = namespaces.get("steps")
    if not isinstance(steps, Mapping):
        return []
    found = []
    for match in _STEP_REF.finditer(text):
        name = match.group(1) or match.group(2)
        record = steps.get(name)
        if isinstance(record, Mapping) and record.get("status") == "skipped":
            found.append(name)
    return found


def _path_of(target: Any, namespaces: Mapping[str, Any]) -> str:
    """The dotted path of ``target`` inside the namespaces (by identity), or ''."""
    for path, value in _walk(namespaces, "", 0):
        if value is target:
            return path
    return ""


def _walk(value: Any, prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
    if depth > 4 or not isinstance(value, Mapping):
        return
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path, child
        yield from _walk(child, path, depth + 1)


def unsafe_filters(text: str) -> list[str]:
    """The ``shell_unsafe`` / ``raw_shell`` filters used in a template, in order."""
    if not isinstance(text, str) or not is_template(text):
        return []
    try:
        tree = ENV.parse(text)
    except TemplateSyntaxError:
        return []
    return [
        node.name
        for node in tree.find_all(nodes.Filter)
        if isinstance(node, nodes.Filter) and node.name in UNSAFE_FILTERS
    ]


def references(text: str) -> list[tuple[str, str, bool]]:
    """Static references ``(namespace, name, has_default)`` in a template."""
    if not isinstance(text, str) or not is_template(text):
        return []
    try:
        tree = ENV.parse(text)
    except TemplateSyntaxError:
        return []
    found: list[tuple[str, str, bool]] = []
    defaulted: set[int] = set()
    for filt in tree.find_all(nodes.Filter):
        if filt.name == "default" and filt.node is not None:
            defaulted.add(id(filt.node))
    for node in tree.find_all(nodes.Getattr):
        assert isinstance(node, nodes.Getattr)
        base = node.node
        if isinstance(base, nodes.Name) and base.name in ("args", "steps"):
            found.append((base.name, node.attr, id(node) in defaulted))
    for item in tree.find_all(nodes.Getitem):
        assert isinstance(item, nodes.Getitem)
        base = item.node
        key = item.arg
        if (
            isinstance(base, nodes.Name)
            and base.name in ("args", "steps")
            and isinstance(key, nodes.Const)
            and isinstance(key.value, str)
        ):
            found.append((base.name, key.value, id(item) in defaulted))
    return found
