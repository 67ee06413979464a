"""The workflow file's schema (pydantic), validated once, every problem at once.

Problems carry ``file:line`` and, for an unknown key or task, the closest valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batchline.engine import RetryPolicy
from batchline.workflow.errors import WorkflowError
from batchline.workflow.pycode import CODE_TASKS, code_problem
from batchline.workflow.sandbox import DEFAULT_MAX_RENDER_SIZE
from batchline.workflow.yamlfile import Located

ParamType = Literal["string", "integer", "number", "boolean", "list", "object"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParamSpec(_Strict):
    """A declared parameter: ``name=value`` on the command line, ``args.name`` in templates."""

    type: ParamType = "string"
    default: Any = None
    required: bool = False
    choices: list[Any] | None = None
    description: str = ""


class RetrySpec(_Strict):
    """Retries: ``max_attempts`` in all, waiting ``delay`` then ``delay * backoff`` ..."""

    max_attempts: int = Field(3, ge=1)
    delay: float = Field(0.5, ge=0)
    backoff: float = Field(2.0, ge=1)
    max_delay: float = Field(30.0, ge=0)

    def policy(self) -> RetryPolicy:
        """The engine's retry policy for this spec (template errors are terminal)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.delay,
            multiplier=self.backoff,
            max_backoff=self.max_delay,
        )


class OnErrorSpec(_Strict):
    """What a failure of the step does: ``fail`` the run (default) or ``continue``."""

    action: Literal["fail", "continue"] = "fail"
    retry: RetrySpec | None = None


class StepSpec(_Strict):
    """One step of a workflow."""

    name: str = Field(min_length=1)
    task: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    when: str | bool | None = None
    on_error: OnErrorSpec = Field(default_factory=OnErrorSpec)
    description: str = ""


