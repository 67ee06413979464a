"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

``LocalRayCluster`` runs ``ray start --head`` and ``ray start --address=...`` (one CPU and a
small object store each), every node a ``ray start --block`` process in its own process
group, so one node can be killed with SIGKILL (node loss) and the whole cluster stopped
without ``ray stop`` (which would stop every Ray on the machine). State lives in a short
temporary folder (Ray's unix sockets have a 107-byte path limit), removed on ``stop()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

MB = 1024 * 1024


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class LocalRayCluster:
    """A head and ``extra_nodes`` joining nodes; the joining nodes carry resource ``second``.

    Args:
        extra_nodes: nodes joining the head.
        cpus: CPUs per node.
        object_store_mb: object store per node, in MB.
    """

    def __init__(self, extra_nodes: int = 1, *, cpus: int = 1, object_store_mb: int = 80) -> None:
        self.extra_nodes = extra_nodes
        self.cpus = cpus
        self.object_store = object_store_mb * MB
        self.temp = Path(tempfile.mkdtemp(prefix="blrc-", dir="/tmp"))
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_failure_threshold": "3",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.head: subprocess.Popen[bytes] | None = None
        self.nodes: list[subprocess.Popen[bytes]] = []

    def _node(self, *args: str) -> subprocess.Popen[bytes]:
        ray = str(Path(sys.executable).with_name("ray"))
        return subprocess.Popen(  # noqa: S603 - our own fixed command
            [
                ray,
                "start",
                f"--num-cpus={self.cpus}",
                f"--object-store-memory={self.object_store}",
                "--disable-usage-stats",
                "--block",
                *args,
            ],
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 120) -> LocalRayCluster:
        """Start the head, wait for it, start the other nodes; return self."""
        self.head = self._node(
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--temp-dir={self.temp}",
            f"--ray-client-server-port={self.client_port}",
        )
        deadline = time.monotonic() + timeout
        while not (self.temp / "ray_current_cluster").exists() or not answers(self.port):
            if time.monotonic() > deadline or self.head.poll() is not None:
                self.stop()
                raise RuntimeError(f"the Ray head did not start within {timeout:g}s")
            time.sleep(0.2)
        for _ in range(self.extra_nodes):
            self.add_node()
        return self

    def add_node(self) -> subprocess.Popen[bytes]:
        """Start one more node joining the head (it carries the custom resource ``second``)."""
        node = self._node(f"--address={self.address}", '--resources={"second": 1}')
        self.nodes.append(node)
        return node

    def kill_node(self, node: subprocess.Popen[bytes] | None = None) -> None:
        """SIGKILL a joining node (the last one by default) and all its processes."""
        target = node or self.nodes[-1]
        os.killpg(target.pid, signal.SIGKILL)
        target.wait()
        self.nodes.remove(target)

    def stop(self) -> None:
        """Kill every node this object started and remove the temp folder."""
        for node in [*self.nodes, self.head]:
            if node is not None and node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        self.nodes.clear()
        self.head = None
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["LocalRayCluster", "answers", "free_port"]
