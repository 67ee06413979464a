"""Workflow params: command-line values converted to their declared type and checked
against their constraints (yaml-workflow's ``enum``, ``minLength``, ``items`` ... included).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from batchline.workflow.errors import WorkflowError
from batchline.workflow.schema import ParamSpec, WorkflowSpec, did_you_mean

_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", ""}
_EXAMPLES = {
    "integer": "20",
    "number": "0.5",
    "boolean": "true or false",
    "list": "a,b,c or [1, 2]",
    "object": '{"k": "v"}',
    "string": "text",
}


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _convert(kind: str, text: str) -> Any:
    """``text`` as ``kind``; ``ValueError`` when it does not convert."""
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(text)
    if kind == "list":
        if text.startswith("["):
            value = json.loads(text)
            if not isinstance(value, list):
                raise ValueError(text)
            return value
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "object":
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value
    return text


def convert_param(name: str, spec: ParamSpec, raw: Any) -> Any:
    """A command-line value converted to the param's declared type (and a list's
    elements to ``items.type``)."""
    if not isinstance(raw, str):
        return raw
    kind = spec.kind
    try:
        value = _convert(kind, raw.strip() if kind != "string" else raw)
        if kind == "list" and spec.items is not None:
            item_kind = spec.items.kind
            value = [
                _convert(item_kind, v.strip())
                if isinstance(v, str) and item_kind != "string"
                else v
                for v in value
            ]
    except (ValueError, json.JSONDecodeError):
        raise WorkflowError(
            [
                f"param `{name}` is {raw!r}, which is not {_article(kind)} (e.g. {name}="
                f"{_EXAMPLES[kind]})"
            ]
        ) from None
    return value


def fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the canonical type ``kind``."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def check_value(name: str, spec: ParamSpec, value: Any) -> list[str]:
    """Every constraint ``value`` breaks, as messages naming the param (empty: fine)."""
    kind = spec.kind
    if value is None:
        return []
    if not fits(kind, value):
        return [
            f"param `{name}` is {value!r}, which is not {_article(kind)} "
            f"(e.g. {name}={_EXAMPLES[kind]})"
        ]
    problems: list[str] = []
    allowed = spec.allowed
    if allowed is not None and value not in allowed:
        problems.append(
            f"param `{name}` is {value!r}; expected one of {allowed}."
            + (did_you_mean(value, [str(v) for v in allowed]) if isinstance(value, str) else "")
        )
    if isinstance(value, str):
        if spec.minLength is not None and len(value) < spec.minLength:
            problems.append(
                f"param `{name}` is {value!r} ({len(value)} characters); expected at least "
                f"{spec.minLength} (minLength)"
            )
        if spec.maxLength is not None and len(value) > spec.maxLength:
            problems.append(
                f"param `{name}` has {len(value)} characters; expected at most "
                f"{spec.maxLength} (maxLength)"
            )
        if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
            problems.append(
                f"param `{name}` is {value!r}, which does not match the pattern {spec.pattern!r}"
            )
    if isinstance(value, list):
        if spec.minItems is not None and len(value) < spec.minItems:
            problems.append(
                f"param `{name}` has {len(value)} items; expected at least {spec.minItems} "
                "(minItems)"
            )
        if spec.maxItems is not None and len(value) > spec.maxItems:
            problems.append(
                f"param `{name}` has {len(value)} items; expected at most {spec.maxItems} "
                "(maxItems)"
            )
        if spec.items is not None:
            item_kind = spec.items.kind
            for index, item in enumerate(value):
                if not fits(item_kind, item):
                    problems.append(
                        f"param `{name}` item {index} is {item!r}, which is not "
                        f"{_article(item_kind)} (items: {{type: {spec.items.type}}})"
                    )
    if fits("number", value):
        if spec.minimum is not None and value < spec.minimum:
            problems.append(f"param `{name}` is {value}; expected at least {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            problems.append(f"param `{name}` is {value}; expected at most {spec.maximum}")
    return problems


def resolve_params(spec: WorkflowSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """Declared params (converted, defaulted, required, constrained).

    A ``name=value`` the workflow does not declare is an error with the closest declared
    name, unless the workflow declares no params at all (then every pair is passed
    through as a string, for quick scripts).
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, param in spec.params.items():
        if name in given:
            try:
                values[name] = convert_param(name, param, given[name])
            except WorkflowError as exc:
                problems += exc.problems
                continue
        elif param.default is not None:
            values[name] = param.default
        elif param.required:
            problems.append(
                f"param `{name}` is required ({param.description or param.type}); pass {name}=VALUE"
            )
            continue
        else:
            values[name] = None
        problems += check_value(name, param, values[name])
    undeclared = [name for name in given if name not in spec.params]
    if spec.params:
        for name in undeclared:
            problems.append(
                f"param `{name}` is not declared by the workflow.{did_you_mean(name, spec.params)}"
                f" Declared params: {', '.join(sorted(spec.params))}."
            )
    else:
        for name in undeclared:
            values[name] = given[name]
    if problems:
        raise WorkflowError(problems)
    return values


__all__ = ["check_value", "convert_param", "fits", "resolve_params"]
