"""Reading workflow YAML with the line of every value, so errors can point at it.

Parsed through :mod:`batchline.workflow.safeyaml` (bounded aliases, standard tags only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from batchline.workflow.errors import WorkflowError
from batchline.workflow.safeyaml import UnsafeYAMLError, compose

Path_ = tuple[str | int, ...]


class Located:
    """A parsed YAML document plus the line of each path in it."""

    def __init__(self, data: Any, lines: dict[Path_, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def where(self, path: Path_) -> str:
        """``file:line`` for a path."""
        line = self.line_of(path)
        return f"{self.source}:{line}" if line else self.source


def load_yaml(text: str, source: str = "<workflow>") -> Located:
    """Parse ``text`` safely (bounded aliases, standard tags: see ``safeyaml``); a syntax
    error names the file, line and column."""
    try:
        loader, node = compose(text, source)
    except UnsafeYAMLError as exc:
        raise WorkflowError([str(exc)]) from None
    try:
        if node is None:
            raise WorkflowError(["the file is empty; a workflow needs `name` and `steps`"], source)
        lines: dict[Path_, int] = {}
        problems: list[str] = []
        data = _build(loader, node, (), lines, problems, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise WorkflowError(
            [
                f"{where}: YAML syntax error: {exc.problem or exc}"
                + (f" ({exc.context})" if exc.context else "")
            ],
        ) from None
    finally:
        loader.dispose()
    if problems:
        raise WorkflowError(problems)
    return Located(data, lines, source)


def load_file(path: str | Path) -> Located:
    """Read and parse a workflow file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowError([f"cannot read workflow file {file}: {exc.strerror or exc}"]) from None
    return load_yaml(text, str(file))


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    problems: list[str],
    source: str,
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys stay text: `on:` or `yes:` is a name here, not YAML 1.1's boolean.
            key = (
                key_node.value
                if isinstance(key_node, yaml.ScalarNode)
                else loader.construct_object(key_node, deep=True)
            )
            if key in result:
                problems.append(
                    f"{source}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {lines[(*path, key)]})"
                )
                continue
            result[key] = _build(loader, value_node, (*path, key), lines, problems, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, child, (*path, index), lines, problems, source)
            for index, child in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
