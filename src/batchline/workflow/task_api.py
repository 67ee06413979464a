"""The task API: ``TaskConfig``, the task registry, ``register_task`` and
``create_task_handler``.

Handlers take one ``TaskConfig``. ``register_task`` also takes yaml-workflow's plain
functions, whose keyword arguments are the step's inputs::

    @register_task()                 # the name is the function's: multiply_by
    def multiply_by(value: int, multiplier: int = 2) -> int:
        return value * multiplier

A parameter annotated ``TaskConfig`` receives the config, one named ``context`` the
namespaces, ``**kwargs`` the inputs no other parameter took.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from batchline.workflow.errors import TaskError
from batchline.workflow.paths import confine
from batchline.workflow.schema import did_you_mean

TaskHandler = Callable[["TaskConfig"], Any]
_REGISTRY: dict[str, TaskHandler] = {}
# Inputs each task accepts (None: any), so `batchline validate` can name a misspelt one.
_INPUTS: dict[str, frozenset[str] | None] = {}
_NAMESPACES = ("args", "env", "steps")


class TaskConfig:
    """What a task handler receives.

    Two ways to make one, side by side: yaml-workflow's positional
    ``TaskConfig(step, context, workspace)`` (``step`` is the step's mapping: ``name``,
    ``task``, ``inputs``) and batchline's keywords ``TaskConfig(name=..., type=...,
    inputs=..., workspace=..., base_dir=..., context=...)``. The earlier positional form
    in field order, ``TaskConfig(name, type, inputs, workspace, ...)`` (a string first),
    still works.

    Attributes:
        name: the step's name.
        type: the task type (``shell``, ``batch``, ...).
        inputs: the step's inputs (rendered when the runner made the config; as written
            in ``step`` for the positional form: ``process_inputs()`` renders them).
        workspace: the workflow's workspace folder.
        base_dir: the folder relative paths resolve against (where the command ran).
        context: the namespaces (``args``, ``env``, ``steps``, ``workflow``, maybe
            ``batch``) and the root built-ins (``run_number``, ``timestamp`` ...).
        raw_inputs: the inputs before rendering (the batch task renders its nested task).
        step: the step as a mapping.
    """

    def __init__(
        self,
        step: Mapping[str, Any] | str | None = None,
        context: Mapping[str, Any] | str | None = None,
        workspace: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *fields: Any,
        name: str | None = None,
        type: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        raw_inputs: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(step, str):
            # the earlier positional form, in field order: TaskConfig(name, type, inputs,
            # workspace, base_dir, context, raw_inputs, settings)
            given = [step, context, workspace, *fields]
            if len(given) > 8:
                raise TypeError(f"TaskConfig takes at most 8 fields, got {len(given)}")
            given += [None] * (8 - len(given))
            name, type, inputs = name or given[0], type or given[1], inputs or given[2]
            workspace, base_dir = given[3], base_dir or given[4]
            context = given[5] if given[5] is not None else None
            raw_inputs = raw_inputs or given[6]
            settings = settings or given[7]
            step = None
        elif fields:
            raise TypeError(
                "TaskConfig(step, context, workspace) takes 3 positional arguments; give the "
                "others by name (base_dir=..., settings=...)"
            )
        if isinstance(context, str) or isinstance(workspace, Mapping):
            raise TypeError("TaskConfig(step, context, workspace): context must be a mapping")
        step = dict(step or {})
        step_inputs = step.get("inputs")
        self.step: dict[str, Any] = step
        self.name: str = str(name if name is not None else step.get("name", ""))
        self.type: str = str(type if type is not None else step.get("task", ""))
        self.inputs: dict[str, Any] = dict(
            inputs
            if inputs is not None
            else (step_inputs if isinstance(step_inputs, Mapping) else {})
        )
        self.context: Mapping[str, Any] = context if context is not None else {}
        self.workspace = Path(workspace) if workspace is not None else Path.cwd()
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.raw_inputs: Mapping[str, Any] = (
            raw_inputs if raw_inputs is not None else dict(self.inputs)
        )
        self.settings: Mapping[str, Any] = settings if settings is not None else {}
        self._rendered = inputs is not None

    def __repr__(self) -> str:
        return f"TaskConfig(name={self.name!r}, type={self.type!r}, inputs={self.inputs!r})"

    @property
    def _context(self) -> Mapping[str, Any]:
        """yaml-workflow's name for ``context`` (its examples read it)."""
        return self.context

    def process_inputs(self) -> dict[str, Any]:
        """The inputs rendered against ``context`` (already rendered ones are returned)."""
        if not self._rendered:
            from batchline.workflow.templating import render  # noqa: PLC0415 - no cycle

            self.inputs = render(dict(self.inputs), self.context, step=self.name)
            self._rendered = True
        return self.inputs

    def get_variable(self, name: str, namespace: str | None = None) -> Any:
        """A variable by name, or ``None`` when absent.

        With ``namespace`` (``args``, ``env``, ``steps``, ``batch`` ...), from it; without,
        a top-level variable (``run_number``, ``workflow_name`` ...), else the first of
        ``args``, ``env``, ``steps`` that has it.
        """
        if namespace is not None:
            values = self.context.get(namespace)
            return values.get(name) if isinstance(values, Mapping) else None
        if name in self.context:
            return self.context[name]
        for space in _NAMESPACES:
            values = self.context.get(space)
            if isinstance(values, Mapping) and name in values:
                return values[name]
        return None

    def get_available_variables(self) -> dict[str, list[str]]:
        """Names per namespace: ``args``, ``env``, ``steps``, and ``root`` (the other
        top-level names)."""
        out: dict[str, list[str]] = {}
        for space in _NAMESPACES:
            values = self.context.get(space)
            out[space] = list(values) if isinstance(values, Mapping) else []
        out["root"] = [str(key) for key in self.context if key not in _NAMESPACES]
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

    def require(self, key: str, *aliases: str) -> Any:
        """An input that must be present (under ``key`` or one of its ``aliases``)."""
        for name in (key, *aliases):
            if name in self.inputs:
                return self.inputs[name]
        raise TaskError(
            f"step `{self.name}`: task `{self.type}` needs the input `{key}` "
            f"(inputs given: {', '.join(sorted(self.inputs)) or 'none'})",
            self.type,
        )


