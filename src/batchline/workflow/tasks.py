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
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from batchline.workflow.errors import TaskError, TaskLoadError, TemplateError
from batchline.workflow.processes import run_shielded
from batchline.workflow.pycode import code_problem, code_scope
from batchline.workflow.safeyaml import UnsafeYAMLError, safe_load
from batchline.workflow.schema import did_you_mean
from batchline.workflow.task_api import (
    _REGISTRY,
    TaskConfig,
    TaskHandler,
    accepted_inputs,
    create_task_handler,
    register_task,
)
from batchline.workflow.templating import render_file

_ENTRY_POINTS_LOADED = False
FORMATS = ("text", "lines", "json", "jsonl", "yaml", "csv")


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
                register_task(point.name)(point.load())  # a config handler or a plain function
            except Exception as exc:  # a broken plug-in must not break other tasks
                _REGISTRY[point.name] = _broken(point.name, exc)


def _broken(name: str, error: Exception) -> TaskHandler:
    def handler(config: TaskConfig) -> Any:
        del config
        raise TaskError(f"task `{name}` failed to load from its entry point: {error}", name)

    return handler


def import_task_modules(located: Any) -> None:
    """Import the modules named in a workflow's ``settings.task_modules`` (their
    ``@register_task`` functions become task types), with the workflow file's folder on
    the import path; a module that does not import is a ``WorkflowError`` naming it."""
    from batchline.workflow.errors import WorkflowError  # noqa: PLC0415

    data = located.data if isinstance(located.data, dict) else {}
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    modules = settings.get("task_modules") if isinstance(settings, dict) else None
    if not isinstance(modules, list):
        return
    folder = Path(located.source).resolve().parent if located.source else None
    problems = []
    for index, name in enumerate(modules):
        if not isinstance(name, str):
            continue
        try:
            with _on_path(folder):
                importlib.import_module(name)
        except Exception as exc:
            problems.append(
                f"{located.where(('settings', 'task_modules', index))}: task module `{name}` "
                f"does not import: {type(exc).__name__}: {exc}. It is looked up next to the "
                f"workflow file ({folder}) and on PYTHONPATH."
            )
    if problems:
        raise WorkflowError(problems)


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


@register_task("echo", inputs={"message", "value"})
def echo_task(config: TaskConfig) -> Any:
    """Return ``message`` (or ``value``) as the result: for wiring and testing."""
    return config.inputs.get("message", config.inputs.get("value"))


SHELL_INPUTS = {"command", "env", "cwd", "working_dir", "timeout", "shell"}


@register_task("shell", inputs=SHELL_INPUTS)
def shell_task(config: TaskConfig) -> dict[str, Any]:
    """Run ``command`` through ``/bin/sh`` (a string), or directly (a list).

    Inputs: ``command`` (also yaml-workflow's ``{unix: ..., windows: ...}``), ``env``
    (merged over the workflow's), ``cwd`` (or ``working_dir``; default: where the command
    ran), ``timeout`` (seconds), ``shell: false`` to split a string command into arguments
    instead of using the shell. A non-zero exit fails with the exit code and the tail of
    stderr. Result: ``{"stdout", "stderr", "returncode", "return_code"}``
    (``return_code`` is yaml-workflow's name for the same number).
    """
    command = config.require("command")
    if isinstance(command, Mapping):
        command = _platform_command(config, command)
    env = {**os.environ, **_strings(config.context.get("env", {}))}
    env.update(_strings(config.inputs.get("env") or {}))
    folder = config.inputs.get("cwd") or config.inputs.get("working_dir")
    cwd = config.path(folder) if folder else config.base_dir
    timeout = config.inputs.get("timeout")
    use_shell = not isinstance(command, list) and config.inputs.get("shell", True) is not False
    if not use_shell and isinstance(command, str):
        import shlex  # noqa: PLC0415

        command = shlex.split(command)
    try:
        # In a session of its own: a Ctrl-C to the terminal lets it finish (processes.py).
        done = run_shielded(
            command if isinstance(command, list) else str(command),
            shell=use_shell,
            cwd=cwd,
            env=env,
            timeout=float(timeout) if timeout is not None else None,
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
    return {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "returncode": done.returncode,
        "return_code": done.returncode,
    }


def _platform_command(config: TaskConfig, command: Mapping[str, Any]) -> Any:
    key, other = ("windows", "unix") if os.name == "nt" else ("unix", "windows")
    if key in command:
        return command[key]
    if other in command:
        return command[other]
    raise TaskError(
        f"step `{config.name}`: `command` is a mapping with keys {sorted(command)}; expected "
        "a string, a list, or {unix: ..., windows: ...}",
        "shell",
    )


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}


def load_function(config: TaskConfig | str, target: object) -> Callable[..., Any]:
    """``package.module:func`` (or ``package.module.func``) imported; ``TaskLoadError``
    (never retried) if it does not load.

    ``config`` is the step's ``TaskConfig`` (or just the step's name, where no config
    exists yet, as in a batch's preflight on a Ray worker). The workflow's folder is on the
    import path, so a module next to the workflow file needs no PYTHONPATH.
    """
    step = config if isinstance(config, str) else config.name
    task = "python" if isinstance(config, str) else config.type
    folder = None if isinstance(config, str) else config.settings.get("workflow_dir")
    text = str(target)
    module_name, sep, attribute = text.partition(":")
    if not sep:
        module_name, _, attribute = text.rpartition(".")
    if not module_name or not attribute:
        raise TaskLoadError(
            f"step `{step}`: `function` is {text!r}; expected 'package.module:func'", task
        )
    try:
        with _on_path(folder):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskLoadError(
            f"step `{step}`: cannot load `{text}`: cannot import `{module_name}`: "
            f"{type(exc).__name__}: {exc}. Put {module_name.split('.')[0]}.py (or its "
            "package) next to the workflow file"
            + (f" ({folder})" if folder else "")
            + ", or set PYTHONPATH to the folder that holds it (e.g. PYTHONPATH=/path/to/dir); "
            "on Ray, ship it with settings.ray.runtime_env working_dir or py_modules.",
            task,
        ) from None
    func = getattr(module, attribute, None)
    if not callable(func):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise TaskLoadError(
            f"step `{step}`: cannot load `{text}`: `{module_name}` has no function "
            f"`{attribute}`.{did_you_mean(attribute, names)}",
            task,
        )
    return func  # type: ignore[no-any-return]


