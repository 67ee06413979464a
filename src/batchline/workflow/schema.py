"""The workflow file's schema (pydantic), validated once, every problem at once.

Problems carry ``file:line`` and, for an unknown key or task, the closest valid name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batchline.engine.retry import RetryPolicy
from batchline.workflow.errors import WorkflowError
from batchline.workflow.yamlfile import Located

ParamType = Literal[
    "string",
    "integer",
    "number",
    "boolean",
    "list",
    "object",
    "array",
    "dict",
    "str",
    "int",
    "float",
    "bool",
]
# yaml-workflow's spellings of the same types.
TYPE_ALIASES = {
    "array": "list",
    "dict": "object",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ItemSpec(_Strict):
    """The type of each element of a list param (``items: {type: number}``)."""

    type: ParamType = "string"
    description: str = ""

    @property
    def kind(self) -> str:
        """The canonical type name."""
        return TYPE_ALIASES.get(self.type, self.type)


class ParamSpec(_Strict):
    """A declared parameter: ``name=value`` on the command line, ``args.name`` in templates.

    Constraints (checked on the default at validate time and on the given value at run
    time): ``choices`` (``enum`` and ``allowedValues`` are yaml-workflow's names for it),
    ``minLength``/``maxLength`` (strings), ``minItems``/``maxItems`` and ``items`` (lists:
    ``items: {type: number}`` types each element), ``minimum``/``maximum`` (numbers),
    ``pattern`` (a regular expression a string must match).
    """

    type: ParamType = "string"
    default: Any = None
    required: bool = False
    choices: list[Any] | None = None
    enum: list[Any] | None = None
    allowedValues: list[Any] | None = None  # noqa: N815 - yaml-workflow's key
    minLength: int | None = Field(None, ge=0)  # noqa: N815 - yaml-workflow's key
    maxLength: int | None = Field(None, ge=0)  # noqa: N815 - yaml-workflow's key
    minItems: int | None = Field(None, ge=0)  # noqa: N815 - yaml-workflow's key
    maxItems: int | None = Field(None, ge=0)  # noqa: N815 - yaml-workflow's key
    items: ItemSpec | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    description: str = ""

    @property
    def kind(self) -> str:
        """The canonical type name (``array`` is ``list``, ``dict`` is ``object`` ...)."""
        return TYPE_ALIASES.get(self.type, self.type)

    @property
    def allowed(self) -> list[Any] | None:
        """The allowed values, whichever key declared them."""
        for values in (self.choices, self.enum, self.allowedValues):
            if values is not None:
                return values
        return None


class RetrySpec(_Strict):
    """Retries: ``max_attempts`` in all, waiting ``delay`` then ``delay * backoff`` ...

    ``delay`` is a minimum: with the default ``jitter: 0`` every wait is exactly the
    computed one; ``jitter: 0.3`` lets waits spread over 70-100% of it (several workers
    then do not retry in lock-step). ``backoff`` is a multiplier, or one of yaml-workflow's
    words: ``fixed`` (1), ``linear`` (taken as 1.5) and ``exponential`` (2).
    """

    max_attempts: int = Field(3, ge=1)
    delay: float = Field(0.5, ge=0)
    backoff: float | Literal["fixed", "linear", "exponential"] = 2.0
    max_delay: float = Field(30.0, ge=0)
    jitter: float = Field(0.0, ge=0, le=1)

    @field_validator("backoff")
    @classmethod
    def _backoff_at_least_one(cls, value: Any) -> Any:
        if isinstance(value, int | float) and value < 1:
            raise ValueError("backoff is a multiplier >= 1 (e.g. backoff: 2)")
        return value

    def policy(self) -> RetryPolicy:
        """The engine's retry policy for this spec (template errors are terminal)."""
        multiplier = self.backoff
        if isinstance(multiplier, str):
            multiplier = {"fixed": 1.0, "linear": 1.5, "exponential": 2.0}[multiplier]
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.delay,
            multiplier=float(multiplier),
            max_backoff=max(self.max_delay, self.delay),
            jitter=self.jitter,
        )


OnErrorAction = Literal["fail", "continue", "retry", "next", "skip"]


