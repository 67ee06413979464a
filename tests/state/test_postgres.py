"""The PostgreSQL store on a real server: schema versions, leases across processes, crashes.

The contract shared with the other stores runs in ``test_resume.py`` (parametrised over
memory, SQLite and PostgreSQL); these are the PostgreSQL-specific parts.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from batchline import RunActiveError, StateError, run_batches, stream_batches
from batchline.state import PostgresStateStore, open_store
from batchline.state.pg_schema import CURRENT_VERSION, migrate, read_version
from batchline.state.postgres import redact_dsn

CASES = Path(__file__).resolve().parents[1] / "cases"


def _version(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        return read_version(cur)


def test_new_database_gets_the_current_schema(postgres_dsn: str) -> None:
    PostgresStateStore(postgres_dsn).close()
    assert _version(postgres_dsn) == CURRENT_VERSION
    store = open_store(postgres_dsn)
    assert isinstance(store, PostgresStateStore)
    store.close()


def test_newer_schema_is_refused_with_advice(postgres_dsn: str) -> None:
    PostgresStateStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE batchline_schema_version SET version = 99")
    with pytest.raises(StateError, match=r"schema version 99.*Upgrade batchline"):
        PostgresStateStore(postgres_dsn)


def test_migrations_run_step_by_step_keep_data_and_roll_back(postgres_dsn: str) -> None:
    def v1(cur: Any) -> None:
        cur.execute("CREATE TABLE t (a INTEGER)")
        cur.execute("INSERT INTO t VALUES (1)")

    def v2(cur: Any) -> None:
        cur.execute("ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x'")

    def broken(cur: Any) -> None:
        cur.execute("CREATE TABLE u (a INTEGER)")
        raise RuntimeError("half way")

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert migrate(conn, "test", {1: v1}) == 1
        assert migrate(conn, "test", {1: v1, 2: v2}) == 2
        assert conn.execute("SELECT a, b FROM t").fetchall() == [(1, "x")]
        with pytest.raises(RuntimeError):
            migrate(conn, "test", {1: v1, 2: v2, 3: broken})
        with conn.cursor() as cur:
            assert read_version(cur) == 2
        assert conn.execute("SELECT to_regclass('u')").fetchone() == (None,)


def test_int_and_str_keys_stay_different(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)
    items = [{"k": 1, "v": "int"}, {"k": "1", "v": "str"}]
    result = run_batches(
        items, lambda b: [i["v"] for i in b.items], key="k", store=store, run_id="r"
    )
    assert result.ok
    found = store.lookup("r", [1, "1", 2])
    assert {key: record.result for key, record in found.items()} == {1: "int", "1": "str"}
    assert [r.key for r in store.iter_items("r")] == [1, "1"]


def test_two_stores_on_one_database_drive_different_runs(postgres_dsn: str) -> None:
    a, b = PostgresStateStore(postgres_dsn), PostgresStateStore(postgres_dsn)
    assert run_batches(range(50), lambda x: list(x.items), chunk_size=5, store=a, run_id="a").ok
    assert run_batches(range(50), lambda x: list(x.items), chunk_size=5, store=b, run_id="b").ok
    assert {r.run_id for r in a.list_runs()} == {"a", "b"}
    assert b.get_run("a").succeeded == 50


def test_second_driver_is_refused_and_the_lease_is_released(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)
    stream = stream_batches(
        range(10), lambda b: list(b.items), chunk_size=2, store=store, run_id="r"
    )
    next(stream)
    other = PostgresStateStore(postgres_dsn)  # another connection, as another driver would
    with pytest.raises(RunActiveError, match="this process"):
        run_batches(range(10), lambda b: list(b.items), store=other, run_id="r")
    assert len(list(stream)) == 4
    assert run_batches(range(10), lambda b: list(b.items), store=other, run_id="r").ok


def _fake_remote_holder(dsn: str, heartbeat_age: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE batchline_runs SET lease_token = 'remote', lease_pid = 4242,"
            " lease_host = 'elsewhere',"
            " heartbeat_at = extract(epoch from clock_timestamp()) - %s WHERE run_id = 'r'",
            (heartbeat_age,),
        )


def test_remote_holder_is_respected_until_its_heartbeat_expires(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn, lease_ttl=30)
    run_batches([1], lambda b: [1], store=store, run_id="r")
    _fake_remote_holder(postgres_dsn, heartbeat_age=1)
    with pytest.raises(RunActiveError, match=r"process 4242 on elsewhere.*heartbeat"):
        run_batches([1], lambda b: [1], store=store, run_id="r")
    _fake_remote_holder(postgres_dsn, heartbeat_age=60)
    assert run_batches([1, 2], lambda b: list(b.items), store=store, run_id="r").ok


def test_a_driver_that_lost_its_lease_stops_writing(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)
    stream = stream_batches(
        range(6), lambda b: list(b.items), chunk_size=2, store=store, run_id="r"
    )
    next(stream)
    _fake_remote_holder(postgres_dsn, heartbeat_age=0)
    with pytest.raises(StateError, match="taken over"):
        list(stream)


def test_heartbeats_move_the_lease_forward(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)
    lease = store.acquire("r")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        before = conn.execute("SELECT heartbeat_at FROM batchline_runs").fetchone()[0]
        time.sleep(0.05)
        store.heartbeat(lease)
        after = conn.execute("SELECT heartbeat_at FROM batchline_runs").fetchone()[0]
    assert after > before
    store.release(lease, "stopped")
    assert store.get_run("r").status == "stopped"


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    dsn = "postgresql://batch:s3cret@127.0.0.1:1/runs"
    with pytest.raises(StateError) as caught:
        PostgresStateStore(dsn, connect_timeout=2)
    message = str(caught.value)
    assert "cannot connect to the state database postgresql://batch@127.0.0.1:1/runs" in message
    assert "s3cret" not in message
    assert redact_dsn("host=h password=x user=u") == "host=h password=*** user=u"


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume_from_another_process(
    postgres_dsn: str, tmp_path: Path, python: str
) -> None:
    """The crash test on PostgreSQL: nothing committed runs again, nothing is lost."""
    total, chunk = 400, 10
    log = tmp_path / "started.log"
    child = subprocess.Popen(
        [
            python,
            str(CASES / "crash_store.py"),
            postgres_dsn,
            "crash",
            str(total),
            str(chunk),
            "4",
            str(log),
            "local",
            "0.02",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("committed") and int(line.split()[1]) >= 100:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    store = PostgresStateStore(postgres_dsn)
    committed = {r.key for r in store.iter_items("crash")}
    assert 100 <= len(committed) < total
    assert store.get_run("crash").active_pid == child.pid  # the dead holder, taken over at once
    log.unlink()
    done = subprocess.run(
        [
            python,
            str(CASES / "crash_store.py"),
            postgres_dsn,
            "crash",
            str(total),
            str(chunk),
            "4",
            str(log),
            "local",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rerun = [int(key) for key in log.read_text().split()]
    assert not committed & set(rerun), "a committed item ran again"
    records = list(store.iter_items("crash"))
    assert [r.key for r in records] == list(range(total))
    assert all(r.status == "done" and r.result == 2 * r.key for r in records)
    assert store.get_run("crash").status == "completed"
