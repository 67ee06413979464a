"""batchline on a real two-node Ray cluster: a head and a joining node, started here.

The cluster (``batchline.testing.ray_cluster.LocalRayCluster``) is started with ``ray
start`` in a temporary folder, each node in its own process group, so the test can kill
the second node with SIGKILL, and stopped at teardown by killing exactly the processes it
started (never ``ray stop``). Object stores are small (80 MB).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchline import (
    Batch,
    ConfigurationError,
    RetryPolicy,
    SQLiteStateStore,
    run_batches,
    stream_batches,
)

ray = pytest.importorskip("ray")

from batchline.backends import RayBackend  # noqa: E402 - after the skip
from batchline.pipeline import Agent, Pipeline  # noqa: E402
from batchline.testing.ray_cluster import LocalRayCluster  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CASES = Path(__file__).resolve().parents[1] / "cases"
MB = 1024 * 1024


class Cluster(LocalRayCluster):
    """The two-node cluster, with the waits these tests need."""

    def alive_nodes(self) -> int:
        return sum(1 for node in ray.nodes() if node["Alive"])

    def wait_for_nodes(self, count: int) -> None:
        deadline = time.monotonic() + 120
        while self.alive_nodes() != count:
            assert time.monotonic() < deadline, f"the cluster never had {count} nodes"
            time.sleep(0.2)

    def kill_second(self) -> None:
        self.kill_node()

    def start_second(self) -> None:
        self.add_node()
        self.wait_for_nodes(2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster(extra_nodes=1)
    try:
        started.start()
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        backend = RayBackend(started.address)
        backend.ensure_started()
        started.wait_for_nodes(2)
        _both_nodes_take_work()
        yield started
    finally:
        if ray.is_initialized():
            ray.shutdown()
        started.stop()


def _both_nodes_take_work() -> None:
    """Wait until the scheduler places tasks on both nodes (its view lags a new node)."""
    for _ in range(50):
        result = run_batches(range(8), where, chunk_size=1, max_concurrency=4, backend="ray")
        if len({r["node"] for r in result.results}) == 2:
            return
    raise AssertionError("the second node never took work")


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def where(batch: Batch[int]) -> list[dict[str, Any]]:
    """Which node and process ran each item (slow enough that two batches overlap)."""
    time.sleep(0.2)
    node = ray.get_runtime_context().get_node_id()
    return [{"item": item, "node": node, "pid": os.getpid()} for item in batch.items]


def megabyte(batch: Batch[int]) -> list[str]:
    time.sleep(0.01)
    return ["x" * (MB // len(batch.items))] * len(batch.items)


def test_work_runs_on_both_nodes_with_bounded_references(cluster: Cluster) -> None:
    result = run_batches(range(40), where, chunk_size=2, max_concurrency=2, backend="ray")
    assert result.ok
    assert [r["item"] for r in result.results] == list(range(40))
    _both_nodes_take_work()  # batches run on both nodes (Ray may place a short run on one)

    # 120 batches of 1 MB: the driver references only the batches in flight.
    worker = ray._private.worker.global_worker.core_worker
    held: list[int] = []
    for _ in stream_batches(range(240), megabyte, chunk_size=2, max_concurrency=2, backend="ray"):
        held.append(len(worker.get_all_reference_counts()))
    assert len(held) == 120
    assert max(held) <= min(held) + 8, f"references grow with the run: {held[:3]}..{held[-3:]}"
    assert len(worker.get_all_reference_counts()) <= held[0]


def crash_worker_once(batch: Batch[int]) -> list[int]:
    marker = Path(os.environ["BL_MARKERS"]) / f"crash-{batch.number}"
    if batch.number % 3 == 0 and not marker.exists():
        marker.write_text("crashed once")
        os._exit(1)  # the worker process dies: Ray's WorkerCrashedError
    return [item * 2 for item in batch.items]


class Crashy(Agent):
    """A module-level agent whose worker dies on the first attempt of one batch."""

    def run(self, context: dict[str, Any]) -> dict[str, Any]:
        marker = Path(context["markers"]) / f"agent-{context['_batch']['number']}"
        if context["_batch"]["number"] == 2 and not marker.exists():
            marker.write_text("crashed once")
            os._exit(1)
        return {"xs": [x * 3 for x in context["xs"]]}


def test_a_crashed_worker_is_retried_in_every_front_door(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BL_MARKERS", str(tmp_path))
    backend = RayBackend(cluster.address, runtime_env={"env_vars": {"BL_MARKERS": str(tmp_path)}})
    result = run_batches(
        range(30),
        crash_worker_once,
        chunk_size=3,
        max_concurrency=2,
        retry=RetryPolicy.none(),  # a lost worker is retried even so
        backend=backend,
    )
    assert result.ok, result.failures
    assert result.results == [2 * i for i in range(30)]
    assert result.stats.retries == 3

    Crashy.triggers_batching(chunk_size=4, over="xs")
    piped = Pipeline(Crashy, backend=backend, max_concurrency=2).run(
        {"xs": list(range(12)), "markers": str(tmp_path)}
    )
    assert piped.ok, piped.failures
    assert piped.context["xs"] == [x * 3 for x in range(12)]


def _package(root: Path, name: str) -> Path:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(
        f"# {name}: Ray caches py_modules by content, so each test package differs\n"
        "import os\n"
        "from pathlib import Path\n\n"
        "def triple(batch):\n"
        "    return [3 * item for item in batch.items]\n\n"
        "def square(item, markers, crash=True):\n"
        "    import ray\n"
        "    marker = Path(markers) / f'wf-{item}'\n"
        "    if crash and item % 7 == 3 and not marker.exists():\n"
        "        marker.write_text('crashed once')\n"
        "        os._exit(1)\n"
        "    import time\n"
        "    time.sleep(float(os.environ.get('BL_SLOW', '0')))\n"
        "    return {'square': item * item, 'on_ray': ray.is_initialized()}\n"
    )
    return package


def test_preflight_stops_at_once_and_runtime_env_ships_the_code(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path, "blshipped_a")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the workers
    from blshipped_a import triple  # type: ignore[import-not-found]

    calls: list[int] = []
    with pytest.raises(ConfigurationError) as caught:
        run_batches(
            range(20),
            triple,
            chunk_size=2,
            backend=RayBackend(cluster.address),
            on_batch_start=lambda p: calls.append(p.batch_number),
        )
    message = str(caught.value)
    assert "Ray workers cannot load `blshipped_a.triple`" in message
    assert "No module named 'blshipped_a'" in message
    assert "py_modules" in message
    assert calls == []  # stopped before the first batch, nothing retried

    # Ray uploads local folders when it starts: a fresh driver ships the package.
    script = tmp_path / "ship.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from blshipped_a import triple\n"
        "from batchline import run_batches\n"
        "from batchline.backends import RayBackend\n"
        f"env = {{'py_modules': [{str(package)!r}]}}\n"
        f"backend = RayBackend({cluster.address!r}, runtime_env=env)\n"
        "print(run_batches(range(20), triple, chunk_size=2, backend=backend).results)\n"
    )
    shipped = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=120,
        check=False,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.strip() == str([3 * i for i in range(20)])
    # In this process Ray already runs: local paths cannot be shipped any more; said so.
    with pytest.raises(ConfigurationError, match="already started"):
        run_batches(
            [1], triple, backend=RayBackend(cluster.address, runtime_env={"working_dir": "."})
        )


def test_unpicklable_capture_is_named(cluster: Cluster) -> None:
    lock = threading.Lock()

    def guarded(batch: Batch[int]) -> list[int]:
        with lock:
            return list(batch.items)

    with pytest.raises(ConfigurationError) as caught:
        run_batches(range(4), guarded, backend="ray")
    message = str(caught.value)
    assert "`lock (_thread.lock)`" in message
    assert "cannot be pickled" in message
    assert "setup=" in message


PICKLED: list[int] = []


class Heavy:
    """A large captured object that counts how often it is pickled (here, in the driver)."""

    def __init__(self) -> None:
        self.blob = b"x" * (15 * MB)

    def __reduce__(self) -> tuple[Any, ...]:
        PICKLED.append(1)
        return (Heavy._rebuild, (self.blob,))

    @staticmethod
    def _rebuild(blob: bytes) -> Heavy:
        heavy = Heavy.__new__(Heavy)
        heavy.blob = blob
        return heavy


def test_large_capture_is_shipped_once_and_setup_runs_once_per_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    heavy = Heavy()

    def measure(batch: Batch[int]) -> list[int]:
        return [len(heavy.blob) + os.getpid() * 0 for _ in batch.items]

    setups = tmp_path / "setups.log"

    def setup() -> None:
        with open(setups, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")

    def pid_of(batch: Batch[int]) -> list[int]:
        return [os.getpid() for _ in batch.items]

    PICKLED.clear()
    result = run_batches(range(20), measure, chunk_size=2, max_concurrency=2, backend="ray")
    assert result.results == [15 * MB] * 20
    assert len(PICKLED) == 1, "the 15 MB capture is put in the object store once"

    backend = RayBackend(cluster.address, setup=setup)
    pids = run_batches(range(30), pid_of, chunk_size=1, max_concurrency=2, backend=backend)
    assert pids.ok
    set_up = setups.read_text().split()
    assert len(set_up) == len(set(set_up)), "setup ran once per worker process"
    assert {str(pid) for pid in pids.results} <= set(set_up)


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=240,
        check=False,
    )


WORKFLOW = """name: on-cluster
steps:
  - name: squares
    task: batch
    inputs:
      items: "{{ range(N) | list }}"
      chunk_size: 4
      max_concurrency: 2
      task:
        task: python
        inputs:
          function: "blshipped_wf:square"
          item: "{{ batch.item }}"
          markers: "MARKERS"
          crash: CRASH
