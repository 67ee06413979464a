"""yaml-workflow's task types, so its workflow files run unchanged.

Each keeps yaml-workflow's inputs and result shape: ``python_code``,
``python_function``, ``python_script``, ``python_module``, ``print_message``,
``print_vars``, ``read_file``/``write_file``/``append_file``, ``read_json``/
``write_json``, ``read_yaml``/``write_yaml``, ``copy_file``/``move_file``/
``delete_file``, ``noop``, ``fail``, ``hello_world``, ``add_numbers``, ``join_strings``,
``create_greeting``. Relative paths resolve where batchline's do: against the folder
the command runs from (yaml-workflow's ``workspace`` variable is that folder here).
"""

from __future__ import annotations

import json
import pprint
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from batchline.workflow.errors import TaskError
from batchline.workflow.pycode import code_problem, code_scope
from batchline.workflow.task_api import TaskConfig, register_task
from batchline.workflow.tasks import load_function, read_text
from batchline.workflow.templating import render


@register_task("python_code")
def python_code(config: TaskConfig) -> Any:
    """Run ``code``; its result is the variable ``result`` (or ``result_variable``).

    The code sees every other input as a variable, plus ``args``, ``env``, ``steps``,
    ``batch``, ``context`` (all namespaces and built-ins), ``config`` and ``workspace``.
    """
    inputs = dict(config.inputs)
    code = config.require("code")
    if not isinstance(code, str) or not code.strip():
        raise TaskError(
            f"step `{config.name}`: input `code` must be Python source text", "python_code"
        )
    problem = code_problem(config.raw_inputs.get("code", code))
    if problem is not None:
        raise TaskError(f"step `{config.name}`: {problem}", config.type)
    scope = code_scope(config, inputs)
    name = str(inputs.get("result_variable") or "result")
    exec(compile(code, f"<step {config.name}>", "exec"), scope)  # noqa: S102 - the author's code
    if name not in scope:
        raise TaskError(
            f"step `{config.name}`: the code did not set `{name}` (result_variable)", "python_code"
        )
    return scope[name]


@register_task("python_function", inputs={"module", "function", "args", "kwargs"})
def python_function(config: TaskConfig) -> Any:
    """Call ``module``.``function`` with ``args`` (a list) and ``kwargs`` (a mapping)."""
    module = config.require("module")
    function = config.require("function")
    args = config.inputs.get("args") or []
    kwargs = config.inputs.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise TaskError(
            f"step `{config.name}`: `args` must be a list and `kwargs` a mapping "
            "(e.g. args: [1, 2], kwargs: {sep: ','})",
            "python_function",
        )
    func = load_function(config, f"{module}:{function}")
    return func(*args, **kwargs)


def _run_python(config: TaskConfig, command: list[str], label: str) -> dict[str, Any]:
    args = config.inputs.get("args") or []
    if not isinstance(args, list):
        raise TaskError(f"step `{config.name}`: `args` must be a list of strings", config.type)
    cwd = config.path(config.inputs["cwd"]) if config.inputs.get("cwd") else config.base_dir
    timeout = config.inputs.get("timeout")
    try:
        done = subprocess.run(  # noqa: S603 - the author's script
            [*command, *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=float(timeout) if timeout is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"step `{config.name}`: {label} timed out after {timeout}s") from None
    result = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    if config.inputs.get("check", True) and done.returncode != 0:
        raise TaskError(
            f"step `{config.name}`: {label} failed with exit code {done.returncode}"
            + (f"\n{done.stderr.strip()[-2000:]}" if done.stderr.strip() else ""),
            config.type,
        )
    return result


@register_task("python_script", inputs={"script_path", "args", "cwd", "timeout", "check"})
def python_script(config: TaskConfig) -> dict[str, Any]:
    """Run ``script_path`` with this Python; result ``{returncode, stdout, stderr}``."""
    script = config.path(config.require("script_path"))
    if not script.exists():
        found = shutil.which(Path(str(config.inputs["script_path"])).name)
        if found is None:
            raise TaskError(
                f"step `{config.name}`: script {script} not found (nor on PATH)", "python_script"
            )
        script = Path(found)
    return _run_python(config, [sys.executable, str(script)], f"script {script}")


@register_task("python_module", inputs={"module", "args", "cwd", "timeout", "check"})
def python_module(config: TaskConfig) -> dict[str, Any]:
    """Run ``python -m module``; result ``{returncode, stdout, stderr}``."""
    module = str(config.require("module"))
    return _run_python(config, [sys.executable, "-m", module], f"module {module}")


@register_task("print_message", inputs={"message"})
def print_message(config: TaskConfig) -> dict[str, Any]:
    """Print ``message`` on standard output."""
    message = config.inputs.get("message", "")
    text = message if isinstance(message, str) else str(message)
    print(text, flush=True)
    return {"success": True, "printed_length": len(text)}


@register_task("print_vars", inputs={"message"})
def print_vars(config: TaskConfig) -> dict[str, Any]:
    """Print the workflow's variables and step results (for debugging)."""
    context = config.context
    lines = [
        f"\n--- {config.inputs.get('message', 'Current Context Variables:')} ---",
        "Workflow Variables:",
        "==================",
        f"args: {dict(context.get('args') or {})}",
        f"workflow_name: {context.get('workflow_name')}",
        f"workspace: {context.get('workspace')}",
        f"output: {context.get('output')}",
        f"run_number: {context.get('run_number')}",
        f"timestamp: {context.get('timestamp')}",
        "\nStep Results:",
        "=============",
    ]
    steps = context.get("steps") or {}
    plain = {
        name: {"result": dict(record).get("result")}
        for name, record in steps.items()
        if dict(record).get("status", "completed") == "completed"
    }
    lines.append(pprint.pformat(plain, indent=2) if plain else "  (No step results yet)")
    lines.append("--------------------\n")
    print("\n".join(lines), flush=True)
    return {"success": True}


def _file(config: TaskConfig) -> Path:
    return config.path(str(config.require("file")))


def _encoding(config: TaskConfig) -> str:
    return str(config.inputs.get("encoding", "utf-8"))


def _write_text(config: TaskConfig, text: str, mode: str = "w") -> Path:
    path = _file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode, encoding=_encoding(config)) as handle:
        handle.write(text)
    return path


