"""Context entries: one addressable piece of context (a file, a command's output, ...).

An entry the store hands out is *bound* to it: assigning a field or calling one of the
entry's mutators (``compress``, ``set_ttl``, ``decrement_ttl``, ``set_summary``) saves the
change through the store (its SQLite file and its search index). The object a caller passed
to ``store.add`` is copied, so editing it afterwards never changes the store.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from batchline.context.errors import (
    ContextCompressedError,
    EntryFieldTypeError,
    InvalidEntryError,
)
from batchline.context.tokens import TokenCounter, default_counter


class EntryType(Enum):
    """What an entry holds."""

    FILE = "file"
    COMMAND = "command"
    COMMAND_RESULT = "command_result"
    TASK = "task"
    TASK_RESULT = "task_result"
    SEARCH_RESULT = "search_result"
    SUMMARY = "summary"
    CONTEXT_REQUEST = "context_request"
    CHAIN_MAP = "chain_map"

    @classmethod
    def from_string(cls, value: str) -> EntryType:
        """The type whose value is ``value`` (its name, any case, is accepted too).

        Raises:
            InvalidEntryError: (a ``ValueError``) for an unknown type; the message lists
                the valid ones.
        """
        text = str(value).strip()
        for member in cls:
            if text == member.value or text.lower() == member.value or text.upper() == member.name:
                return member
        valid = ", ".join(member.value for member in cls)
        raise InvalidEntryError(f"Invalid entry type '{value}'. Must be one of: {valid}")

    def __str__(self) -> str:
        return self.value


class _Owner(Protocol):
    """The store an entry is bound to."""

    def _entry_changed(self, entry: ContextEntry, name: str) -> None: ...


@dataclass
class ContextEntry:
    """One entry of the context store.

    Args:
        id: unique, non-blank (e.g. ``ctx_001``).
        entry_type: an ``EntryType`` (or its value).
        source: where it came from (a path, a command, a task id), non-blank.
        content: the full text (None once compressed).
        summary: a short description shown to the working LLM.
        created_at: when it was made (default: now).
        references: ids of related entries.
        searchable: whether search sees it.
        compressed: whether the content was dropped.
        ttl: turns to live (None: forever; 0: expired).
        parent_id: the entry this one was derived from ("" means None).
        derived_from: ids of the entries this one was derived from.
        priority: higher first in the working context.
    """

    id: str
    entry_type: EntryType
    source: str
    content: str | None
    summary: str | None
    created_at: datetime = field(default_factory=datetime.now)
    references: list[str] = field(default_factory=list)
    searchable: bool = True
    compressed: bool = False
    ttl: int | None = None
    parent_id: str | None = None
    derived_from: list[str] = field(default_factory=list)
    priority: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidEntryError(
                f"id must not be empty: a context entry needs a non-blank `id`, not {self.id!r}. "
                "Give every entry a unique id such as 'ctx_001'."
            )
        if isinstance(self.entry_type, str):
            object.__setattr__(self, "entry_type", EntryType.from_string(self.entry_type))
        if not isinstance(self.entry_type, EntryType):
            raise EntryFieldTypeError(
                f"entry `{self.id}`: `entry_type` is {self.entry_type!r}; expected an EntryType "
                "such as EntryType.FILE"
            )
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidEntryError(
                f"source must not be empty: entry `{self.id}` needs a non-blank `source` "
                f"(a path, a command), not {self.source!r}"
            )
        if self.content is None and self.summary is None:
            raise InvalidEntryError(
                f"At least one of content or summary must be provided: entry `{self.id}` has "
                "neither; give it `content` or a `summary`."
            )
        _check_ttl(self.id, self.ttl)
        if self.parent_id is not None:
            if not isinstance(self.parent_id, str):
                raise EntryFieldTypeError(
                    f"parent_id must be a string or None: entry `{self.id}` has `parent_id` "
                    f"{self.parent_id!r} ({type(self.parent_id).__name__})"
                )
            if not self.parent_id.strip():
                object.__setattr__(self, "parent_id", None)
        for name in ("references", "derived_from"):
            values = getattr(self, name)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise EntryFieldTypeError(
                    f"{name} must be list of strings: entry `{self.id}` has `{name}` {values!r}"
                )
        if type(self.priority) is not int:
            raise EntryFieldTypeError(
                f"entry `{self.id}`: `priority` is {self.priority!r}; expected an integer"
            )

    # -- binding to a store ---------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        owner: _Owner | None = self.__dict__.get("_owner")
        if owner is not None and name == "id" and value != self.id:
            raise InvalidEntryError(
                f"entry `{self.id}` is in a store: its id cannot change. Remove it and add "
                "a copy with the new id."
            )
        object.__setattr__(self, name, value)
        if owner is not None and name in _FIELD_NAMES:
            owner._entry_changed(self, name)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles are never bound to a store."""
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def copy(self) -> ContextEntry:
        """An unbound deep copy."""
        return copy.deepcopy(self)

    # -- TTL ------------------------------------------------------------------------

    def decrement_ttl(self) -> None:
        """One turn less to live; a TTL of None (forever) or 0 (expired) stays."""
        if self.ttl is not None and self.ttl > 0:
            self.ttl = self.ttl - 1

    def is_expired(self) -> bool:
        """Whether the TTL reached 0."""
        return self.ttl == 0

    def has_ttl(self) -> bool:
        """Whether a TTL is set (0 included)."""
        return self.ttl is not None

    def set_ttl(self, ttl: int | None) -> None:
        """Set the TTL (None: forever); a negative TTL is an ``InvalidEntryError``."""
        _check_ttl(self.id, ttl)
        self.ttl = ttl

    # -- compression ----------------------------------------------------------------

    def compress(self) -> None:
        """Drop the content in place, keeping the summary (a no-op when compressed).

        Raises:
            InvalidEntryError: (a ``ValueError``) the entry has no summary to keep.
        """
        if self.compressed:
            return
        if self.summary is None:
            raise InvalidEntryError(
                f"Cannot compress entry without summary: entry `{self.id}` has no summary to "
                "keep; set one with `set_summary(...)` first."
            )
        owner = self.__dict__.pop("_owner", None)
        try:
            self.content = None
            self.compressed = True
        finally:
            if owner is not None:
                object.__setattr__(self, "_owner", owner)
                owner._entry_changed(self, "compressed")

    def is_compressed(self) -> bool:
        """Whether the content was dropped."""
        return self.compressed

    def can_compress(self) -> bool:
        """Whether ``compress()`` would drop content (content and summary present)."""
        return not self.compressed and self.content is not None and self.summary is not None

    def get_content(self) -> str | None:
        """The full content (None for an entry made with a summary only).

        Raises:
            ContextCompressedError: the entry is compressed.
        """
        if self.compressed:
            raise ContextCompressedError(self.id)
        return self.content

    def get_content_or_summary(self) -> str:
        """The content, or the summary when there is none."""
        if self.content is not None:
            return self.content
        return self.summary or ""

    def set_summary(self, summary: str) -> None:
        """Replace the summary; an empty one is an ``InvalidEntryError``."""
        if not isinstance(summary, str) or not summary.strip():
            raise InvalidEntryError(
                f"Summary must not be empty: entry `{self.id}` needs a non-blank summary, "
                f"not {summary!r}"
            )
        self.summary = summary

    # -- tokens ---------------------------------------------------------------------

    def token_count(self, counter: TokenCounter | None = None) -> int:
        """Tokens of the content (of the summary when there is no content)."""
        count = counter or default_counter()
        return count(self.get_content_or_summary())

    def summary_tokens(self, counter: TokenCounter | None = None) -> int:
        """Tokens of the summary."""
        count = counter or default_counter()
        return count(self.summary or "")

    # -- plain data -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (``created_at`` as ISO text, the type as its value)."""
        return {
            "id": self.id,
            "entry_type": self.entry_type.value,
            "source": self.source,
            "content": self.content,
            "summary": self.summary,
            "created_at": self.created_at.isoformat(),
            "references": list(self.references),
            "searchable": self.searchable,
            "compressed": self.compressed,
            "ttl": self.ttl,
            "parent_id": self.parent_id,
            "derived_from": list(self.derived_from),
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextEntry:
        """An entry from ``to_dict`` output (missing optional fields take their defaults)."""
        created = data.get("created_at")
        return cls(
            id=data["id"],
            entry_type=EntryType.from_string(data["entry_type"]),
            source=data["source"],
            content=data.get("content"),
            summary=data.get("summary"),
            created_at=datetime.fromisoformat(created) if created else datetime.now(),
            references=list(data.get("references") or []),
            searchable=bool(data.get("searchable", True)),
            compressed=bool(data.get("compressed", False)),
            ttl=data.get("ttl"),
            parent_id=data.get("parent_id"),
            derived_from=list(data.get("derived_from") or []),
            priority=int(data.get("priority") or 0),
        )


_FIELD_NAMES = frozenset(f.name for f in fields(ContextEntry))


def _check_ttl(entry_id: str, ttl: object) -> None:
    if ttl is None:
        return
    if type(ttl) is not int:
        raise EntryFieldTypeError(
            f"entry `{entry_id}`: `ttl` is {ttl!r}; expected an integer >= 0 (turns) or None"
        )
    if ttl < 0:
        raise InvalidEntryError(
            f"ttl must be non-negative: entry `{entry_id}` has `ttl` {ttl}; give an integer "
            ">= 0 (turns to live) or None (forever)"
        )
