"""The original system's names and behaviour (tha-hammer/silmari-Context-Engine), in batchline."""

from __future__ import annotations

import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import batchline.context as ctx
from batchline.context import (
    BatchExecutor,
    CentralContextStore,
    ContextCompressedError,
    ContextEntry,
    ContextEntryView,
    ContextError,
    ContextWindowArrayError,
    EntryBoundsError,
    EntryType,
    ImplementationContext,
    ImplementationEntryView,
    ImplementationLLMContext,
    MissingEntryError,
    SearchResult,
    SearchResultView,
    StoreSearchResult,
    TaskBatch,
    TaskBatcher,
    TaskSpec,
    VectorSearchIndex,
    WorkingLLMContext,
)

ORIGINAL_NAMES = [
    "ContextEntry",
    "EntryType",
    "ContextWindowArrayError",
    "ContextError",
    "ContextCompressedError",
    "EntryBoundsError",
    "CentralContextStore",
    "StoreSearchResult",
    "SearchResult",
    "VectorSearchIndex",
    "WorkingLLMContext",
    "WorkingContext",
    "ContextEntryView",
    "SearchResultView",
    "ImplementationLLMContext",
    "ImplementationContext",
    "ImplementationEntryView",
    "TaskSpec",
    "TaskBatch",
    "TaskBatcher",
    "BatchExecutor",
    "BatchResult",
]


def file_entry(entry_id: str, content: str | None = "code", summary: str | None = "s", **kw: Any):
    return ContextEntry(entry_id, EntryType.FILE, f"src/{entry_id}.py", content, summary, **kw)


def test_every_original_name_is_exported() -> None:
    for name in ORIGINAL_NAMES:
        assert name in ctx.__all__, name
        assert hasattr(ctx, name), name
    assert ContextError is ContextWindowArrayError
    assert issubclass(ContextCompressedError, ContextWindowArrayError)
    assert issubclass(EntryBoundsError, ContextWindowArrayError)
    assert EntryType.CHAIN_MAP.value == "chain_map"
    assert [t.value for t in EntryType] == [
        "file",
        "command",
        "command_result",
        "task",
        "task_result",
        "search_result",
        "summary",
        "context_request",
        "chain_map",
    ]
    assert str(EntryType.TASK) == "task"
    with pytest.raises(ValueError, match="Invalid entry type 'folder'"):
        EntryType.from_string("folder")


def test_entries_validate_compress_in_place_and_round_trip_every_field() -> None:
    with pytest.raises(ValueError, match="id must not be empty"):
        file_entry(" ")
    with pytest.raises(TypeError, match="parent_id must be a string"):
        file_entry("a", parent_id=7)
    with pytest.raises(TypeError, match="references must be list of strings"):
        file_entry("a", references=[1])
    with pytest.raises(TypeError, match="derived_from must be list of strings"):
        file_entry("a", derived_from=[1])
    assert file_entry("a", parent_id="").parent_id is None
    when = datetime(2026, 1, 4, 12, 0, 0)
    entry = file_entry(
        "a",
        "def f(): pass",
        "a function",
        created_at=when,
        references=["b"],
        ttl=2,
        parent_id="p",
        derived_from=["p", "q"],
        priority=3,
        searchable=False,
    )
    data = entry.to_dict()
    assert data["created_at"] == "2026-01-04T12:00:00"
    assert ContextEntry.from_dict(data) == entry
    assert entry.can_compress()
    assert entry.compress() is None  # in place
    assert entry.is_compressed()
    assert entry.content is None
    assert entry.summary == "a function"
    assert not entry.can_compress()
    with pytest.raises(ContextCompressedError, match="Entry a is compressed") as caught:
        entry.get_content()
    assert caught.value.entry_id == "a"
    assert pickle.loads(pickle.dumps(caught.value)).entry_id == "a"  # noqa: S301 - our own bytes
    assert entry.get_content_or_summary() == "a function"
    with pytest.raises(ValueError, match="Cannot compress entry without summary"):
        file_entry("b", summary=None).compress()
    entry.decrement_ttl()
    entry.decrement_ttl()
    entry.decrement_ttl()
    assert entry.ttl == 0
    assert entry.is_expired()
    assert entry.has_ttl()
    entry.set_ttl(None)
    assert not entry.has_ttl()
    assert not entry.is_expired()
    with pytest.raises(ValueError, match="ttl must be non-negative"):
        entry.set_ttl(-1)
    with pytest.raises(ValueError, match="Summary must not be empty"):
        entry.set_summary(" ")