def _content(config: TaskConfig) -> str:
    content = config.inputs.get("content")
    if content is None:
        raise TaskError(f"step `{config.name}`: `{config.type}` needs `content`", config.type)
    return content if isinstance(content, str) else str(content)


@register_task("write_file", inputs={"file", "content", "encoding"})
def write_file(config: TaskConfig) -> dict[str, Any]:
    """Write ``content`` to ``file``; result ``{path, content}``."""
    content = _content(config)
    return {"path": str(_write_text(config, content)), "content": content}


@register_task("append_file", inputs={"file", "content", "encoding"})
def append_file(config: TaskConfig) -> dict[str, Any]:
    """Append ``content`` to ``file``; result ``{path, content}``."""
    content = _content(config)
    return {"path": str(_write_text(config, content, "a")), "content": content}


@register_task("read_file", inputs={"file", "encoding"})
def read_file(config: TaskConfig) -> dict[str, Any]:
    """Read ``file``; result ``{path, content}`` (``path`` as given)."""
    path = _file(config)
    try:
        content = path.read_text(encoding=_encoding(config))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"step `{config.name}`: cannot read {path}: {exc}", "read_file") from None
    return {"path": config.inputs["file"], "content": content}


@register_task("write_json", inputs={"file", "data", "indent", "encoding"})
def write_json(config: TaskConfig) -> dict[str, Any]:
    """Write ``data`` as JSON (``indent``, default 2); result ``{path}``."""
    if config.inputs.get("data") is None:
        raise TaskError(f"step `{config.name}`: `write_json` needs `data`", "write_json")
    indent = int(config.inputs.get("indent", 2))
    return {"path": str(_write_text(config, json.dumps(config.inputs["data"], indent=indent)))}


@register_task("read_json", inputs={"file", "encoding"})
def read_json(config: TaskConfig) -> dict[str, Any]:
    """Read a JSON file; result ``{data}``."""
    return {"data": read_text(_file(config), "json", config.name)}


@register_task("write_yaml", inputs={"file", "data", "encoding"})
def write_yaml(config: TaskConfig) -> dict[str, Any]:
    """Write ``data`` as YAML; result ``{path}``."""
    if config.inputs.get("data") is None:
        raise TaskError(f"step `{config.name}`: `write_yaml` needs `data`", "write_yaml")
    text = yaml.safe_dump(config.inputs["data"], default_flow_style=False)
    return {"path": str(_write_text(config, text))}


@register_task("read_yaml", inputs={"file", "encoding"})
def read_yaml(config: TaskConfig) -> dict[str, Any]:
    """Read a YAML file; result ``{data}``."""
    return {"data": read_text(_file(config), "yaml", config.name)}


def _move(config: TaskConfig, keep: bool) -> dict[str, Any]:
    source = config.path(str(config.require("source")))
    destination = config.path(str(config.require("destination")))
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = shutil.copy2(source, destination) if keep else shutil.move(source, destination)
    except OSError as exc:
        raise TaskError(f"step `{config.name}`: {config.type} failed: {exc}", config.type) from None
    return {"source": config.inputs["source"], "destination": str(done)}


@register_task("copy_file", inputs={"source", "destination"})
def copy_file(config: TaskConfig) -> dict[str, Any]:
    """Copy ``source`` to ``destination``."""
    return _move(config, keep=True)


@register_task("move_file", inputs={"source", "destination"})
def move_file(config: TaskConfig) -> dict[str, Any]:
    """Move ``source`` to ``destination``."""
    return _move(config, keep=False)


@register_task("delete_file", inputs={"file"})
def delete_file(config: TaskConfig) -> dict[str, Any]:
    """Delete ``file`` (a missing file is fine)."""
    path = _file(config)
    path.unlink(missing_ok=True)
    return {"path": str(path)}


@register_task("noop")
def noop(config: TaskConfig) -> dict[str, Any]:
    """Do nothing (``should_fail: true`` fails); result: the inputs and variables."""
    if config.inputs.get("should_fail"):
        raise TaskError(f"step `{config.name}`: task failed as requested", "noop")
    return {
        "processed_inputs": dict(config.inputs),
        "task_name": config.name,
        "task_type": config.type,
        "available_variables": config.get_available_variables(),
    }


@register_task()
def fail(message: str = "Task failed") -> None:
    """Always fail with ``message``."""
    raise RuntimeError(message)


@register_task()
def hello_world(name: str = "World") -> str:
    """``Hello, NAME!``."""
    return f"Hello, {name}!"


@register_task()
def add_numbers(a: float, b: float) -> float:
    """``a + b``."""
    return a + b


@register_task()
def join_strings(*strings: str, separator: str = " ") -> str:
    """The ``strings`` joined by ``separator``."""
    return separator.join(strings)


@register_task()
def create_greeting(name: str, context: dict[str, Any]) -> str:
    """``Hello NAME!``, rendered as a template with the workflow's variables."""
    result = render("Hello {{ name }}!", {**context, "name": name}, input_key="greeting")
    return str(result)


__all__ = [
    "add_numbers",
    "create_greeting",
    "fail",
    "hello_world",
    "join_strings",
    "print_message",
    "print_vars",
    "python_code",
    "python_function",
]
