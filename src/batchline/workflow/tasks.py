"""Task types: the registry, the ``TaskConfig`` handlers receive, and the built-in tasks.

A handler is a function ``handler(config: TaskConfig) -> result``. Register one with
``@register_task("name")`` or through the entry-point group ``batchline.tasks``.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from batchline.workflow.errors import TaskError, TaskLoadError, TemplateError
from batchline.workflow.paths import confine
from batchline.workflow.pycode import code_problem, code_scope
from batchline.workflow.safeyaml import UnsafeYAMLError, safe_load
from batchline.workflow.schema import did_you_mean
from batchline.workflow.templating import render

TaskHandler = Callable[["TaskConfig"], Any]
_REGISTRY: dict[str, TaskHandler] = {}
_ENTRY_POINTS_LOADED = False
FORMATS = ("text", "lines", "json", "jsonl", "yaml", "csv")


@dataclass
class TaskConfig:
    """What a task handler receives.

    Attributes:
        name: the step's name.
        type: the task type (``shell``, ``batch``, ...).
        inputs: the step's inputs, rendered.
        workspace: the workflow's workspace folder.
        base_dir: the folder relative paths resolve against (where the command ran).
        context: the namespaces (``args``, ``env``, ``steps``, ``workflow``, maybe ``batch``).
        raw_inputs: the inputs before rendering (the batch task renders its nested task).
    """

    name: str
    type: str
    inputs: dict[str, Any]
    workspace: Path
    base_dir: Path = field(default_factory=Path.cwd)
    context: Mapping[str, Any] = field(default_factory=dict)
    raw_inputs: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def get_variable(self, name: str, namespace: str | None = None) -> Any:
        """A variable by name, from one namespace or the first that has it.

        Raises:
            KeyError: naming the namespaces searched and the closest name.
        """
        spaces = [namespace] if namespace else ["args", "env", "steps", "workflow", "batch"]
        for space in spaces:
            values = self.context.get(space)
            if isinstance(values, Mapping) and name in values:
                return values[name]
        if namespace is None and name in self.context:
            return self.context[name]
        options = [k for s in spaces for k in (self.context.get(s) or {})]
        raise KeyError(f"no variable {name!r} in {', '.join(spaces)}.{did_you_mean(name, options)}")

    def get_available_variables(self) -> dict[str, list[str]]:
        """Names available per namespace: ``args``, ``env``, ``steps``, ``root`` (and ``batch``)."""
        out: dict[str, list[str]] = {}
        for space in ("args", "env", "steps", "batch"):
            values = self.context.get(space)
            if isinstance(values, Mapping):
                out[space] = sorted(str(k) for k in values)
        out["root"] = sorted(self.context)
        return out

    def path(self, value: str | os.PathLike[str]) -> Path:
        """A path from an input, relative ones resolved against ``base_dir``.

        Raises:
            TaskError: with ``settings.confine_paths``, for a path outside ``base_dir`` and
                ``workspace``.
        """
        candidate = Path(value).expanduser()
        full = candidate if candidate.is_absolute() else self.base_dir / candidate
        if self.settings.get("confine_paths"):
            confine(
                full, (self.base_dir, self.workspace), step=self.name, given=value, task=self.type
            )
        return full

    def require(self, key: str) -> Any:
        """An input that must be present."""
        if key not in self.inputs:
            raise TaskError(
                f"step `{self.name}`: task `{self.type}` needs the input `{key}` "
                f"(inputs given: {', '.join(sorted(self.inputs)) or 'none'})",
                self.type,
            )
        return self.inputs[key]


def register_task(name: str) -> Callable[[TaskHandler], TaskHandler]:
    """Decorator: register ``handler(config: TaskConfig)`` as task type ``name``."""

    def decorate(handler: TaskHandler) -> TaskHandler:
        _REGISTRY[name] = handler
        return handler

    return decorate


def create_task_handler(func: Callable[[TaskConfig], Any]) -> TaskHandler:
    """Adapt a function taking a ``TaskConfig`` into a handler (checks it is callable)."""
    if not callable(func):
        raise TypeError(f"a task handler must be callable, not {func!r}")

    def handler(config: TaskConfig) -> Any:
        return func(config)

    handler.__name__ = getattr(func, "__name__", "handler")
    handler.__doc__ = getattr(func, "__doc__", None)
    return handler


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    with suppress(ImportError):  # batchline's own plug-in tasks (llm)
        importlib.import_module("batchline.workflow.llm_task")
    for point in entry_points(group="batchline.tasks"):
        if point.name not in _REGISTRY:
            try:
                _REGISTRY[point.name] = create_task_handler(point.load())
            except Exception as exc:  # a broken plug-in must not break other tasks
                _REGISTRY[point.name] = _broken(point.name, exc)


def _broken(name: str, error: Exception) -> TaskHandler:
    def handler(config: TaskConfig) -> Any:
        del config
        raise TaskError(f"task `{name}` failed to load from its entry point: {error}", name)

    return handler


def known_tasks() -> list[str]:
    """Every registered task type."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskHandler:
    """The handler for a task type; ``TaskError`` with suggestions when unknown."""
    _load_entry_points()
    handler = _REGISTRY.get(name)
    if handler is None:
        raise TaskError(
            f"unknown task type `{name}`.{did_you_mean(name, _REGISTRY)} "
            f"Known tasks: {', '.join(sorted(_REGISTRY))}.",
            name,
        )
    return handler


