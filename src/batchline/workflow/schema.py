"""The workflow file's schema (pydantic), validated once, every problem at once.

Problems carry ``file:line`` and, for an unknown key or task, the closest valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batchline.engine import RetryPolicy
from batchline.workflow.errors import WorkflowError
from batchline.workflow.sandbox import DEFAULT_MAX_RENDER_SIZE
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
    state: str | None = None
    """Where the run's state lives: a SQLite path or ``postgresql://...`` (default
    ``WORKSPACE/state.db``)."""
    ray: RaySettingsSpec = Field(default_factory=RaySettingsSpec)
    confine_paths: bool = False
    max_render_size: int = Field(DEFAULT_MAX_RENDER_SIZE, ge=1)
    task_modules: list[str] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    error_handling: ErrorHandlingSpec | None = None
    # LLM prices in USD per 1M tokens, {model: [input, cached_input, output]}, over genai-prices
    prices: dict[str, Any] = Field(default_factory=dict)

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
    secrets: list[str] = Field(default_factory=list)
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
    "root": [
        "name",
        "description",
        "params",
        "args",
        "env",
        "secrets",
        "settings",
        "steps",
        "flows",
    ],
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
    from batchline.workflow.problems import (  # noqa: PLC0415 - problems imports the models
        describe_all,
        flow_problems,
        line_order,
        normalise,
        param_problems,
        step_problems,
    )

    data = normalise(data, located, problems)
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems += describe_all(exc.errors(), located, data)
    problems += step_problems(data.get("steps"), located, set(known_tasks()))
    if spec is not None:
        problems += param_problems(spec, located)
        problems += flow_problems(spec, located)
    if problems:
        raise WorkflowError(sorted(set(problems), key=line_order))
    assert spec is not None
    return spec


def batch_retry_problem(spec: Any) -> str:
    """What is wrong with a batch ``retry`` value (see ``problems``); empty: fine."""
    from batchline.workflow.problems import batch_retry_problem as check  # noqa: PLC0415

    return check(spec)
