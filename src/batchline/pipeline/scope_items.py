"""What a scope batches: its list field, and a stable key for every item of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchline.engine import Key, content_keys
from batchline.errors import ConfigurationError
from batchline.pipeline.errors import StepError
from batchline.pipeline.scopes import BatchingScope


def resolve_over(
    scope: BatchingScope, context: Mapping[str, Any], origins: Mapping[str, str] | None = None
) -> str:
    """The list field the scope batches, or a ``StepError`` that names what is there.

    ``origins`` maps a field to what set it (``"agent `Discover`"``), for the message.
    """
    lists = sorted(name for name, value in context.items() if isinstance(value, list))
    listed = ", ".join(repr(name) for name in lists) or "none"
    if scope.over is not None:
        over = scope.over
        if over not in context:
            raise StepError(
                f"batching scope `{scope.name}` batches over {over!r}, which the context "
                f"does not have (list fields present: {listed}). Provide it earlier in the "
                "flow or fix `over=`.",
                scope.name,
            )
        value = context[over]
        if value is None:
            who = (origins or {}).get(over, "an earlier agent")
            raise StepError(
                f"batching scope `{scope.name}`: `{over}` is None, not a list ({who} set it "
                f"to None). Make {who} return a list for `{over}` (an empty list [] when "
                "there is nothing to process: the scope then runs no batch), or pass it in "
                "the initial context.",
                scope.name,
            )
        if not isinstance(value, list):
            hint = " (convert it with list(...) first)" if isinstance(value, tuple) else ""
            raise StepError(
                f"batching scope `{scope.name}` batches over {over!r}, but it is a "
                f"{type(value).__name__}, not a list{hint} (list fields present: {listed}).",
                scope.name,
            )
        return over
    if len(lists) != 1:
        raise StepError(
            f"batching scope `{scope.name}` has no `over=` and the context has "
            f"{'no' if not lists else len(lists)} list fields ({listed}); name the field to "
            f"batch with triggers_batching(chunk_size={scope.chunk_size}, over='...').",
            scope.name,
        )
    return lists[0]


def item_keys(items: list[Any], spec: Any, scope: str, *, by_content: bool) -> list[Key]:
    """The key of every scope item (positions when nothing durable needs more).

    Args:
        items: the scope's list.
        spec: the scope's ``key``: a field name, a callable, or None.
        scope: the scope's name, for errors.
        by_content: key items by a hash of their canonical JSON when ``spec`` is None
            (a store is given); else by position.

    Raises:
        ConfigurationError: a key is missing, of the wrong type, repeated, or an item
            has no canonical JSON form.
    """
    if spec is None:
        if not by_content:
            return list(range(len(items)))
        return _hashed(items, scope)
    keys: list[Key] = []
    first: dict[Key, int] = {}
    for position, item in enumerate(items):
        key = _declared_key(item, spec, position, scope)
        if key in first:
            raise ConfigurationError(
                f"batching scope `{scope}`: key {key!r} is shared by the items at positions "
                f"{first[key]} and {position}; keys must be unique so that a resume matches "
                "each item to its result. Fix the data, or choose another `key=` on "
                "triggers_batching (key=None keys items by a hash of their content)."
            )
        first[key] = position
        keys.append(key)
    return keys


def _hashed(items: list[Any], scope: str) -> list[Key]:
    """Content keys; the n-th repeat of an identical item gets ``~n`` appended."""
    try:
        return list(content_keys(items))
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"batching scope `{scope}`: {exc} Or declare an id-like field on the trigger: "
            "triggers_batching(..., key='id')."
        ) from exc


def _declared_key(item: Any, spec: Any, position: int, scope: str) -> Key:
    if isinstance(spec, str):
        if not isinstance(item, Mapping) or spec not in item:
            found = (
                f"has fields {', '.join(sorted(map(str, item))) or 'none'}"
                if isinstance(item, Mapping)
                else f"is a {type(item).__name__}"
            )
            raise ConfigurationError(
                f"batching scope `{scope}` keys items by {spec!r}, but the item at position "
                f"{position} {found}. Give every item that field, or choose another `key=` "
                "on triggers_batching (key=None keys items by a hash of their content)."
            )
        key = item[spec]
        source = f"field {spec!r}"
    else:
        key = spec(item)
        source = f"key function {getattr(spec, '__name__', spec)!r}"
    if type(key) is not str and type(key) is not int:
        raise ConfigurationError(
            f"batching scope `{scope}`: {source} gave {key!r} ({type(key).__name__}) for the "
            f"item at position {position}; a key must be a str or an int."
        )
    return key
