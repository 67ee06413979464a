"""Context entries: one addressable piece of context (a file, a command's output, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from batchline.context.errors import ContextCompressedError
from batchline.context.tokens import TokenCounter, default_counter
from batchline.errors import ConfigurationError


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

    @classmethod
    def from_string(cls, value: str) -> EntryType:
        """The type named ``value`` (by value or name, any case)."""
        text = str(value).strip()
        for member in cls:
            if text.lower() == member.value or text.upper() == member.name:
                return member
        valid = ", ".join(member.value for member in cls)
        raise ConfigurationError(f"unknown entry type {value!r}; valid types: {valid}")


@dataclass
class ContextEntry:
    """One entry of the context store.

    Args:
        id: unique, non-blank.
        entry_type: an ``EntryType`` (or its name).
        source: where it came from (a path, a command), non-blank.
        content: the full text (None once compressed).
        summary: a short description shown to the working LLM.
        references: ids of related entries.
        parent_id: the entry this one was derived from.
        priority: higher first in the working context.
        ttl: turns to live (None: forever); ``process_turn`` counts it down.
        searchable: whether full-text search sees it.
    """

    id: str
    entry_type: EntryType
    source: str
    content: str | None
    summary: str | None
    references: list[str] = field(default_factory=list, kw_only=True)
    parent_id: str | None = field(default=None, kw_only=True)
    priority: int = field(default=0, kw_only=True)
    ttl: int | None = field(default=None, kw_only=True)
    searchable: bool = field(default=True, kw_only=True)
    compressed: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigurationError(f"a context entry needs a non-blank `id`, not {self.id!r}")
        if isinstance(self.entry_type, str):
            self.entry_type = EntryType.from_string(self.entry_type)
        if not isinstance(self.entry_type, EntryType):
            raise ConfigurationError(
                f"entry {self.id!r}: `entry_type` is {self.entry_type!r}; expected an EntryType"
            )
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigurationError(
                f"entry {self.id!r}: `source` must be a non-blank string (a path, a command), "
                f"not {self.source!r}"
            )
        if not self.compressed and not self.content and not self.summary:
            raise ConfigurationError(
                f"entry {self.id!r}: give it `content` or a `summary` (both are empty)"
            )
        if self.ttl is not None and (type(self.ttl) is not int or self.ttl < 0):
            raise ConfigurationError(f"entry {self.id!r}: `ttl` must be an integer >= 0 or None")

    @property
    def is_compressed(self) -> bool:
        """Whether the content was dropped."""
        return self.compressed

    def get_content(self) -> str:
        """The full content; ``ContextCompressedError`` once compressed."""
        if self.compressed or self.content is None:
            raise ContextCompressedError(
                f"entry {self.id!r} is compressed: only its summary is left. Re-add the entry "
                "with its content to use it in an implementation context."
            )
        return self.content

    def compress(self) -> ContextEntry:
        """A copy without content, keeping the summary (made from the content if absent)."""
        summary = self.summary or (self.content or "")[:200]
        return replace(self, content=None, summary=summary, compressed=True)

    def token_count(self, counter: TokenCounter | None = None) -> int:
        """Tokens of the content (or of the summary when compressed)."""
        count = counter or default_counter()
        return count(self.content if self.content is not None else self.summary or "")

    def summary_tokens(self, counter: TokenCounter | None = None) -> int:
        """Tokens of the summary."""
        count = counter or default_counter()
        return count(self.summary or "")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``from_dict`` reads it back)."""
        return {
            "id": self.id,
            "entry_type": self.entry_type.value,
            "source": self.source,
            "content": self.content,
            "summary": self.summary,
            "references": list(self.references),
            "parent_id": self.parent_id,
            "priority": self.priority,
            "ttl": self.ttl,
            "searchable": self.searchable,
            "compressed": self.compressed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextEntry:
        """An entry from ``to_dict`` output."""
        return cls(
            data["id"],
            EntryType.from_string(data["entry_type"]),
            data["source"],
            data.get("content"),
            data.get("summary"),
            references=list(data.get("references") or []),
            parent_id=data.get("parent_id"),
            priority=int(data.get("priority") or 0),
            ttl=data.get("ttl"),
            searchable=bool(data.get("searchable", True)),
            compressed=bool(data.get("compressed", False)),
        )