def test_store_copies_on_add_and_saves_changes_made_on_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "ctx.db"
    store = CentralContextStore(path)
    mine = file_entry("a", "alpha content", "alpha", ttl=3)
    assert store.add(mine) == "a"
    mine.content = "edited by the caller"
    mine.compress()
    stored = store.get("a")
    assert stored is not None
    assert stored is not mine
    assert stored.content == "alpha content"
    assert not stored.is_compressed()
    assert store.get("a") is stored  # one object per entry
    stored.set_ttl(9)  # a change on the store's entry is saved ...
    stored.compress()
    assert [h.entry_id for h in store.search("content")] == []  # ... and re-indexed
    assert [h.entry_id for h in store.search("alpha")] == ["a"]
    store.close()
    again = CentralContextStore(path)
    reloaded = again.get("a")
    assert reloaded is not None
    assert (reloaded.ttl, reloaded.compressed, reloaded.content) == (9, True, None)
    with pytest.raises(ValueError, match="its id cannot change"):
        reloaded.id = "b"


def test_store_methods_answer_as_the_original() -> None:
    store = CentralContextStore()
    assert store.get("missing") is None
    with pytest.raises(MissingEntryError):
        store.require("missing")
    assert store.remove("missing") is False
    assert store.remove("missing", return_entry=True) is None
    assert store.compress("missing") is False
    assert store.extend_ttl("missing", 2) is False
    assert store.get_content("missing") is None
    assert store.get_summary("missing") is None
    for i in range(5):
        store.add(file_entry(f"e{i}", f"content {i}", f"summary {i}", ttl=i if i < 3 else None))
    removed = store.remove("e4", return_entry=True)
    assert isinstance(removed, ContextEntry)
    assert removed.id == "e4"
    with pytest.raises(MissingEntryError):
        store.pop("e4")
    assert [e.id for e in store.get_expired()] == ["e0"]
    assert [e.id for e in store.get_expiring_soon(threshold=1)] == ["e0", "e1"]
    assert store.process_turn() == {"decremented": 2, "removed": 2}  # e1 and e2 count down
    assert [e.id for e in store.get_all()] == ["e2", "e3"]
    assert store.extend_ttl("e3", 4)
    assert store.get("e3").ttl == 4
    assert store.compress_multiple(["e2", "e3", "nope"]) == 2
    assert store.compress_multiple(["e2"]) == 0  # already compressed
    assert [e.id for e in store.get_compressed()] == ["e2", "e3"]
    assert store.get_uncompressed() == []
    with pytest.raises(ContextCompressedError):
        store.get_content("e2")
    assert store.get_summary("e2") == "summary 2"
    assert store.remove_multiple(["e2", "x"]) == 1
    store.clear()
    assert len(store) == 0
    assert store.search("summary") == []


def test_command_results_keep_the_command_unsearchable_and_linked() -> None:
    store = CentralContextStore()
    store.add(file_entry("ctx_000001", "taken id", "taken"))
    result_id = store.add_command_result(
        "grep -rn password src/", "src/auth.py:3: password", "1 password hit", keep_command=True
    )
    result = store.get(result_id)
    assert result is not None
    assert result.parent_id is not None
    command = store.get(result.parent_id)
    assert command is not None
    assert command.entry_type is EntryType.COMMAND
    assert not command.searchable
    assert command.id != "ctx_000001"
    assert result.source == "bash"
    assert result.entry_type is EntryType.COMMAND_RESULT
    assert [h.entry_id for h in store.search("grep password")] == [result_id]
    only = store.add_command_result("ls", "a b", "listing", keep_command=False, ttl=2)
    assert store.get(only).parent_id is None
    assert store.get(only).ttl == 2


def test_scores_are_0_to_1_and_min_score_means_the_same_everywhere() -> None:
    store = CentralContextStore()
    index = VectorSearchIndex()
    for i in range(40):  # "python" is in every entry: FTS5 alone gives it an IDF of 1e-6
        entry = file_entry(
            f"m{i}",
            f"python module {i} " + ("handles user login sessions" if i == 7 else "utility"),
            f"module {i}",
            references=[f"m{i + 1}"],
            parent_id="root",
        )
        store.add(entry)
        index.add(entry)
    hits = store.search("python", min_score=0.1)
    assert len(hits) == 10
    assert all(0.1 <= h.score < 1 for h in hits)
    best = store.search("python login", max_results=3)
    assert best[0].entry_id == "m7"
    assert best[0].score > best[1].score
    from_index = index.search("python login", max_results=3)
    assert [(r.entry_id, round(r.score, 9)) for r in from_index] == [
        (h.entry_id, round(h.score, 9)) for h in best
    ]
    top = best[0]
    assert isinstance(top, StoreSearchResult)
    assert (top.entry_type, top.source, top.references, top.parent_id, top.compressed) == (
        EntryType.FILE,
        "src/m7.py",
        ["m8"],
        "root",
        False,
    )
    assert top.content is None
    assert isinstance(from_index[0], SearchResult)
    assert from_index[0].source == "src/m7.py"
    assert store.search("python login", min_score=best[1].score + 1e-9) == best[:1]
    assert store.search("quantum") == []
    assert store.search("   ") == []
    index.remove("m7")
    assert [r.entry_id for r in index.search("login")] == []
    with pytest.raises(ValueError, match="already exists"):
        index.add(file_entry("m1"))