class RaySettingsSpec(_Strict):
    """``settings.ray``: the cluster, what workers need, and what each batch task asks for."""

    address: str | None = None
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    memory: int | None = Field(None, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("runtime_env")
    @classmethod
    def _known_runtime_env(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = ("working_dir", "py_modules", "pip", "env_vars", "excludes", "conda", "uv")
        unknown = [key for key in value if key not in known]
        if unknown:
            raise ValueError(
                f"unknown runtime_env key(s) {', '.join(unknown)}; expected {', '.join(known)}"
            )
        return value

    def options(self) -> dict[str, Any]:
        """The non-empty settings, as ``RayBackend.from_settings`` takes them."""
        return {k: v for k, v in self.model_dump().items() if v not in (None, {}, [])}


class SettingsSpec(_Strict):
    """Run settings."""

    max_concurrency: int = Field(4, ge=1)
    workspace: str = ".batchline"
    backend: Literal["local", "ray"] = "local"
    state: str | None = None
    """Where the run's state lives: a SQLite path or ``postgresql://...`` (default
    ``WORKSPACE/state.db``)."""
    ray: RaySettingsSpec = Field(default_factory=RaySettingsSpec)
    confine_paths: bool = False
    max_render_size: int = Field(DEFAULT_MAX_RENDER_SIZE, ge=1)
    # LLM prices in USD per 1M tokens, {model: [input, cached_input, output]}, over genai-prices
    prices: dict[str, Any] = Field(default_factory=dict)


class WorkflowSpec(_Strict):
    """A whole workflow file."""

    name: str = Field(min_length=1)
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict, alias="params")
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("params", mode="before")
    @classmethod
    def _params_from_names(cls, value: Any) -> Any:
        return value if value is not None else {}


_FIELDS: dict[str, list[str]] = {
    "root": ["name", "description", "params", "args", "env", "secrets", "settings", "steps"],
    "step": list(StepSpec.model_fields),
    "param": list(ParamSpec.model_fields),
    "settings": list(SettingsSpec.model_fields),
    "on_error": list(OnErrorSpec.model_fields),
    "retry": list(RetrySpec.model_fields),
}


def closest(name: str, options: Iterable[str]) -> str | None:
    """The closest valid name, if any is close."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` Did you mean `x`?`` or an empty string."""
    match = closest(name, options)
    return f" Did you mean `{match}`?" if match else ""


def _kind(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        if "retry" in loc[2:]:
            return "retry"
        if "on_error" in loc[2:]:
            return "on_error"
        return "step"
    if loc and loc[0] == "params":
        return "param"
    if loc and loc[0] == "settings":
        return "settings"
    return "root"


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
    data = dict(data)
    if "args" in data:
        if "params" in data:
            problems.append(
                f"{located.where(('args',))}: use `params` or its alias `args`, not both"
            )
        data["params"] = data.pop("args")
        if ("args",) in located.lines:
            located.lines[("params",)] = located.lines[("args",)]
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(_describe(error, located))
    problems += _step_problems(data.get("steps"), located, set(known_tasks()))
    if spec is not None:
        problems += _param_problems(spec, located)
    if problems:
        raise WorkflowError(sorted(set(problems), key=_line_order))
    assert spec is not None
    return spec


def _line_order(problem: str) -> tuple[int, str]:
    head = problem.split(": ", 1)[0]
    line = head.rsplit(":", 1)[-1]
    return (int(line) if line.isdigit() else 0, problem)


def _describe(error: Any, located: Located) -> str:
    loc = tuple(error["loc"])
    where = located.where(loc)
    kind = error["type"]
    dotted = ".".join(str(part) for part in loc) or "(top)"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        hint = did_you_mean(name, _FIELDS[_kind(loc[:-1])])
        return f"{where}: unknown key `{name}` in {_place(loc[:-1])}.{hint}"
    if kind == "missing":
        return f"{where}: {_place(loc[:-1])} is missing the required key `{loc[-1]}`"
    found = error.get("input")
    found_text = repr(found) if not isinstance(found, dict | list) else type(found).__name__
    return f"{where}: `{dotted}`: {error['msg']} (found {found_text})"


def _place(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return f"step {loc[1] + 1}" + (f" `{rest}`" if rest else "")
    if not loc:
        return "the workflow"
    return "`" + ".".join(str(p) for p in loc) + "`"


def _step_problems(steps: Any, located: Located, tasks: set[str]) -> list[str]:
    """Duplicate names and unknown task types, from the raw steps (so they are reported
    together with any schema problem)."""
    problems: list[str] = []
    if not isinstance(steps, list):
        return problems
    seen: dict[str, int] = {}
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
        task = step.get("task")
        raw_inputs = step.get("inputs")
        inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
        if isinstance(task, str):
            problems += _task_problems(task, inputs, tasks, located, ("steps", index))
    return problems


def _param_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    problems: list[str] = []
    for name, param in spec.params.items():
        where = located.where(("params", name))
        if param.default is not None and not _fits(param.type, param.default):
            problems.append(
                f"{where}: param `{name}` has default {param.default!r}, which is not a "
                f"{param.type}"
            )
        if (
            param.choices is not None
            and param.default is not None
            and (param.default not in param.choices)
        ):
            problems.append(
                f"{where}: param `{name}` default {param.default!r} is not one of its choices "
                f"{param.choices}"
            )
    return problems


def _task_problems(
    task: str, inputs: dict[str, Any], tasks: set[str], located: Located, path: tuple[Any, ...]
) -> list[str]:
    problems = []
    if task not in tasks:
        problems.append(
            f"{located.where((*path, 'task'))}: unknown task type `{task}`."
            f"{did_you_mean(task, tasks)} Known tasks: {', '.join(sorted(tasks))}."
        )
    if task in CODE_TASKS:
        problem = code_problem(inputs.get("code"))
        if problem is not None:
            problems.append(f"{located.where((*path, 'inputs', 'code'))}: {problem}")
    if task == "batch":
        nested = inputs.get("task")
        if not isinstance(nested, dict) or "task" not in nested:
            problems.append(
                f"{located.where((*path, 'inputs'))}: a batch step needs `inputs.task` with the "
                "nested task, e.g. task: {task: shell, inputs: {command: ...}}"
            )
        else:
            extra = set(nested) - {"task", "inputs"}
            for key in sorted(extra):
                problems.append(
                    f"{located.where((*path, 'inputs', 'task', key))}: unknown key `{key}` in the "
                    f"nested task.{did_you_mean(key, ['task', 'inputs'])}"
                )
            problems += _task_problems(
                str(nested["task"]),
                nested.get("inputs") or {},
                tasks,
                located,
                (*path, "inputs", "task"),
            )
        if "items" not in inputs:
            problems.append(
                f"{located.where((*path, 'inputs'))}: a batch step needs `inputs.items`"
            )
    return problems


def _fits(kind: str, value: Any) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return checks[kind](value)
