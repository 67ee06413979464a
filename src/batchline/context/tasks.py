"""Tasks and batches of tasks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from batchline.errors import ConfigurationError


@dataclass
class TaskSpec:
    """A task for an implementation call, with the entries it needs.

    Args:
        id: unique, non-blank.
        description: what to do.
        required_entry_ids: the entries it needs (duplicates dropped, order kept).
        priority: higher first with ``create_batches(..., sort_by_priority=True)``.
        depends_on: ids of tasks that must run in an earlier batch.
    """

    id: str
    description: str
    required_entry_ids: list[str] = field(default_factory=list)
    priority: int = 0
    depends_on: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigurationError(f"a task needs a non-blank `id`, not {self.id!r}")
        if isinstance(self.required_entry_ids, str):
            raise ConfigurationError(
                f"task `{self.id}`: `required_entry_ids` is the string "
                f"{self.required_entry_ids!r}; expected a list of entry ids"
            )
        self.required_entry_ids = list(dict.fromkeys(self.required_entry_ids))
        self.depends_on = list(self.depends_on)


@dataclass
class TaskBatch:
    """Tasks run together in one implementation call.

    Attributes:
        batch_id: ``batch_0001``, ``batch_0002``, ... in execution order.
        tasks: the tasks (input order, or priority order with ``sort_by_priority``).
        unique_entry_ids: the union of their entries, in canonical order (most shared
            first). A set given here is stored sorted.
        exceeds_limit: a single task needs more than the bounds allow.
        total_tokens: tokens of that union (0 when the batcher had no token counts).
        level: the dependency level (batches of level n run after those of level n-1).
        message: why, when ``exceeds_limit``.
    """

    batch_id: str
    tasks: list[TaskSpec]
    unique_entry_ids: list[str]
    exceeds_limit: bool = False
    total_tokens: int = 0
    level: int = 0
    message: str = ""

    def __post_init__(self) -> None:
        ids: Iterable[str] = self.unique_entry_ids
        if isinstance(ids, set | frozenset):
            self.unique_entry_ids = sorted(ids)
        else:
            self.unique_entry_ids = list(dict.fromkeys(ids))

    @property
    def entry_count(self) -> int:
        """Entries loaded by this batch (the size of the union)."""
        return len(self.unique_entry_ids)

    @property
    def task_ids(self) -> list[str]:
        """The tasks' ids."""
        return [task.id for task in self.tasks]