@contextmanager
def _on_path(folder: Any) -> Iterator[None]:
    """Put a folder on ``sys.path`` (at the end: it never shadows installed modules; it
    stays, so modules imported from it can import their neighbours later)."""
    if folder and str(folder) not in sys.path:
        sys.path.append(str(folder))
    yield


@register_task("python")
def python_task(config: TaskConfig) -> Any:
    """Call ``function: package.module:func`` with the other inputs as keyword arguments,
    or run ``code:`` that sets ``result`` (or ``result_variable``). The code is static (a
    template in it is refused): values reach it as variables (``inputs``, ``args``,
    ``env``, ``steps``, ``batch``, ...; see :func:`batchline.workflow.pycode.code_scope`).
    """
    inputs = dict(config.inputs)
    if "function" in inputs:
        func = load_function(config, str(inputs.pop("function")))
        return func(**inputs)
    code = config.require("code")
    problem = code_problem(config.raw_inputs.get("code", code))
    if problem is not None:
        raise TaskError(f"step `{config.name}`: {problem}", config.type)
    scope = code_scope(config, inputs)
    exec(compile(str(code), f"<step {config.name}>", "exec"), scope)  # noqa: S102 - user code by design
    return scope[str(inputs.get("result_variable") or "result")]


def read_text(path: Path, fmt: str, step: str) -> Any:
    """File content in a format: text, lines, json, jsonl, yaml or csv.

    A file that does not parse in its format is an error naming the step, the path,
    the line and the column.
    """
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
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _parse_error(step, path, "JSON", exc.lineno, exc.colno, exc.msg) from None
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise _parse_error(
                        step, path, "JSON Lines", number, exc.colno, exc.msg
                    ) from None
        return rows
    if fmt == "yaml":
        try:
            return safe_load(text, str(path))
        except UnsafeYAMLError as exc:
            raise TaskError(f"step `{step}`: cannot read {path}: {exc}", "file.read") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            row, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            raise _parse_error(step, path, "YAML", row, column, str(exc.problem)) from None
    return list(csv.DictReader(io.StringIO(text)))


def _parse_error(step: str, path: Path, kind: str, line: int, column: int, why: str) -> TaskError:
    return TaskError(
        f"step `{step}`: {path}:{line}:{column}: not valid {kind} ({why}); check the file, or "
        "read it with `format: text`",
        "file.read",
    )


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


@register_task("file.read", inputs={"path", "file", "format"})
def file_read_task(config: TaskConfig) -> Any:
    """Read ``path`` (or ``file``) in ``format`` (text, lines, json, jsonl, yaml, csv;
    default text)."""
    path = config.path(config.require("path", "file"))
    return read_text(path, str(config.inputs.get("format", "text")), config.name)


def _write(config: TaskConfig, mode: str) -> dict[str, Any]:
    path = config.path(config.require("path", "file"))
    fmt = str(config.inputs.get("format", "text"))
    text = format_text(config.inputs.get("content", ""), fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode, encoding="utf-8") as handle:
        handle.write(text)
    return {"path": str(path), "bytes": len(text.encode())}


@register_task("file.write", inputs={"path", "file", "content", "format"})
def file_write_task(config: TaskConfig) -> dict[str, Any]:
    """Write ``content`` to ``path`` in ``format``; folders are created."""
    return _write(config, "w")


@register_task("file.append", inputs={"path", "file", "content", "format"})
def file_append_task(config: TaskConfig) -> dict[str, Any]:
    """Append ``content`` to ``path`` in ``format``."""
    return _write(config, "a")


@register_task("template")
def template_task(config: TaskConfig) -> Any:
    """Render ``template`` (a string) or ``template_file``; write it to ``output`` (or
    yaml-workflow's ``output_file``) if given.

    A ``template`` input is rendered with the step's inputs; a ``template_file`` is read
    and rendered against every namespace; an error in it names ``file:line``.
    ``{% include "x" %}`` finds ``x`` next to the workflow file. The result is the text;
    with ``output_file`` it is yaml-workflow's ``{"path": ..., "content": ...}``.
    """
    if "template_file" in config.raw_inputs or "template_file" in config.inputs:
        path = config.path(config.require("template_file"))
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TaskError(
                f"step `{config.name}`: cannot read template_file {path}: {exc.strerror or exc}",
                "template",
            ) from None
        text = render_file(
            source,
            config.context,
            step=config.name,
            source_name=str(path),
            input_key="template_file",
            max_size=config.settings.get("max_render_size"),
        )
    else:
        text = config.require("template")
    text = text if isinstance(text, str) else json.dumps(text)
    output = config.inputs.get("output") or config.inputs.get("output_file")
    if output:
        path = config.path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if "output_file" in config.inputs:
            return {"path": str(path), "content": text}
    return text


__all__ = [
    "TaskConfig",
    "TaskHandler",
    "TemplateError",
    "accepted_inputs",
    "create_task_handler",
    "get_task",
    "known_tasks",
    "register_task",
]