class OnErrorSpec(_Strict):
    """What a failure of the step does.

    ``action``: ``fail`` the run (default), ``continue``, ``skip`` (same as continue),
    ``retry`` (retry, then fail or jump to ``next``), ``next`` (jump to the step ``next``).
    ``retry``: a :class:`RetrySpec`, or yaml-workflow's number of retries (``retry: 2``:
    three attempts, ``delay`` seconds apart). ``message``: a template for the error kept
    for the step; ``{{ error }}`` is the error (``error.step``, ``error.message``).
    """

    action: OnErrorAction = "fail"
    retry: RetrySpec | int | None = None
    delay: float | None = Field(None, ge=0)
    next: str | None = None
    message: str | None = None

    @field_validator("retry")
    @classmethod
    def _retries_not_negative(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError("retry is a number of retries >= 0 (e.g. retry: 2)")
        return value

    def retry_spec(self) -> RetrySpec | None:
        """The retries as a :class:`RetrySpec` (``retry: N`` means N retries, fixed delay)."""
        if isinstance(self.retry, RetrySpec):
            return self.retry
        retries = self.retry
        if retries is None and self.action == "retry":
            retries = 3  # yaml-workflow's default number of retries
        if isinstance(retries, int) and retries > 0:
            return RetrySpec(max_attempts=retries + 1, delay=self.delay or 0.0, backoff="fixed")
        return None


class StepSpec(_Strict):
    """One step of a workflow.

    ``when`` (batchline) and ``condition`` (yaml-workflow) both decide whether the step
    runs. ``when`` is an expression (braces optional) judged by truth; ``condition`` keeps
    yaml-workflow's meaning exactly: the template is rendered and the step runs only when
    the text is ``True``. ``retry`` is yaml-workflow's step-level retry (a number of
    attempts, or ``{max_attempts, delay, backoff}``).
    """

    name: str = Field(min_length=1)
    task: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    when: str | bool | None = None
    condition: str | bool | None = None
    on_error: OnErrorSpec = Field(default_factory=OnErrorSpec)
    retry: RetrySpec | int | None = None
    description: str = ""

    @field_validator("on_error", mode="before")
    @classmethod
    def _on_error_shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str) and value in ("continue", "fail", "skip"):
            return {"action": value}
        return value

    @field_validator("retry")
    @classmethod
    def _attempts_at_least_one(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError("retry is a number of attempts >= 1 (e.g. retry: 3)")
        return value

    def retry_spec(self) -> RetrySpec | None:
        """This step's retries: ``on_error`` first, then the step-level ``retry``."""
        spec = self.on_error.retry_spec()
        if spec is not None:
            return spec
        if isinstance(self.retry, RetrySpec):
            return self.retry
        if isinstance(self.retry, int) and self.retry > 1:
            return RetrySpec(
                max_attempts=self.retry, delay=self.on_error.delay or 0.0, backoff="fixed"
            )
        return None


class ErrorHandlingSpec(_Strict):
    """yaml-workflow's ``settings.error_handling``: batchline is always strict and always
    shows the available names, so only those values are accepted."""

    undefined_variables: Literal["strict"] = "strict"
    show_available: bool = True


class SettingsSpec(_Strict):
    """Run settings.

    ``max_workers`` is yaml-workflow's name for ``max_concurrency``; ``task_modules``
    are Python modules imported before the workflow is checked (custom tasks registered
    with ``@register_task()``; the workflow's folder is on the import path);
    ``log_level`` sets the level of batchline's loggers.
    """

    max_concurrency: int = Field(4, ge=1)
    max_workers: int | None = Field(None, ge=1)
    workspace: str = ".batchline"
    backend: Literal["local", "ray"] = "local"
    task_modules: list[str] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    error_handling: ErrorHandlingSpec | None = None

    @property
    def concurrency(self) -> int:
        """Items in flight: ``max_workers`` when given, else ``max_concurrency``."""
        return self.max_workers or self.max_concurrency


class FlowsSpec(_Strict):
    """yaml-workflow's ``flows``: named step sequences, one run with ``--flow NAME``.

    ``definitions`` is a list of one-key mappings ``{NAME: [step, ...]}``; ``default``
    names the flow run without ``--flow`` (``all``, or no flows at all, runs every step).
    """

    default: str | None = None
    definitions: list[dict[str, list[str]]] = Field(default_factory=list)

    def names(self) -> list[str]:
        """The flow names, in order."""
        return [name for definition in self.definitions for name in definition]

    def steps_of(self, name: str) -> list[str] | None:
        """The steps of flow ``name`` (None if there is no such flow)."""
        for definition in self.definitions:
            if name in definition:
                return list(definition[name])
        return None


class WorkflowSpec(_Strict):
    """A whole workflow file."""

    name: str = Field(min_length=1)
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict, alias="params")
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    steps: list[StepSpec] = Field(min_length=1)
    flows: FlowsSpec | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _params_from_names(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            # yaml-workflow's short form `name: value` is a param with that default.
            return {
                name: spec if isinstance(spec, dict) else {"default": spec, "type": _type_of(spec)}
                for name, spec in value.items()
            }
        return value


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"


_FIELDS: dict[str, list[str]] = {
    "root": ["name", "description", "params", "args", "env", "settings", "steps", "flows"],
    "step": list(StepSpec.model_fields),
    "param": list(ParamSpec.model_fields),
    "settings": list(SettingsSpec.model_fields),
    "on_error": list(OnErrorSpec.model_fields),
    "retry": list(RetrySpec.model_fields),
    "flows": list(FlowsSpec.model_fields),
    "error_handling": list(ErrorHandlingSpec.model_fields),
    "items": list(ItemSpec.model_fields),
}

# Names people write for a key that exists under another name: these win over
# spelling-based guesses (`if` is `when`, not `inputs` because both are short).
SYNONYMS: dict[str, dict[str, str]] = {
    "step": {
        "if": "when",
        "cond": "condition",
        "input": "inputs",
        "args": "inputs",
        "params": "inputs",
        "parameters": "inputs",
        "with": "inputs",
        "type": "task",
        "uses": "task",
        "run": "task",
        "retries": "retry",
        "on_failure": "on_error",
        "onerror": "on_error",
        "desc": "description",
    },
    "param": {
        "options": "choices",
        "values": "choices",
        "allowed": "choices",
        "allowed_values": "allowedValues",
        "min_length": "minLength",
        "max_length": "maxLength",
        "min_items": "minItems",
        "max_items": "maxItems",
        "min": "minimum",
        "max": "maximum",
        "regex": "pattern",
        "desc": "description",
        "optional": "required",
        "kind": "type",
    },
    "on_error": {"retries": "retry", "goto": "next", "jump": "next", "then": "action"},
    "retry": {
        "attempts": "max_attempts",
        "max_retries": "max_attempts",
        "retries": "max_attempts",
        "wait": "delay",
        "multiplier": "backoff",
        "max_wait": "max_delay",
    },
    "settings": {"concurrency": "max_concurrency", "workers": "max_workers"},
    "root": {"parameters": "params", "inputs": "params", "tasks": "steps", "flow": "flows"},
}


def closest(
    name: str, options: Iterable[str], synonyms: Mapping[str, str] | None = None
) -> str | None:
    """The closest valid name, if any is close: a known synonym first, then spelling.

    Spelling counts only when the names are really alike (a misspelt ``conditon`` is
    ``condition``; ``items`` is not ``choices``).
    """
    choices = list(options)
    if synonyms and name in synonyms and synonyms[name] in choices:
        return synonyms[name]
    lowered = {option.lower(): option for option in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    if not matches:
        matches = [
            option
            for option in difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
            if option[0].lower() == name[:1].lower()
        ][:1]
    return matches[0] if matches else None


def did_you_mean(
    name: str, options: Iterable[str], synonyms: Mapping[str, str] | None = None
) -> str:
    """`` Did you mean `x`?`` or an empty string."""
    match = closest(name, options, synonyms)
    return f" Did you mean `{match}`?" if match else ""


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


def _normalise(data: dict[str, Any], located: Located, problems: list[str]) -> dict[str, Any]:
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


def parse_workflow(located: Located, known_tasks: Callable[[], Iterable[str]]) -> WorkflowSpec:
    """Validate a parsed file; raise ``WorkflowError`` with every problem and its line."""
    data = located.data
    problems: list[str] = []
    if not isinstance(data, dict):
        raise WorkflowError(
            [
                f"{located.where(())}: a workflow is a mapping with `name` and `steps`, "
                f"not a {type(data).__name__}"
            ]
        )
    data = _normalise(data, located, problems)
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems += _describe_all(exc.errors(), located, data)
    problems += _step_problems(data.get("steps"), located, set(known_tasks()))
    if spec is not None:
        problems += _param_problems(spec, located)
        problems += _flow_problems(spec, located)
    if problems:
        raise WorkflowError(sorted(set(problems), key=_line_order))
    assert spec is not None
    return spec


def _line_order(problem: str) -> tuple[int, str]:
    head = problem.split(": ", 1)[0]
    line = head.rsplit(":", 1)[-1]
    return (int(line) if line.isdigit() else 0, problem)


def _describe_all(errors: list[Any], located: Located, data: dict[str, Any]) -> list[str]:
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


def _step_problems(steps: Any, located: Located, tasks: set[str]) -> list[str]:
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


def _param_problems(spec: WorkflowSpec, located: Located) -> list[str]:
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


def _flow_problems(spec: WorkflowSpec, located: Located) -> list[str]:
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
