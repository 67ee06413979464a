"""Static checks of a workflow (``batchline validate``): references that cannot resolve."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from batchline.workflow.schema import WorkflowSpec, did_you_mean
from batchline.workflow.shellquote import UNSAFE_FILTERS
from batchline.workflow.templating import references, unsafe_filters
from batchline.workflow.yamlfile import Located


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, (*path, index))
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, (*path, key))


def static_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    """References to steps not defined before use, and to undeclared args.

    ``args.x | default(...)`` is allowed for an undeclared ``x`` (it has a fallback).
    """
    problems: list[str] = []
    declared = set(spec.params)
    names = [step.name for step in spec.steps]
    env_strings = [(("env", k), v) for k, v in spec.env.items() if isinstance(v, str)]
    for path, text in env_strings:
        problems += _check(text, path, declared, set(), names, located)
    for index, step in enumerate(spec.steps):
        before = set(names[:index])
        sources = list(_strings(step.inputs, ("steps", index, "inputs")))
        if isinstance(step.when, str):
            sources.append((("steps", index, "when"), step.when))
        for path, text in sources:
            problems += _check(text, path, declared, before, names, located)
    return problems


def unsafe_uses(spec: WorkflowSpec, located: Located) -> list[str]:
    """Warnings: every ``| shell_unsafe`` (or ``| raw_shell``), which pastes a value into a
    command as shell code."""
    warnings: list[str] = []
    for index, step in enumerate(spec.steps):
        for path, text in _strings(step.inputs, ("steps", index, "inputs")):
            for name in unsafe_filters(text):
                warnings.append(
                    f"{located.where(path)}: step `{step.name}` uses `| {name}`: that value "
                    "runs as shell code. Make sure it can never come from items, params, "
                    "data files or LLM answers; otherwise drop the filter (values are "
                    "escaped by default)"
                )
    return warnings


__all__ = ["UNSAFE_FILTERS", "static_problems", "unsafe_uses"]


def _check(
    text: str,
    path: tuple[Any, ...],
    declared: set[str],
    before: set[str],
    names: list[str],
    located: Located,
) -> list[str]:
    problems = []
    where = located.where(path)
    for namespace, name, has_default in references(text):
        if namespace == "args" and name not in declared and not has_default:
            problems.append(
                f"{where}: `args.{name}` is not a declared param.{did_you_mean(name, declared)} "
                f"Declare it under `params`, or give it a fallback: args.{name} | default(...)"
            )
        if namespace == "steps" and name not in before:
            later = name in names
            problems.append(
                f"{where}: `steps.{name}` "
                + (
                    "runs later, so its result does not exist yet"
                    if later
                    else f"is not a step.{did_you_mean(name, names)}"
                )
            )
    return problems