"""


def _workflow(tmp_path: Path, *, items: int, crash: bool) -> Path:
    path = tmp_path / "wf.yaml"
    text = WORKFLOW.replace("MARKERS", str(tmp_path)).replace("CRASH", str(crash).lower())
    path.write_text(text.replace("range(N)", f"range({items})"))
    return path


def test_workflow_preflight_node_loss_and_shipped_module(cluster: Cluster, tmp_path: Path) -> None:
    # Not in the driver's folder: Ray puts the driver's sys.path on workers of a local cluster.
    (tmp_path / "code").mkdir()
    package = _package(tmp_path / "code", "blshipped_wf")
    workflow = _workflow(tmp_path, items=20, crash=True)
    env = _env()
    missing = _cli(
        "run", str(workflow), "--ray-address", cluster.address, "--format", "json",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert missing.returncode == 1, missing.stderr
    step = json.loads(missing.stdout)["steps"]["squares"]
    assert "cannot load `blshipped_wf:square`" in step["error"]
    assert "No module named 'blshipped_wf'" in step["error"]
    assert not list(tmp_path.glob("wf-*")), "no item ran"

    done = _cli(
        "run", str(workflow), "--ray-address", cluster.address, "--ray-py-module", str(package),
        "--format", "json", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["steps"]["squares"]["result"]
    assert [r["square"] for r in result["results"]] == [i * i for i in range(20)]
    assert all(r["on_ray"] for r in result["results"])
    assert len(list(tmp_path.glob("wf-*"))) == 3  # three workers died, their batches re-ran


def test_sigterm_is_graceful_and_resume_remembers_the_backend(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "code").mkdir()
    package = _package(tmp_path / "code", "blshipped_wf")
    workflow = _workflow(tmp_path, items=40, crash=False)
    child = subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", "run", str(workflow), "--ray-address",
         cluster.address, "--ray-py-module", str(package)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(BL_SLOW="0.2"),
    )  # fmt: skip
    assert child.stderr is not None
    lines: list[str] = []
    for line in child.stderr:
        lines.append(line)
        if "squares (batch): " in line and "/40 items" in line:
            break
    child.send_signal(signal.SIGTERM)
    _, rest = child.communicate(timeout=120)
    output = "".join(lines) + rest
    assert child.returncode == 130, output
    assert "interrupted" in output
    resume = output.split("Resume with: ", 1)[1].split()
    assert resume[:2] == ["batchline", "resume"]

    info = SQLiteStateStore(tmp_path / ".batchline" / "state.db").get_run(resume[2])
    assert info.status == "interrupted"
    assert info.meta["backend"] == "ray"
    resumed = _cli(*resume[1:], "--format", "json", cwd=tmp_path, env=_env())
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)["steps"]["squares"]["result"]
    assert [r["square"] for r in result["results"]] == [i * i for i in range(40)]
    assert result["stats"]["resumed"] > 0
    assert all(r["on_ray"] for r in result["results"]), "the resumed run ran on Ray again"


def test_wrong_address_fails_in_seconds_before_any_step(tmp_path: Path) -> None:
    direct = subprocess.run(
        [sys.executable, "-c", "from batchline.backends import RayBackend\n"
         "RayBackend('127.0.0.1:1', connect_timeout=2).ensure_started()"],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    assert direct.returncode == 1
    assert "RayConnectionError: cannot connect to the Ray cluster at `127.0.0.1:1`" in (
        direct.stderr
    )
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "name: early\n"
        "steps:\n"
        "  - {name: first, task: file.write, inputs: {path: ran.txt, content: x}}\n"
        "  - name: later\n"
        "    task: batch\n"
        "    inputs: {items: [1], task: {task: python, inputs: {code: 'result = 1'}}}\n"
    )
    done = _cli("run", str(workflow), "--ray-address", "127.0.0.1:1", cwd=tmp_path, env=_env())
    assert done.returncode == 1
    assert "cannot connect to the Ray cluster at `127.0.0.1:1`" in done.stderr
    assert not (tmp_path / "ran.txt").exists(), "no step ran before connecting"


def test_ray_client_address_and_joining_through_ray_address(
    cluster: Cluster, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, ray\n"
        "from batchline import run_batches\n"
        "from batchline.backends import RayBackend\n"
        "def double(batch):\n"
        "    return [2 * i for i in batch.items]\n"
        "backend = RayBackend(sys.argv[1]) if len(sys.argv) > 1 else 'ray'\n"
        "result = run_batches(range(10), double, chunk_size=3, backend=backend)\n"
        "print(result.results, len([n for n in ray.nodes() if n['Alive']]))\n"
    )
    # Ray's client server starts a server per client: on a busy host that start can fail
    # ("Starting Ray client server failed", or an "Initialization failure from server"
    # when its psutil scan meets a zombie process); a new client then succeeds.
    for _ in range(3):
        client = subprocess.run(
            [sys.executable, str(script), f"ray://127.0.0.1:{cluster.client_port}"],
            capture_output=True, text=True, env=_env(), timeout=120, check=False,
        )  # fmt: skip
        if not any(
            flake in client.stderr
            for flake in ("Starting Ray client server failed", "Initialization failure from server")
        ):
            break
    assert client.returncode == 0, client.stderr
    assert client.stdout.split("]")[0] + "]" == str([2 * i for i in range(10)])
    joined = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, env=_env(RAY_ADDRESS=cluster.address), timeout=120,
        check=False,
    )  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.strip().endswith(" 2"), "joined the two-node cluster"
    # Without an address (none in the environment, none started here): a private local
    # Ray, whose temp folder is removed when the process ends.
    private = Path(tempfile.mkdtemp(prefix="blt-", dir="/tmp"))
    alone = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, env=_env(TMPDIR=str(private)), timeout=180, check=False,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.strip().endswith(" 1"), "a private one-node Ray"
    assert list(private.iterdir()) == [], "no temp folder left behind"
    private.rmdir()


def test_kill_9_of_the_driver_then_resume_on_ray(cluster: Cluster, tmp_path: Path) -> None:
    """The crash test on Ray: nothing committed runs again, nothing is lost."""
    total, chunk = 200, 5
    state = tmp_path / "crash.db"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    def driver(log: Path, sleep: str) -> list[str]:
        return [sys.executable, str(CASES / "crash_store.py"), str(state), "crash", str(total),
                str(chunk), "2", str(log), f"ray:{cluster.address}", sleep]  # fmt: skip

    child = subprocess.Popen(
        driver(first_log, "0.05"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("committed") and int(line.split()[1]) >= 40:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    committed = {r.key for r in SQLiteStateStore(state).iter_items("crash")}
    assert 40 <= len(committed) < total

    done = subprocess.run(
        driver(second_log, "0"), capture_output=True, text=True, env=_env(), timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rerun = {int(key) for key in second_log.read_text().split()}
    assert not committed & rerun, "a committed item ran again"
    records = list(SQLiteStateStore(state).iter_items("crash"))
    assert [r.key for r in records] == list(range(total))
    assert all(r.status == "done" and r.result == 2 * r.key for r in records)


def slow_where(batch: Batch[int]) -> list[str]:
    node = ray.get_runtime_context().get_node_id()
    (Path(os.environ["BL_MARKERS"]) / f"started-{batch.number}-{node}").write_text("")
    time.sleep(0.6)
    return [node for _ in batch.items]


def test_killing_the_second_node_mid_run_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """Last: the second node is killed while it runs a batch (then started again)."""
    second = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second" in n["Resources"])
    killed: list[str] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [p.name for p in tmp_path.glob(f"started-*-{second}")]
            if any(int(name.split("-")[1]) >= 3 for name in running):
                cluster.kill_second()
                killed.extend(running)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    store = SQLiteStateStore(tmp_path / "node.db")
    backend = RayBackend(cluster.address, runtime_env={"env_vars": {"BL_MARKERS": str(tmp_path)}})
    outcomes = list(
        stream_batches(
            range(24),
            slow_where,
            chunk_size=2,
            max_concurrency=2,
            store=store,
            run_id="node-loss",
            retry=RetryPolicy.none(),  # node loss is retried even so
            backend=backend,
        )
    )
    killer.join()
    assert killed, "the second node ran a batch and was killed"
    info = store.get_run("node-loss")
    assert (info.status, info.succeeded, info.failed) == ("completed", 24, 0)
    assert [len(o.results) for o in outcomes] == [2] * 12
    assert sum(o.attempts - 1 for o in outcomes) >= 1, "the batch on the dead node ran again"
    cluster.start_second()
