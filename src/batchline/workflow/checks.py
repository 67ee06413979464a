"""Static checks of a workflow (``batchline validate``): references that cannot resolve."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import TemplateAssertionError, TemplateSyntaxError

from batchline.workflow.schema import WorkflowSpec, did_you_mean
from batchline.workflow.shellquote import UNSAFE_FILTERS
from batchline.workflow.templating import ENV, is_template, references, unsafe_filters
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


def _sources(spec: WorkflowSpec) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """Every template of the file: ``(path, text, step name)``."""
    for name, value in spec.env.items():
        if isinstance(value, str):
            yield ("env", name), value, ""
    for index, step in enumerate(spec.steps):
        for path, text in _strings(step.inputs, ("steps", index, "inputs")):
            yield path, text, step.name
        for key in ("when", "condition"):
            value = getattr(step, key)
            if isinstance(value, str):
                if key == "when" and not is_template(value):
                    value = "{{ " + value + " }}"
                yield ("steps", index, key), value, step.name
        if step.on_error.message:
            yield ("steps", index, "on_error", "message"), step.on_error.message, step.name


def template_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    """Templates that do not compile: syntax errors, unknown filters and tests; each
    with ``file:line`` (the template's own line added), the step and the expression."""
    problems = []
    for path, text, step in _sources(spec):
        if not is_template(text):
            continue
        try:
            ENV.compile(text)
        except TemplateSyntaxError as exc:
            base = located.line_of(path) or 0
            # A block scalar (`|`) starts on the line after its key.
            offset = 1 if "\n" in text and base else 0
            line = base + offset + (exc.lineno or 1) - 1
            lines = text.splitlines()
            quoted = (
                lines[exc.lineno - 1].strip() if exc.lineno and exc.lineno <= len(lines) else text
            )
            where = f"step `{step}`, " if step else ""
            key = ".".join(str(p) for p in path[2:]) if step else ".".join(map(str, path))
            if isinstance(exc, TemplateAssertionError):
                from batchline.workflow.templating import _assertion  # noqa: PLC0415

                detail = _assertion(exc)
            else:
                detail = f"template syntax error: {exc.message}"
            problems.append(f"{located.source}:{line}: {where}`{key}`: `{quoted}`: {detail}")
    return problems


def static_warnings(spec: WorkflowSpec, located: Located) -> list[str]:
    """Things that are valid but probably not meant: a ``condition`` without braces
    is plain text, never ``True``, so its step never runs (yaml-workflow's meaning)."""
    warnings = []
    for index, step in enumerate(spec.steps):
        if isinstance(step.condition, str) and not is_template(step.condition):
            warnings.append(
                f"{located.where(('steps', index, 'condition'))}: step `{step.name}`: "
                f"`condition: {step.condition}` has no braces, so it is text, never True, "
                "and the step never runs (as in yaml-workflow). Write "
                f'condition: "{{{{ {step.condition} }}}}", or when: "{step.condition}".'
            )
    return warnings


def static_problems(spec: WorkflowSpec, located: Located) -> list[str]:
    """Templates that do not compile, references to steps not defined before use, and to
    undeclared args.

    ``args.x | default(...)`` is allowed for an undeclared ``x`` (it has a fallback).
    """
    problems: list[str] = template_problems(spec, located)
    declared = set(spec.params)
    names = [step.name for step in spec.steps]
    env_strings = [(("env", k), v) for k, v in spec.env.items() if isinstance(v, str)]
    for path, text in env_strings:
        problems += _check(text, path, declared, set(), names, located)
    for index, step in enumerate(spec.steps):
        before = set(names[:index])
        sources = list(_strings(step.inputs, ("steps", index, "inputs")))
        for key in ("when", "condition"):
            value = getattr(step, key)
            if isinstance(value, str):
                if key == "when" and not is_template(value):
                    value = "{{ " + value + " }}"
                sources.append((("steps", index, key), value))
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
