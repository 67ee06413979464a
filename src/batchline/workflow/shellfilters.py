"""The shell filters of workflow templates: ``quote`` and ``shell_unsafe``.

``quote`` marks its output as quoted so it is never quoted twice; ``shell_unsafe`` (alias
``raw_shell``) marks a value as shell code the author wants pasted as is. How a command
uses the marks: :mod:`batchline.workflow.shellquote`.
"""

from __future__ import annotations

import shlex
from typing import Any

UNSAFE_FILTERS = ("shell_unsafe", "raw_shell")

__all__ = ["UNSAFE_FILTERS", "ShellQuoted", "ShellUnsafe", "quote_filter", "shell_unsafe_filter"]


class ShellQuoted(str):
    """Text already quoted for the shell (the ``quote`` filter's output).

    Outside quotes it is pasted as is (never quoted again); inside quotes the quoted text
    itself arrives (``"{{ x | quote }}"`` gives ``'x y'``, for commands that parse their
    argument again). ``raw`` keeps the value before quoting.
    """

    raw: str

    def __new__(cls, quoted: str, raw: str) -> ShellQuoted:
        made = super().__new__(cls, quoted)
        made.raw = raw
        return made


class ShellUnsafe(str):
    """Text the author asked to paste into the command as shell code (``| shell_unsafe``)."""


def quote_filter(value: Any) -> ShellQuoted:
    """``{{ x | quote }}``: one shell word; a list becomes one word per element.

    Quoting twice is a no-op: the output is marked as quoted.
    """
    if isinstance(value, ShellQuoted):
        return value
    if isinstance(value, list | tuple):
        words = [str(v) for v in value]
        return ShellQuoted(" ".join(shlex.quote(w) for w in words), " ".join(words))
    text = str(value)
    return ShellQuoted(shlex.quote(text), text)


def shell_unsafe_filter(value: Any) -> ShellUnsafe:
    """``{{ x | shell_unsafe }}``: the value is shell code, pasted as is (never for items)."""
    return ShellUnsafe(value)
