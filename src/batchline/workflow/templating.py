"""Templates: sandboxed Jinja2 with StrictUndefined, namespaces, and errors that help.

A string that is exactly one ``{{ expression }}`` keeps the expression's native type
(a list stays a list); any other string renders to text. An undefined name raises a
``TemplateError`` naming the step, the input key, the expression, the namespace, the
names available there, and the closest one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateAssertionError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from batchline.workflow.errors import TemplateError
from batchline.workflow.schema import did_you_mean

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
NAMESPACES = ("args", "env", "steps", "workflow", "batch")


class Namespace(dict[str, Any]):
    """A dict whose keys are also attributes: ``batch.items`` is the list of items and
    ``steps.items`` the step named items, not ``dict.items`` (Jinja tries attributes first)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__.update(self)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.__dict__[key] = value


_LAST = threading.local()


class _TrackingUndefined(StrictUndefined):
    """StrictUndefined that remembers (per thread) the last name found missing, and where."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _LAST.value = (self._undefined_name, self._undefined_obj)


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


def make_environment() -> SandboxedEnvironment:
    """The sandboxed environment every workflow template renders in."""
    env = SandboxedEnvironment(
        undefined=_TrackingUndefined,
        keep_trailing_newline=True,
        # A line holding only a block tag ({% if %}, {% for %}) leaves no blank line
        # behind, as in yaml-workflow: the text comes out as it reads.
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        loader=_LOADER,
        cache_size=0,  # included files are re-read: the search path can change per run
    )
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value, ensure_ascii=False, default=str)


ENV = make_environment()
_CACHE: dict[str, Any] = {}


def is_template(value: str) -> bool:
    """Whether a string contains template syntax."""
    return "{{" in value or "{%" in value or "{#" in value


def render(
    value: Any, namespaces: Mapping[str, Any], *, step: str = "", input_key: str = ""
) -> Any:
    """Render every template in ``value`` (strings, lists, dicts) against ``namespaces``."""
    if isinstance(value, str):
        return render_string(value, namespaces, step=step, input_key=input_key)
    if isinstance(value, list):
        return [render(v, namespaces, step=step, input_key=input_key) for v in value]
    if isinstance(value, dict):
        return {
            key: render(
                v, namespaces, step=step, input_key=f"{input_key}.{key}" if input_key else str(key)
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
    source_name: str = "",
) -> Any:
    """Render one string; a lone ``{{ expr }}`` keeps its native type.

    ``source_name`` (a template file's path) makes errors point at ``file:line`` and
    quote that line, not the whole text.
    """
    if not is_template(text):
        return text
    _LAST.value = None
    try:
        single = _SINGLE.match(text) if not source_name else None
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            compiled = _CACHE.get("expr:" + text)
            if compiled is None:
                compiled = _CACHE["expr:" + text] = ENV.compile_expression(
                    single.group("expr"), undefined_to_none=False
                )
            result = compiled(**namespaces)
            if isinstance(result, StrictUndefined):
                result._fail_with_undefined_error()
            return result
        template = _CACHE.get(text)
        if template is None:
            template = _CACHE[text] = ENV.from_string(text)
        return template.render(**namespaces)
    except UndefinedError as exc:
        shown = _shown(text, source_name, _template_line(exc))
        last = getattr(_LAST, "value", None)
        if last is not None:
            raise _explain(last[0], last[1], shown, namespaces, step, input_key, text) from None
        raise TemplateError(
            f"{_where(step, input_key)}{shown}: {exc}",
            step=step,
            input_key=input_key,
            expression=text,
        ) from None
    except TemplateAssertionError as exc:
        raise TemplateError(
            f"{_where(step, input_key)}{_shown(text, source_name, exc.lineno)}: {_assertion(exc)}",
            step=step,
            input_key=input_key,
            expression=text,
        ) from None
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"{_where(step, input_key)}template syntax error in "
            f"{_shown(text, source_name, exc.lineno)}: {exc.message}",
            step=step,
            input_key=input_key,
            expression=text,
        ) from None
    except TemplateError:
        raise
    except TemplateNotFound as exc:
        raise TemplateError(
            f"{_where(step, input_key)}{_shown(text, source_name, _template_line(exc))}: "
            f"included template not found: {exc.message}",
            step=step,
            input_key=input_key,
            expression=text,
        ) from None
    except Exception as exc:  # an error inside the expression itself (1/0, a bad filter)
        raise TemplateError(
            f"{_where(step, input_key)}{_shown(text, source_name, _template_line(exc))} "
            f"failed: {type(exc).__name__}: {exc}",
            step=step,
            input_key=input_key,
            expression=text,
        ) from None


def render_file(
    source: str, namespaces: Mapping[str, Any], *, step: str = "", source_name: str
) -> Any:
    """Render a template file's text; errors name ``source_name:line``."""
    return render_string(source, namespaces, step=step, source_name=source_name)


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
