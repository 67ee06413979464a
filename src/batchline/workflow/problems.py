"""Problems in a workflow file, found before anything runs: every one, with
``file:line``, the step's name, and the closest valid key or an example of the shape.

``schema.parse_workflow`` calls these; they read the raw parsed YAML as well as the
validated models, so schema problems and these are reported together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from batchline.workflow.pycode import CODE_TASKS, code_problem
from batchline.workflow.schema import (
    _FIELDS,
    SYNONYMS,
    RetrySpec,
    WorkflowSpec,
    did_you_mean,
)
from batchline.workflow.yamlfile import Located

# An example of the right shape, per key, for messages about a wrong value.
SHAPES: dict[str, str] = {
    "retry": "retry: {max_attempts: 3, delay: 0.5, backoff: 2} (or, on a step, retry: 3 attempts)",
    "on_error.retry": "on_error: {action: retry, retry: 2, delay: 1} (2 retries) or "
    "on_error: {retry: {max_attempts: 3, delay: 0.5}}",
    "max_attempts": "max_attempts: 3 (attempts in all, the first included; 1 = no retries)",
    "delay": "delay: 0.5 (seconds)",
    "backoff": "backoff: 2 (a multiplier) or backoff: exponential",
    "on_error": "on_error: {action: continue} or on_error: continue",
    "action": "action: fail | continue | retry | next | skip",
    "when": 'when: "{{ args.publish }}" or when: "args.publish"',
    "condition": 'condition: "{{ args.publish }}" (the step runs when this renders True)',
    "inputs": "inputs: {command: echo hi}",
    "params": "params: {chunk: {type: integer, default: 20}}",
    "type": "type: string | integer | number | boolean | list | object",
    "flows": "flows: {default: main, definitions: [{main: [step_a, step_b]}]}",
    "definitions": "definitions: [{main: [step_a, step_b]}]",
    "steps": "steps: [{name: hello, task: echo, inputs: {message: hi}}]",
    "settings": "settings: {max_concurrency: 4, workspace: .batchline}",
    "max_concurrency": "max_concurrency: 4",
    "max_workers": "max_workers: 4",
}

_TAGS = re.compile(r"^(int|str|float|bool|list|dict|none|literal\[.*|function-.*|[A-Z]\w*Spec)$")


def _clean(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The error's path without pydantic's union member tags (``int``, ``RetrySpec``)."""
    return tuple(part for part in loc if not (isinstance(part, str) and _TAGS.match(part)))


