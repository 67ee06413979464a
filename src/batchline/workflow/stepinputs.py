"""Rendering a step's inputs, each the way its task reads it.

Most inputs render as plain templates; a shell task's ``command`` renders with every
value escaped for its quoting context (:func:`batchline.workflow.templating.render_command`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchline.workflow.templating import render, render_command

#: Task types whose ``command`` input is run by the shell (extend for aliases).
SHELL_TASKS: set[str] = {"shell"}

__all__ = ["SHELL_TASKS", "render_inputs"]


def render_inputs(
    task: str,
    raw: Mapping[str, Any],
    namespaces: Mapping[str, Any],
    *,
    step: str,
    max_size: int | None = None,
) -> dict[str, Any]:
    """Render the inputs of a step running ``task``."""
    rendered: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "command" and task in SHELL_TASKS:
            rendered[key] = render_command(
                value, namespaces, step=step, input_key=key, max_size=max_size
            )
        else:
            rendered[key] = render(value, namespaces, step=step, input_key=key, max_size=max_size)
    return rendered
