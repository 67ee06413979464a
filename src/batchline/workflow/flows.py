"""Which steps run, and in what order: flows, ``--start-from``, ``--skip-steps``,
``when``/``condition``, and ``on_error.next`` jumps.

``condition`` keeps yaml-workflow's meaning exactly: the template is rendered and the
step runs only when the text is ``True`` (so a condition without braces, being plain
text, never runs the step; one that does not render skips it). ``when`` is batchline's:
an expression, braces optional, judged by its truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchline.workflow.errors import TemplateError, WorkflowError
from batchline.workflow.schema import StepSpec, WorkflowSpec, did_you_mean
from batchline.workflow.templating import Namespace, is_template, render

_FALSE = {"false", "no", "off", "0", "n", "", "none"}


class ErrorInfo(Namespace):
    """The ``error`` variable after a step failed: ``step``, ``message``, ``type``,
    ``attempts`` (and ``retry_count``, yaml-workflow's name for the retries made).
    ``{{ error }}`` renders as the message."""

    def __str__(self) -> str:
        return str(self.get("message", ""))


def error_info(step: str, error: BaseException | str, error_type: str, attempts: int) -> ErrorInfo:
    """The ``error`` variable for a failure of ``step``."""
    return ErrorInfo(
        step=step,
        message=str(error),
        type=error_type,
        attempts=attempts,
        retry_count=max(0, attempts - 1),
    )


def flow_steps(spec: WorkflowSpec, flow: str | None) -> list[StepSpec]:
    """The steps of ``flow`` (None: the default flow; ``all`` or no flows: every step)."""
    flows = spec.flows
    chosen = flow or (flows.default if flows is not None else None) or "all"
    if chosen == "all":
        return list(spec.steps)
    names = flows.steps_of(chosen) if flows is not None else None
    if names is None:
        known = flows.names() if flows is not None else []
        raise WorkflowError(
            [
                f"flow `{chosen}` is not defined.{did_you_mean(chosen, known)} Flows: "
                f"{', '.join(['all', *known])}."
            ]
        )
    by_name = {step.name: step for step in spec.steps}
    return [by_name[name] for name in names]


def plan(
    spec: WorkflowSpec,
    *,
    flow: str | None = None,
    start_from: str | None = None,
    skip_steps: list[str] | None = None,
) -> list[StepSpec]:
    """The steps to run, in order; unknown names are errors with the closest one."""
    steps = flow_steps(spec, flow)
    names = [step.name for step in steps]
    problems = []
    if start_from is not None and start_from not in names:
        problems.append(
            f"--start-from `{start_from}` is not a step of this run"
            f"{f' (flow `{flow}`)' if flow else ''}.{did_you_mean(start_from, names)} "
            f"Steps: {', '.join(names)}."
        )
    all_names = [step.name for step in spec.steps]
    for name in skip_steps or []:
        if name not in all_names:
            problems.append(
                f"--skip-steps names `{name}`, which is not a step.{did_you_mean(name, all_names)}"
            )
    if problems:
        raise WorkflowError(problems)
    if start_from is not None:
        steps = steps[names.index(start_from) :]
    skipped = set(skip_steps or [])
    return [step for step in steps if step.name not in skipped]


def jump_plan(spec: WorkflowSpec, target: str, skip_steps: list[str] | None) -> list[StepSpec]:
    """After ``on_error.next: target``: ``target`` and every step after it in the file
    (as yaml-workflow does), minus the skipped ones."""
    names = [step.name for step in spec.steps]
    skipped = set(skip_steps or [])
    return [step for step in spec.steps[names.index(target) :] if step.name not in skipped]


@dataclass(frozen=True)
class Decision:
    """Whether a step runs, and why not."""

    run: bool
    reason: str = ""


def decide(
    step: StepSpec, namespaces: Mapping[str, Any], *, max_size: int | None = None
) -> Decision:
    """Judge ``when`` and ``condition``.

    Raises:
        TemplateError: ``when`` does not render (a ``condition`` that does not render
            skips the step, as in yaml-workflow).
    """
    if step.when is not None:
        when = step.when
        if isinstance(when, str) and not is_template(when):
            when = "{{ " + when + " }}"  # `when: args.publish` is an expression
        value = render(when, namespaces, step=step.name, input_key="when", max_size=max_size)
        if isinstance(value, str):
            value = value.strip().lower() not in _FALSE
        if not value:
            return Decision(False, "when is false")
    if step.condition is not None:
        condition = step.condition
        if isinstance(condition, bool):
            return Decision(condition, "" if condition else "condition is false")
        try:
            text = str(
                render(
                    condition, namespaces, step=step.name, input_key="condition", max_size=max_size
                )
            )
        except TemplateError as exc:
            return Decision(False, f"condition could not be rendered ({exc})")
        if text.strip() != "True":
            return Decision(False, f"condition rendered {text.strip()!r}, not 'True'")
    return Decision(True)


__all__ = ["Decision", "ErrorInfo", "decide", "error_info", "flow_steps", "jump_plan", "plan"]