# -- built-in tasks ---------------------------------------------------------------------


@register_task("echo")
def echo_task(config: TaskConfig) -> Any:
    """Return ``message`` (or ``value``) as the result: for wiring and testing."""
    return config.inputs.get("message", config.inputs.get("value"))


@register_task("shell")
def shell_task(config: TaskConfig) -> dict[str, Any]:
    """Run ``command`` (a string for the shell, or a list of arguments).

    Inputs: ``command``, ``env`` (merged over the workflow's), ``cwd`` (default: where the
    command ran), ``timeout`` (seconds). A non-zero exit fails with the exit code and
    the tail of stderr. Result: ``{"stdout", "stderr", "returncode"}``.
    """
    command = config.require("command")
    env = {**os.environ, **_strings(config.context.get("env", {}))}
    env.update(_strings(config.inputs.get("env") or {}))
    cwd = config.path(config.inputs["cwd"]) if config.inputs.get("cwd") else config.base_dir
    timeout = config.inputs.get("timeout")
    try:
        done = subprocess.run(  # noqa: S603 - running commands is this task's job
            command if isinstance(command, list) else str(command),
            shell=not isinstance(command, list),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=float(timeout) if timeout is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(
            f"step `{config.name}`: command timed out after {timeout}s: {command}"
        ) from None
    except OSError as exc:
        raise TaskError(f"step `{config.name}`: cannot run {command!r}: {exc}", "shell") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise TaskError(
            f"step `{config.name}`: command exited with code {done.returncode}: {command}"
            + (f"\n{tail}" if tail else ""),
            "shell",
        )
    return {"stdout": done.stdout, "stderr": done.stderr, "returncode": done.returncode}


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}


def load_function(step: str, target: object) -> Any:
    """The callable named ``package.module:func``; ``TaskLoadError`` (never retried) if not."""
    text = str(target)
    module_name, _, attribute = text.partition(":")
    if not module_name or not attribute:
        raise TaskLoadError(
            f"step `{step}`: `function` is {text!r}; expected 'package.module:func'", "python"
        )
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise TaskLoadError(
            f"step `{step}`: cannot load `{text}`: {type(exc).__name__}: {exc}. Check the "
            "name, and that the module is importable where the task runs (on Ray: ship it "
            "with settings.ray.runtime_env working_dir or py_modules).",
            "python",
        ) from None