def test_working_view_hides_commands_by_default_and_searches() -> None:
    store = CentralContextStore()
    store.add(file_entry("low", "x" * 50, "low summary", priority=0))
    store.add(file_entry("high", "y" * 50, "high summary", priority=5))
    store.add(ContextEntry("cmd", EntryType.COMMAND, "bash", "ls", "listing", searchable=False))
    working = WorkingLLMContext(store)
    view = working.build()
    assert [e.id for e in view.entries] == ["high", "low"]
    assert view.total_count == 2
    assert all(isinstance(e, ContextEntryView) and e.content is None for e in view.entries)
    assert working.build(include_non_searchable=True).total_count == 3
    assert working.build(entry_types=[EntryType.COMMAND], include_non_searchable=True).entries[
        0
    ].summary == ("listing")
    hits = working.search("high")
    assert isinstance(hits[0], SearchResultView)
    assert hits[0].id == "high"
    assert hits[0].content is None
    assert 0 < hits[0].score < 1


def test_implementation_context_as_the_original() -> None:
    store = CentralContextStore()
    for name in "abc":
        store.add(file_entry(name, f"content of {name}", f"summary of {name}"))
    store.compress("c")
    impl = ImplementationLLMContext(store, max_entries=3)
    built = impl.build(["c", "missing", "a"])
    assert isinstance(built, ImplementationContext)
    assert built.entry_ids == ["c", "a"]
    assert built.missing_ids == ["missing"]
    assert isinstance(built.entries[0], ImplementationEntryView)
    assert built.entries[0].content is None
    assert built.entries[0].compressed
    assert "summary of c" in built.render()
    assert "content of a" in built.render()
    with pytest.raises(EntryBoundsError, match="Entry count 4 exceeds maximum allowed 3"):
        impl.build(["a", "b", "c", "d"])
    assert impl.build(["a", "b", "c", "d"], skip_validation=True).entry_count == 3
    assert impl.validate_bounds(["a", "b", "c"])
    assert not impl.validate_bounds(list("abcd"))
    assert impl.split_into_batches(list("abcdefg")) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert impl.get_bounds_info() == {"max_entries": 3, "max_tokens": None, "default": False}
    impl.request_context(["a", "b"])
    impl.request_context(["a"])
    assert impl.get_active_entries() == {"a", "b"}
    impl.release_context(["a"])
    assert impl.is_in_use("a")  # still held by the first request
    impl.release_context()
    assert impl.get_active_entries() == set()
    assert impl.get_usage_stats() == {"active_count": 0, "total_requests": 3, "total_releases": 3}
    with impl.request(["b", "a"]) as context:
        assert context.entry_ids == ["b", "a"]
        assert impl.is_in_use("b")
    assert not impl.is_in_use("b")
    with pytest.raises(MissingEntryError), impl.request_strict(["a", "missing"]):
        pass


def test_batching_priority_ids_and_executor_errors() -> None:
    tasks = [
        TaskSpec("low", "Low", ["e1"], priority=1),
        TaskSpec("high", "High", ["e2"], priority=3),
        TaskSpec("mid", "Mid", ["e3"], priority=2),
        TaskSpec("other", "Other", ["e4", "e5"], priority=5),
    ]
    batches = TaskBatcher(max_entries_per_batch=3).create_batches(tasks, sort_by_priority=True)
    assert [b.batch_id for b in batches] == ["batch_0001", "batch_0002"]
    assert batches[0].task_ids == ["other", "high"] or batches[0].task_ids[0] == "other"
    flat = [t.priority for b in batches for t in b.tasks]
    assert flat[0] == 5
    assert all(b.tasks == sorted(b.tasks, key=lambda t: -t.priority) for b in batches)
    batch = TaskBatch(batch_id="mine", tasks=tasks[:1], unique_entry_ids={"e2", "e1"})
    assert batch.unique_entry_ids == ["e1", "e2"]
    assert batch.exceeds_limit is False
    store = CentralContextStore()
    store.add(file_entry("e1", "one", "one"))
    boom = ValueError("model said no")

    def handler(context: ImplementationContext, ts: list[TaskSpec]) -> dict[str, Any]:
        assert context.missing_ids == ["e2"]
        raise boom

    result = BatchExecutor(store).execute_batch(batch, handler)
    assert result.success is False
    assert result.error is boom
    assert result.error_message == "ValueError: model said no"
    strict = BatchExecutor(store, strict=True).execute_batch(batch, handler)
    assert isinstance(strict.error, MissingEntryError)
    results = BatchExecutor(store).execute_all([batch, batch], handler)
    assert [r.error for r in results] == [boom, boom]
