"""Shell commands built from templates: every value is escaped for where it lands.

A ``command`` string is rendered with each ``{{ expression }}`` replaced by a slot; the
static text the author wrote is then read the way ``/bin/sh`` reads it (outside quotes,
inside ``'...'``, inside ``"..."``, in a comment, inside ``$( ... )``, in a here-document
body), and each value is escaped for the context its slot is in:

- outside quotes: ``shlex.quote`` (one word, whatever it holds);
- inside ``'...'``: a ``'`` in the value becomes ``'"'"'`` (close, quoted quote, reopen);
- inside ``"..."``: ``\\``, ``$``, a backtick and ``"`` get a backslash;
- in a comment: newlines become spaces (a comment ends at a newline);
- in a here-document body: as inside ``"..."`` (without ``"``) unless the delimiter is
  quoted; a value that would end the document early is refused.

So ``echo {{ x }}``, ``echo '{{ x }}'`` and ``echo "{{ x }}"`` all print ``x`` intact and
never run it. Two filters change that: ``quote`` (``shlex.quote``; its output is marked so
it is never quoted twice) and ``shell_unsafe`` (alias ``raw_shell``): the value is pasted
as shell code, on purpose; ``batchline validate`` warns about every use.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchline.workflow.errors import TemplateError
from batchline.workflow.shellfilters import (
    UNSAFE_FILTERS,
    ShellQuoted,
    ShellUnsafe,
    quote_filter,
    shell_unsafe_filter,
)

_WORD_BREAK = set(" \t\n;&|()<>")

__all__ = [
    "UNSAFE_FILTERS",
    "ShellQuoted",
    "ShellUnsafe",
    "assemble",
    "escape_for",
    "quote_filter",
    "shell_unsafe_filter",
]


def escape_for(mode: str, value: str) -> str:
    """``value`` escaped for a quoting context: ``out``, ``single``, ``double``, ``comment``."""
    if mode == "out":
        return shlex.quote(value)
    if mode == "single":
        return value.replace("'", "'\"'\"'")
    if mode == "double":
        return re.sub(r'([\\$`"])', r"\\\1", value)
    if mode == "comment":
        return value.replace("\n", " ")
    raise ValueError(f"unknown shell context {mode!r}")


class _Literal(str):
    """A value already escaped for an inner shell (``eval``, ``sh -c``): kept literally."""


_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "su", "runuser"}
_SHELL_FLAG = re.compile(r"-[A-Za-z]*c[A-Za-z]*")


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


@dataclass
class _Lexer:
    """The quoting state of a POSIX shell command read left to right."""

    step: str
    input_key: str
    expression: str
    mode: str = "out"  # out, single, double, comment, backtick, heredoc
    backslash: bool = False  # the last character was an unescaped backslash
    dollar: bool = False  # the last character was an unescaped `$`
    word_start: bool = True
    stack: list[tuple[str, str]] = field(default_factory=list)  # (closer, mode to return to)
    pending: list[_Heredoc] = field(default_factory=list)
    heredoc: _Heredoc | None = None
    line: list[str] = field(default_factory=list)  # the heredoc line so far
    line_has_value: bool = False
    out: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # the words of the current command so far
    word: list[str] | None = None  # what the command receives as the word being read
    inner: _Lexer | None = None  # reads what `eval` / `sh -c` will run, inside that argument
    inner_kind: str = ""  # "eval" (every later word), "c" (the next word), "done"

    def fail(self, why: str) -> TemplateError:
        where = ", ".join(
            part
            for part in (
                f"step `{self.step}`" if self.step else "",
                f"input `{self.input_key}`" if self.input_key else "",
            )
            if part
        )
        return TemplateError(
            f"{where + ': ' if where else ''}`{self.expression.strip()}`: {why}",
            step=self.step,
            input_key=self.input_key,
            expression=self.expression,
        )

    # -- static text ------------------------------------------------------------------

    def text(self, text: str) -> None:
        """Static text (the author's): emitted as is, and read to track the context."""
        index = 0
        while index < len(text):
            char = text[index]
            self.out.append(char)
            index += 1
            if self.mode == "heredoc":
                self._heredoc_char(char, from_value=False)
                continue
            if self.backslash:
                self.backslash = False
                self.dollar = False
                if self.mode == "out" and char != "\n":
                    self._literal(char)
                elif self.mode == "double" and char != "\n":
                    self._literal(char if char in '$`"\\' else "\\" + char)
                continue
            if self.mode == "single":
                if char == "'":
                    self.mode = "out"
                else:
                    self._literal(char)
                continue
            if self.mode == "comment":
                if char == "\n":
                    self.mode = "out"
                    self._newline()
                continue
            if self.mode == "backtick":
                if char == "\\":
                    self.backslash = True
                elif char == "`":
                    self.mode = self.stack.pop()[1]
                continue
            if self.mode == "double":
                index = self._double(char, index)
                continue
            index = self._outside(char, text, index)

    def _double(self, char: str, index: int) -> int:
        was_dollar, self.dollar = self.dollar, False
        if char == "\\":
            self.backslash = True
        elif char == '"':
            self.mode = "out"
        elif char == "`":
            self.stack.append(("`", "double"))
            self.mode = "backtick"
        elif char == "$":
            self.dollar = True
        elif char == "(" and was_dollar:
            self._end_command()  # a command inside the quotes: its own words
            self.stack.append((")", "double"))
            self.mode = "out"
            self.word_start = True
            return index
        if char not in '\\"':
            self._literal(char)
        return index

    def _outside(self, char: str, text: str, index: int) -> int:
        was_dollar, self.dollar = self.dollar, False
        starts_word = self.word_start
        self.word_start = char in _WORD_BREAK
        if char in " \t<>":
            self._end_word()
        elif char in ";&|()":
            self._end_command()
        elif char not in "\\'\"\n`" and not (char == "#" and starts_word):
            self._literal(char)
        if char == "\\":
            self.backslash = True
        elif char == "'":
            self.mode = "single"
            self._literal("")
        elif char == '"':
            self.mode = "double"
            self._literal("")
        elif char == "`":
            self.stack.append(("`", "out"))
            self.mode = "backtick"
        elif char == "#" and starts_word:
            self.mode = "comment"
        elif char == "$":
            self.dollar = True
        elif char == "(":
            self.stack.append((")", "out"))
        elif char == "{" and was_dollar:
            self.stack.append(("}", "out"))
        elif char in ")}" and self.stack and self.stack[-1][0] == char:
            self.mode = self.stack.pop()[1]
        elif char == "<" and text[index : index + 1] == "<" and text[index - 2 : index - 1] != "<":
            index = self._heredoc_operator(text, index)
        elif char == "\n":
            self._newline()
        return index

    def _heredoc_operator(self, text: str, index: int) -> int:
        """After ``<<``: read ``-`` and the delimiter word (static text only)."""
        self.out.append("<")
        index += 1
        if text[index : index + 1] == "<":  # `<<<` is a here-string: a plain word follows
            return index
        strip_tabs = text[index : index + 1] == "-"
        if strip_tabs:
            self.out.append("-")
            index += 1
        while index < len(text) and text[index] in " \t":
            self.out.append(text[index])
            index += 1
        match = re.match(r"""(?:'([^']*)'|"([^"]*)"|\\?([^\s;&|()<>'"]+))""", text[index:])
        if match is None or index >= len(text):
            raise self.fail(
                "a here-document delimiter must be written in the template, not come from a value"
            )
        word = match.group(0)
        self.out.append(word)
        delimiter = next(g for g in match.groups() if g is not None)
        self.pending.append(_Heredoc(delimiter, word[0] in "'\"\\", strip_tabs))
        self.word_start = False
        return index + len(word)

    # -- words: which argument is run again by `eval` or `sh -c` --------------------------

    def _literal(self, chars: str) -> None:
        """Characters the command receives as (part of) the word being read."""
        if self.word is None:
            self.word = []
        self.word.append(chars)
        if self.inner is not None and chars:
            self.inner.text(chars)

    def _end_word(self) -> None:
        if self.word is None:
            return
        finished = "".join(self.word)
        self.word = None
        self.words.append(finished)
        if self.inner is not None:
            if self.inner_kind == "c":
                self.inner, self.inner_kind = None, "done"
            else:
                self.inner.text(" ")  # eval joins its arguments with spaces
            return
        if self.inner_kind:
            return
        name = finished.rsplit("/", 1)[-1]
        if name == "eval":
            self.inner, self.inner_kind = self._child(), "eval"
        elif _SHELL_FLAG.fullmatch(finished) and any(
            word.rsplit("/", 1)[-1] in _SHELLS for word in self.words[:-1]
        ):
            self.inner, self.inner_kind = self._child(), "c"

    def _end_command(self) -> None:
        self._end_word()
        self.words, self.inner, self.inner_kind = [], None, ""

    def _child(self) -> _Lexer:
        return _Lexer(step=self.step, input_key=self.input_key, expression=self.expression)

    def _newline(self) -> None:
        self._end_command()
        self.word_start = True
        if self.pending and self.mode == "out" and not self.stack:
            self.heredoc = self.pending.pop(0)
            self.mode = "heredoc"
            self.line, self.line_has_value = [], False

    def _heredoc_char(self, char: str, *, from_value: bool) -> None:
        assert self.heredoc is not None
        if char != "\n":
            self.line.append(char)
            self.line_has_value = self.line_has_value or from_value
            return
        line = "".join(self.line)
        if self.heredoc.strip_tabs:
            line = line.lstrip("\t")
        has_value = self.line_has_value or from_value
        self.line, self.line_has_value = [], False
        if line != self.heredoc.delimiter:
            return
        if has_value:
            raise self.fail(
                f"a value would end the here-document early (a line reading "
                f"`{self.heredoc.delimiter}`); it cannot be placed there safely"
            )
        self.heredoc = None
        self.mode = "out"
        self._newline()

    # -- values -----------------------------------------------------------------------

    def value(self, value: Any) -> None:
        """A rendered value: escaped for the current context (or pasted, if unsafe)."""
        if isinstance(value, ShellUnsafe):
            self.text(str(value))
            return
        if self.inner is not None and self.mode in ("out", "single", "double"):
            start = len(self.inner.out)
            self.inner.value(value)  # escaped for the command `eval` / `sh -c` will run ...
            value = _Literal("".join(self.inner.out[start:]))  # ... and then for this one
        quoted = value if isinstance(value, ShellQuoted) else None
        text = str(value)
        if self.mode == "heredoc":
            assert self.heredoc is not None
            escaped = text if self.heredoc.quoted else re.sub(r"([\\$`])", r"\\\1", text)
            for char in escaped:
                self._heredoc_char(char, from_value=True)
            self.out.append(escaped)
            return
        if self.mode == "backtick":
            raise self.fail(
                "a value inside backticks cannot be quoted reliably; write $( ... ) instead"
            )
        prefix = ""
        if self.backslash and self.mode in ("out", "double"):
            prefix = "\n"  # the pending backslash then escapes a newline: a line continuation
        elif self.dollar and self.mode in ("out", "double"):
            prefix = '""'  # `$` then a value must never read as `$'...'`, `$(`, `${`
        if self.mode == "out" and quoted is not None:
            escaped = str(quoted)
        else:
            escaped = escape_for(self.mode, text)
        self.out.append(prefix + escaped)
        self.backslash = self.dollar = False
        if self.mode in ("out", "single", "double"):
            if self.word is None:
                self.word = []
            self.word.append(quoted.raw if quoted is not None and self.mode == "out" else text)
        if self.mode == "out":
            self.word_start = False


def assemble(
    parts: Iterable[str | Sequence[Any]],
    *,
    step: str = "",
    input_key: str = "",
    expression: str = "",
) -> str:
    """The command from static text (``str``) and values (a 1-tuple ``(value,)``), each
    value escaped for the quoting context it lands in."""
    lexer = _Lexer(step=step, input_key=input_key, expression=expression)
    for part in parts:
        if isinstance(part, str):
            lexer.text(part)
        else:
            lexer.value(part[0])
    return "".join(lexer.out)