@register_task("python")
def python_task(config: TaskConfig) -> Any:
    """Call ``function: package.module:func`` with the other inputs as keyword arguments,
    or run ``code:`` that sets ``result``. The code is static (a template in it is refused):
    values reach it as variables (``inputs``, ``args``, ``env``, ``steps``, ``batch``, ...;
    see :func:`batchline.workflow.pycode.code_scope`).
    """
    inputs = dict(config.inputs)
    if "function" in inputs:
        func = load_function(config.name, inputs.pop("function"))
        return func(**inputs)
    code = config.require("code")
    problem = code_problem(config.raw_inputs.get("code", code))
    if problem is not None:
        raise TaskError(f"step `{config.name}`: {problem}", config.type)
    scope = code_scope(config, inputs)
    exec(compile(str(code), f"<step {config.name}>", "exec"), scope)  # noqa: S102 - user code by design
    return scope["result"]


def read_text(path: Path, fmt: str, step: str) -> Any:
    """File content in a format: text, lines, json, jsonl, yaml or csv."""
    if fmt not in FORMATS:
        raise TaskError(
            f"step `{step}`: unknown format {fmt!r}.{did_you_mean(fmt, FORMATS)} "
            f"Formats: {', '.join(FORMATS)}.",
            "file.read",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskError(
            f"step `{step}`: cannot read {path}: {exc.strerror or exc}", "file"
        ) from None
    if fmt == "text":
        return text
    if fmt == "lines":
        return text.splitlines()
    if fmt == "json":
        return json.loads(text)
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if fmt == "yaml":
        try:
            return safe_load(text, str(path))
        except UnsafeYAMLError as exc:
            raise TaskError(f"step `{step}`: cannot read {path}: {exc}", "file.read") from None
    return list(csv.DictReader(io.StringIO(text)))


def format_text(content: Any, fmt: str) -> str:
    """Content as text in a format."""
    if fmt == "text":
        return content if isinstance(content, str) else str(content)
    if fmt == "lines":
        items = content if isinstance(content, list) else [content]
        return "".join(f"{item}\n" for item in items)
    if fmt == "json":
        return json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        items = content if isinstance(content, list) else [content]
        return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    if fmt == "yaml":
        return str(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    if fmt == "csv":
        rows = content if isinstance(content, list) else [content]
        out = io.StringIO()
        if rows:
            fields = list(dict.fromkeys(k for row in rows for k in row))
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue()
    raise TaskError(f"unknown format {fmt!r}. Formats: {', '.join(FORMATS)}.", "file.write")


@register_task("file.read")
def file_read_task(config: TaskConfig) -> Any:
    """Read ``path`` in ``format`` (text, lines, json, jsonl, yaml, csv; default text)."""
    path = config.path(config.require("path"))
    return read_text(path, str(config.inputs.get("format", "text")), config.name)


def _write(config: TaskConfig, mode: str) -> dict[str, Any]:
    path = config.path(config.require("path"))
    fmt = str(config.inputs.get("format", "text"))
    text = format_text(config.inputs.get("content", ""), fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode, encoding="utf-8") as handle:
        handle.write(text)
    return {"path": str(path), "bytes": len(text.encode())}


@register_task("file.write")
def file_write_task(config: TaskConfig) -> dict[str, Any]:
    """Write ``content`` to ``path`` in ``format``; folders are created."""
    return _write(config, "w")


@register_task("file.append")
def file_append_task(config: TaskConfig) -> dict[str, Any]:
    """Append ``content`` to ``path`` in ``format``."""
    return _write(config, "a")


@register_task("template")
def template_task(config: TaskConfig) -> str:
    """Render ``template`` (a string) or ``template_file``; write it to ``output`` if given.

    A ``template`` input is rendered with the step's inputs; a ``template_file`` is read
    and rendered against every namespace.
    """
    if "template_file" in config.raw_inputs or "template_file" in config.inputs:
        source = config.path(config.require("template_file")).read_text(encoding="utf-8")
        text = render(
            source,
            config.context,
            step=config.name,
            input_key="template_file",
            max_size=config.settings.get("max_render_size"),
        )
    else:
        text = config.require("template")
    text = text if isinstance(text, str) else json.dumps(text)
    output = config.inputs.get("output")
    if output:
        path = config.path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return text


__all__ = [
    "TaskConfig",
    "TaskHandler",
    "TemplateError",
    "create_task_handler",
    "get_task",
    "known_tasks",
    "register_task",
]
