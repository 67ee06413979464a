"""Python ``code:`` in workflows: static source, values reach it as variables.

Item and param values never become code: a template inside ``code:`` is refused (at
``batchline validate``, before a run starts, and by the task itself), and the values a
snippet needs are variables of its scope (:func:`code_scope`): ``inputs`` (the step's
other inputs, rendered), ``args``, ``env``, ``steps``, ``workflow``, ``batch``,
``context`` (every namespace), ``workspace``, ``config``, and each input by its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, TemplateSyntaxError, nodes

if TYPE_CHECKING:
    from batchline.workflow.tasks import TaskConfig

#: Task types whose ``code`` input is Python source (extend for aliases).
CODE_TASKS: set[str] = {"python", "python_code"}
_PARSER = Environment()  # noqa: S701 - only parses code to find templates, renders nothing

__all__ = ["CODE_TASKS", "code_problem", "code_scope"]


def code_problem(code: Any) -> str | None:
    """Why ``code`` cannot run as it is (it holds template syntax), or None."""
    if not isinstance(code, str) or not ("{{" in code or "{%" in code or "{#" in code):
        return None
    try:
        tree = _PARSER.parse(code)
    except TemplateSyntaxError:
        tree = None
    if tree is not None and all(
        isinstance(node, nodes.Output)
        and all(isinstance(child, nodes.TemplateData) for child in node.nodes)
        for node in tree.body
    ):
        return None  # only static text (e.g. a `{% raw %}` block)
    return (
        "`code` holds a template ({{ ... }} or {% ... %}); values never become code. Pass "
        'them as inputs and use variables instead: `inputs: {name: "{{ batch.item }}", '
        "code: \"result = name.upper()\"}` (or `inputs['name']`, `batch['item']`, "
        "`args['x']`). To write `{{` literally, wrap the code in {% raw %}...{% endraw %}"
    )


def code_scope(config: TaskConfig, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The variables a ``code:`` snippet runs with (see the module docstring)."""
    context = config.context
    scope: dict[str, Any] = {
        name: value for name, value in inputs.items() if name.isidentifier() and name != "code"
    }
    scope.update(
        {
            "inputs": dict(inputs),
            **{name: context.get(name, {}) for name in ("args", "env", "steps", "workflow")},
            "batch": context.get("batch", {}),
            "context": context,
            "workspace": config.workspace,
            "config": config,
            "result": None,
        }
    )
    return scope