def _takes_only_config(func: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return True
    if len(params) != 1 or params[0].kind in (params[0].VAR_POSITIONAL, params[0].VAR_KEYWORD):
        return False
    return params[0].name == "config" or _is_config(func, params[0])


def _is_config(func: Callable[..., Any], param: inspect.Parameter) -> bool:
    annotation = param.annotation
    if annotation is TaskConfig:
        return True
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == "TaskConfig"
    try:
        return typing.get_type_hints(func).get(param.name) is TaskConfig
    except Exception:  # unresolvable annotations: not a TaskConfig
        return False


def plain_function_handler(func: Callable[..., Any], task: str) -> TaskHandler:
    """A handler calling ``func`` with the step's inputs as keyword arguments."""
    signature = inspect.signature(func)
    params = signature.parameters
    var_kw = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
    var_pos = next((p.name for p in params.values() if p.kind is p.VAR_POSITIONAL), None)
    config_param = next((p.name for p in params.values() if _is_config(func, p)), None)
    context_param = "context" if "context" in params and config_param != "context" else None
    named = [
        p.name
        for p in params.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in (config_param, context_param)
    ]

    def handler(config: TaskConfig) -> Any:
        inputs = config.process_inputs()
        kwargs: dict[str, Any] = {}
        positional: list[Any] = []
        for name in named:
            if name in inputs:
                kwargs[name] = inputs[name]
            elif params[name].default is inspect.Parameter.empty:
                raise TaskError(
                    f"step `{config.name}`: task `{task}` needs the input `{name}` (its "
                    f"function {func.__name__}() has no default for it; inputs given: "
                    f"{', '.join(sorted(inputs)) or 'none'})",
                    task,
                )
        extra = {k: v for k, v in inputs.items() if k not in kwargs}
        if var_pos is not None and var_pos in extra:
            value = extra.pop(var_pos)
            positional = list(value) if isinstance(value, list | tuple) else [value]
        if extra and var_kw is not None:
            kwargs.update(extra)
        elif extra:
            name = next(iter(sorted(extra)))
            raise TaskError(
                f"step `{config.name}`: task `{task}` has no input `{name}`."
                f"{did_you_mean(name, named)} Its inputs: {', '.join(named) or 'none'}.",
                task,
            )
        if config_param is not None:
            kwargs[config_param] = config
        if context_param is not None:
            kwargs[context_param] = config.context
        if positional:
            ordered = [
                kwargs.pop(name)
                for name in named
                if name in kwargs and params[name].kind is params[name].POSITIONAL_OR_KEYWORD
            ]
            return func(*ordered, *positional, **kwargs)
        return func(**kwargs)

    handler.__name__ = getattr(func, "__name__", task)
    handler.__doc__ = getattr(func, "__doc__", None)
    handler.__wrapped__ = func  # type: ignore[attr-defined]
    accepted = None if var_kw is not None else frozenset([*named, *([var_pos] if var_pos else [])])
    _INPUTS[task] = accepted
    return handler


@overload
def register_task(name: Callable[..., Any]) -> TaskHandler: ...
@overload
def register_task(
    name: str | None = None, *, inputs: frozenset[str] | set[str] | None = None
) -> Callable[[Callable[..., Any]], TaskHandler]: ...
def register_task(
    name: str | Callable[..., Any] | None = None,
    *,
    inputs: frozenset[str] | set[str] | None = None,
) -> Any:
    """Decorator: register a task type, ``@register_task("name")`` or ``@register_task()``
    (the function's name).

    A function taking one ``TaskConfig`` (annotated so, or a lone parameter named
    ``config``) is the handler itself; any other function gets the inputs as keyword
    arguments (see the module docstring). ``inputs`` lists the inputs a config-taking
    handler accepts, so ``batchline validate`` can name a misspelt one.
    """
    if callable(name):
        return register_task(None)(name)

    def decorate(func: Callable[..., Any]) -> TaskHandler:
        if not callable(func):
            raise TypeError(f"a task must be a function, not {func!r}")
        task = name or func.__name__
        if _takes_only_config(func):
            _REGISTRY[task] = func
            _INPUTS[task] = frozenset(inputs) if inputs is not None else None
            return func
        handler = plain_function_handler(func, task)
        _REGISTRY[task] = handler
        return handler

    return decorate


def create_task_handler(func: Callable[[TaskConfig], Any]) -> Callable[..., Any]:
    """Wrap ``func(config: TaskConfig)`` into a handler taking ``(step, context,
    workspace)`` (yaml-workflow's call); the handler also takes a ready ``TaskConfig``."""
    if not callable(func):
        raise TypeError(f"a task handler must be callable, not {func!r}")

    def handler(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and isinstance(args[0], TaskConfig):
            return func(args[0])
        return func(TaskConfig(*args, **kwargs))

    handler.__name__ = getattr(func, "__name__", "handler")
    handler.__doc__ = getattr(func, "__doc__", None)
    return handler


def accepted_inputs(task: str) -> frozenset[str] | None:
    """The inputs task ``task`` accepts, or None when it takes any."""
    return _INPUTS.get(task)


__all__ = [
    "TaskConfig",
    "TaskHandler",
    "accepted_inputs",
    "create_task_handler",
    "plain_function_handler",
    "register_task",
]
