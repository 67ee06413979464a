"""The one YAML reader of the workflow front door: bounded aliases, standard tags only.

Every YAML that batchline parses (workflow files, ``file.read`` with ``format: yaml``)
goes through :func:`compose` and :func:`check`:

- **aliases are bounded**: YAML aliases let a few hundred bytes stand for billions of
  nodes ("billion laughs"). The composed node graph is measured before anything is built
  (each node once, so the check is as fast as the file is small): a document whose
  aliases add more than ``max_alias_nodes`` nodes (default
  :data:`DEFAULT_MAX_ALIAS_NODES`), or that refers to itself, is refused, naming the
  file and the line of the anchor.
- **standard tags only**: ``!!python/object``, ``!!python/tuple``, ``!custom`` and every
  other non-standard tag, on a scalar, a sequence or a mapping, is refused, naming the
  tag and its line (PyYAML's safe loader ignores some of them silently).
"""

from __future__ import annotations

from typing import Any

import yaml

DEFAULT_MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 200
_STANDARD = {
    f"tag:yaml.org,2002:{name}"
    for name in (
        "str",
        "int",
        "float",
        "bool",
        "null",
        "timestamp",
        "binary",
        "seq",
        "map",
        "set",
        "omap",
        "pairs",
        "merge",
        "value",
    )
}

__all__ = ["DEFAULT_MAX_ALIAS_NODES", "UnsafeYAMLError", "check", "compose", "safe_load"]


class UnsafeYAMLError(ValueError):
    """A YAML document was refused (alias bomb, unsafe tag, syntax); the message names
    the file and line."""


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than ``MAX_DEPTH`` while composing (the
    composer recurses: a deep document must stop here, not at Python's recursion limit)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise UnsafeYAMLError(
                    f"{self.name}:{mark.line + 1}: the YAML is nested more than {MAX_DEPTH} "
                    "levels deep; flatten the document"
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose(text: str, source: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """Parse ``text`` into a checked node graph (nothing constructed yet).

    Returns the loader (to construct values with; the caller disposes of it) and the
    root node (None for an empty document).

    Raises:
        UnsafeYAMLError: syntax errors, nesting too deep, alias bombs, unsafe tags.
    """
    loader = _Loader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UnsafeYAMLError(
            f"{where}: YAML syntax error: {exc.problem or exc}"
            + (f" ({exc.context})" if exc.context else "")
        ) from None
    except UnsafeYAMLError:
        loader.dispose()
        raise
    if node is not None:
        try:
            check(node, source)
        except BaseException:
            loader.dispose()
            raise
    return loader, node


def check(node: yaml.Node, source: str, max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES) -> None:
    """Refuse unsafe tags and alias expansion beyond ``max_alias_nodes`` extra nodes."""
    sizes: dict[int, int] = {}
    extra = [0]

    def measure(current: yaml.Node, active: set[int], depth: int) -> int:
        key = id(current)
        if key in sizes:  # a node seen before: an alias repeats it
            extra[0] += sizes[key]
            if extra[0] > max_alias_nodes:
                raise UnsafeYAMLError(
                    f"{_where(source, current)}: YAML aliases of the anchor here expand the "
                    f"document past {max_alias_nodes:,} extra nodes (an alias bomb?); "
                    "write the data out instead of repeating it with aliases"
                )
            return sizes[key]
        if key in active:
            raise UnsafeYAMLError(
                f"{_where(source, current)}: a YAML alias refers to the node containing it "
                "(a recursive document); remove the self-reference"
            )
        if current.tag not in _STANDARD:
            raise UnsafeYAMLError(
                f"{_where(source, current)}: the YAML tag `{_short_tag(current.tag)}` is not "
                "allowed "
                "(only standard tags: str, int, float, bool, null, timestamp, seq, map, ...); "
                "remove the tag"
            )
        if depth > MAX_DEPTH:
            raise UnsafeYAMLError(
                f"{_where(source, current)}: the YAML is nested too deeply; flatten it"
            )
        total = 1
        if isinstance(current, yaml.SequenceNode | yaml.MappingNode):
            active.add(key)
            children: list[yaml.Node] = (
                list(current.value)
                if isinstance(current, yaml.SequenceNode)
                else [part for pair in current.value for part in pair]
            )
            for child in children:
                total += measure(child, active, depth + 1)
            active.discard(key)
        sizes[key] = total
        return total

    measure(node, set(), 0)


def safe_load(text: str, source: str, max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES) -> Any:
    """Parse one YAML document safely (see the module docstring).

    Raises:
        UnsafeYAMLError: naming ``source`` and the line.
    """
    loader, node = compose(text, source)
    try:
        if node is None:
            return None
        if max_alias_nodes != DEFAULT_MAX_ALIAS_NODES:
            check(node, source, max_alias_nodes)
        try:
            return loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{source}:{mark.line + 1}" if mark else source
            raise UnsafeYAMLError(f"{where}: {exc.problem or exc}") from None
    finally:
        loader.dispose()