def _kind(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        if "retry" in loc[2:]:
            return "retry"
        if "on_error" in loc[2:]:
            return "on_error"
        return "step"
    if loc and loc[0] == "params":
        return "items" if "items" in loc[2:] else "param"
    if loc and loc[0] == "settings":
        return "error_handling" if "error_handling" in loc else "settings"
    if loc and loc[0] == "flows":
        return "flows"
    return "root"


def normalise(data: dict[str, Any], located: Located, problems: list[str]) -> dict[str, Any]:
    """yaml-workflow's accepted shapes, brought to batchline's: ``args`` for ``params``,
    steps as a mapping of name to step, a shell step's ``command`` beside ``inputs``."""
    data = dict(data)
    if "args" in data:
        if "params" in data:
            problems.append(
                f"{located.where(('args',))}: use `params` or its alias `args`, not both"
            )
        data["params"] = data.pop("args")
        for path, line in list(located.lines.items()):
            if path[:1] == ("args",):
                located.lines[("params", *path[1:])] = line
    steps = data.get("steps")
    if isinstance(steps, dict):
        listed = []
        for index, (name, step) in enumerate(steps.items()):
            for path, line in list(located.lines.items()):
                if path[:2] == ("steps", name):
                    located.lines[("steps", index, *path[2:])] = line
            listed.append({"name": name, **step} if isinstance(step, dict) else step)
        data["steps"] = steps = listed
    if isinstance(steps, list):
        fixed = []
        for index, raw in enumerate(steps):
            step = raw
            if isinstance(raw, dict) and "command" in raw and raw.get("task") == "shell":
                step = dict(raw)
                inputs = dict(step.get("inputs") or {})
                if "command" in inputs:
                    problems.append(
                        f"{located.where(('steps', index, 'command'))}: step "
                        f"`{step.get('name')}` has `command` both beside and inside `inputs`; "
                        "keep the one in inputs"
                    )
                inputs.setdefault("command", step.pop("command"))
                step["inputs"] = inputs
            fixed.append(step)
        data["steps"] = fixed
    return data


def line_order(problem: str) -> tuple[int, str]:
    head = problem.split(": ", 1)[0]
    line = head.rsplit(":", 1)[-1]
    return (int(line) if line.isdigit() else 0, problem)


def describe_all(errors: list[Any], located: Located, data: dict[str, Any]) -> list[str]:
    """One message per path (a union's members each report; one message is enough)."""
    grouped: dict[tuple[Any, ...], list[Any]] = {}
    for error in errors:
        grouped.setdefault(_clean(tuple(error["loc"])), []).append(error)
    return [_describe(loc, group, located, data) for loc, group in grouped.items()]


def _describe(loc: tuple[Any, ...], errors: list[Any], located: Located, data: Any) -> str:
    where = located.where(loc)
    error = errors[0]
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        section = _kind(loc[:-1])
        hint = did_you_mean(name, _FIELDS[section], SYNONYMS.get(section))
        return f"{where}: unknown key `{name}` in {_place(loc[:-1], data)}.{hint}"
    if kind == "missing":
        return f"{where}: {_place(loc[:-1], data)} is missing the required key `{loc[-1]}`"
    found = error.get("input")
    found_text = repr(found) if not isinstance(found, dict | list) else type(found).__name__
    field = str(loc[-1]) if loc else ""
    shape_key = "on_error.retry" if loc[-2:-1] == ("on_error",) and field == "retry" else field
    shape = SHAPES.get(shape_key)
    reasons = sorted({_reason(e) for e in errors})
    reason = reasons[0] if len(reasons) == 1 else "not a valid value"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        dotted = ".".join(str(p) for p in loc[2:]) or "(step)"
        subject = f"{_step_label(loc[1], data)}: `{dotted}`"
    else:
        subject = "`" + (".".join(str(p) for p in loc) or "(top)") + "`"
    return f"{where}: {subject} is {found_text}: {reason}" + (
        f". Expected e.g. {shape}" if shape else ""
    )


def _reason(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _place(loc: tuple[Any, ...], data: Any = None) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return _step_label(loc[1], data) + (f" `{rest}`" if rest else "")
    if not loc:
        return "the workflow"
    return "`" + ".".join(str(p) for p in loc) + "`"


def _step_label(index: int, data: Any) -> str:
    """``step `name``` (steps are named by name; by number only when nameless)."""
    steps = data.get("steps") if isinstance(data, dict) else None
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        name = steps[index].get("name")
        if isinstance(name, str) and name:
            return f"step `{name}`"
    return f"step {index + 1} (no name)"


def step_problems(steps: Any, located: Located, tasks: set[str]) -> list[str]:
    """Duplicate names and unknown task types, from the raw steps (so they are reported
    together with any schema problem)."""
    problems: list[str] = []
    if not isinstance(steps, list):
        return problems
    seen: dict[str, int] = {}
    names = [s.get("name") for s in steps if isinstance(s, dict)]
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        where = located.where(("steps", index))
        name = step.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"{where}: duplicate step name `{name}` (also step {seen[name] + 1}); "
                    "step names must be unique"
                )
            seen.setdefault(name, index)
        if "when" in step and "condition" in step:
            problems.append(
                f"{located.where(('steps', index, 'condition'))}: step `{name}` has both "
                "`when` and `condition`; keep one (condition runs the step when it renders "
                "True, when runs it when its expression is true)"
            )
        on_error = step.get("on_error")
        if isinstance(on_error, dict):
            target = on_error.get("next")
            if isinstance(target, str) and target not in names:
                problems.append(
                    f"{located.where(('steps', index, 'on_error', 'next'))}: step `{name}`: "
                    f"`on_error.next` is `{target}`, which is not a step."
                    f"{did_you_mean(target, [n for n in names if isinstance(n, str)])}"
                )
            if on_error.get("action") == "next" and not target:
                problems.append(
                    f"{located.where(('steps', index, 'on_error'))}: step `{name}`: "
                    "`action: next` needs `next: STEP` (the step to jump to)"
                )
        task = step.get("task")
        raw_inputs = step.get("inputs")
        inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
        if isinstance(task, str):
            problems += _task_problems(task, inputs, tasks, located, ("steps", index), name)
            if task == "batch" and isinstance(on_error, dict) and "retry" in on_error:
                problems.append(
                    f"{located.where(('steps', index, 'on_error', 'retry'))}: step `{name}`: "
                    "a batch step retries each item, not the step: move `retry` to "
                    "`inputs.retry` (e.g. inputs: {retry: {max_attempts: 3, delay: 0.5}})"
                )
    return problems


def param_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    from batchline.workflow.params import check_value  # noqa: PLC0415 - params imports us

    problems: list[str] = []
    for name, param in spec.params.items():
        where = located.where(("params", name))
        declared = [k for k in ("choices", "enum", "allowedValues") if getattr(param, k)]
        if len(declared) > 1:
            problems.append(
                f"{where}: param `{name}` declares its values twice ({', '.join(declared)}); "
                "keep one"
            )
        if param.default is not None:
            for problem in check_value(name, param, param.default):
                problems.append(f"{where}: default: {problem}")
    return problems


def flow_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    flows = spec.flows
    if flows is None:
        return []
    problems: list[str] = []
    names = [step.name for step in spec.steps]
    seen: set[str] = set()
    for index, definition in enumerate(flows.definitions):
        for flow, steps in definition.items():
            where = located.where(("flows", "definitions", index, flow))
            if flow in seen:
                problems.append(f"{where}: flow `{flow}` is defined twice")
            seen.add(flow)
            for step in steps:
                if step not in names:
                    problems.append(
                        f"{where}: flow `{flow}` names step `{step}`, which does not exist."
                        f"{did_you_mean(step, names)}"
                    )
    if flows.default and flows.default != "all" and flows.default not in seen:
        problems.append(
            f"{located.where(('flows', 'default'))}: the default flow `{flows.default}` is "
            f"not defined.{did_you_mean(flows.default, seen)} "
            f"Flows: {', '.join(sorted(seen)) or 'none'}"
        )
    return problems


def _task_problems(
    task: str,
    inputs: dict[str, Any],
    tasks: set[str],
    located: Located,
    path: tuple[Any, ...],
    step: Any = None,
) -> list[str]:
    problems = []
    label = f"step `{step}`: " if isinstance(step, str) else ""
    if task not in tasks:
        problems.append(
            f"{located.where((*path, 'task'))}: {label}unknown task type `{task}`."
            f"{did_you_mean(task, tasks)} Known tasks: {', '.join(sorted(tasks))}. A custom "
            "task's module is named in settings.task_modules (e.g. task_modules: [my_tasks])."
        )
    if task in CODE_TASKS:
        problem = code_problem(inputs.get("code"))
        if problem is not None:
            problems.append(f"{located.where((*path, 'inputs', 'code'))}: {label}{problem}")
    if task == "batch":
        nested = inputs.get("task")
        if not isinstance(nested, dict) or "task" not in nested:
            problems.append(
                f"{located.where((*path, 'inputs'))}: {label}a batch step needs `inputs.task` "
                "with the nested task, e.g. task: {task: shell, inputs: {command: ...}}"
            )
        else:
            extra = set(nested) - {"task", "inputs"}
            for key in sorted(extra):
                problems.append(
                    f"{located.where((*path, 'inputs', 'task', key))}: {label}unknown key "
                    f"`{key}` in the nested task.{did_you_mean(key, ['task', 'inputs'])}"
                )
            problems += _task_problems(
                str(nested["task"]),
                nested.get("inputs") or {},
                tasks,
                located,
                (*path, "inputs", "task"),
                step,
            )
        if "items" not in inputs:
            problems.append(
                f"{located.where((*path, 'inputs'))}: {label}a batch step needs `inputs.items`"
            )
        retry = inputs.get("retry")
        if retry is not None and not (isinstance(retry, str) and "{" in retry):
            problem = batch_retry_problem(retry)
            if problem:
                problems.append(f"{located.where((*path, 'inputs', 'retry'))}: {label}{problem}")
    if task in tasks:
        from batchline.workflow.tasks import accepted_inputs  # noqa: PLC0415 - tasks imports us

        accepted = accepted_inputs(task)
        if accepted is not None:
            for key in sorted(set(inputs) - accepted):
                problems.append(
                    f"{located.where((*path, 'inputs', key))}: {label}task `{task}` has no "
                    f"input `{key}`.{did_you_mean(key, accepted, INPUT_SYNONYMS)} Its inputs: "
                    f"{', '.join(sorted(accepted))}."
                )
    return problems


def batch_retry_problem(spec: Any) -> str:
    """What is wrong with a batch ``retry`` value, with the right shape (empty: fine)."""
    example = "e.g. retry: {max_attempts: 3, delay: 0.5, backoff: 2}"
    if not isinstance(spec, Mapping):
        return (
            f"`retry` is {spec!r}; a batch's retry is a mapping ({example}); "
            "max_attempts counts every attempt, the first included"
        )
    try:
        RetrySpec.model_validate(spec)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "retry"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key.{did_you_mean(where, RetrySpec.model_fields)}"
            reasons.append(f"`retry.{where}` is {error.get('input')!r}: {message}")
        return "; ".join(reasons) + f" ({example})"
    return ""


INPUT_SYNONYMS = {
    "chunk": "chunk_size",
    "size": "chunk_size",
    "concurrency": "max_concurrency",
    "workers": "max_workers",
    "retries": "retry",
    "cmd": "command",
    "filename": "path",
    "data": "content",
    "text": "content",
    "msg": "message",
}


__all__ = [
    "INPUT_SYNONYMS",
    "SHAPES",
    "batch_retry_problem",
    "describe_all",
    "flow_problems",
    "line_order",
    "normalise",
    "param_problems",
    "step_problems",
]
