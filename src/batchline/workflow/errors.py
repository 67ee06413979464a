"""Errors of the YAML workflow front door."""

from __future__ import annotations

from typing import Any

from batchline.errors import BatchlineError, ConfigurationError, TerminalError


class WorkflowError(ConfigurationError):
    """The workflow file or its params are invalid; ``problems`` lists every one found.

    The CLI exits with code 2 on it, before anything runs.
    """

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source and len(problems) == 1 else ""
        if len(problems) == 1:
            text = head + problems[0]
        else:
            listed = "\n".join(f"  {problem}" for problem in problems)
            text = f"{len(problems)} problems in {source or 'the workflow'}:\n{listed}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.source))


class TemplateError(TerminalError):
    """A template could not be rendered (never retried): names the step, input and expression."""

    def __init__(
        self, message: str, *, step: str = "", input_key: str = "", expression: str = ""
    ) -> None:
        super().__init__(message)
        self.step = step
        self.input_key = input_key
        self.expression = expression

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_template_error, (str(self), self.step, self.input_key, self.expression))


def _rebuild_template_error(
    message: str, step: str, input_key: str, expression: str
) -> TemplateError:
    return TemplateError(message, step=step, input_key=input_key, expression=expression)


class TaskError(BatchlineError):
    """A task failed (a non-zero exit, a missing file, an exception in a python task)."""

    def __init__(self, message: str, task: str = "") -> None:
        super().__init__(message)
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.task))


class TaskLoadError(TaskError, TerminalError):
    """A task's code cannot be loaded (a ``python`` task's ``function`` does not import).

    Deterministic: never retried, and checked before a batch step runs its first item.
    """
