"""A throw-away PostgreSQL server for tests and benchmarks.

``LocalPostgres`` runs ``initdb`` in a temporary folder and ``pg_ctl start`` on a free
port of 127.0.0.1 (its unix socket in the same folder), and removes everything on
``stop()``. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (Debian's package creates it) through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import suppress
from pathlib import Path
from types import TracebackType

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")


def find_postgres_bin() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl`` (newest version first), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    for pattern in _SEARCH:
        for folder in sorted(glob.glob(pattern), reverse=True):
            if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
                return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    """A private PostgreSQL server; use as a context manager or call ``start``/``stop``.

    Args:
        bin_dir: where ``initdb`` and ``pg_ctl`` are (default: found on this machine).
        run_as: the user the server runs as when this process is root (default ``postgres``).
    """

    def __init__(self, bin_dir: Path | None = None, *, run_as: str = "postgres") -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no initdb/pg_ctl found); install it, e.g. "
                "`apt-get install -y postgresql` on Debian or Ubuntu."
            )
        self.bin_dir: Path = found
        self.run_as = run_as if os.geteuid() == 0 else None
        self.folder: Path | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        """A URL for the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own fixed command
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}"
            )

    def start(self) -> LocalPostgres:
        """initdb in a temporary folder and start the server; return self."""
        self.folder = Path(tempfile.mkdtemp(prefix="bl-pg-"))
        if self.run_as is not None:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        self._run(
            "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )
        self.port = _free_port()
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(
            "pg_ctl", "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.folder is None:
            return
        with suppress(RuntimeError):  # already stopped: removing the folder is all that is left
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def new_schema(self) -> str:
        """Create an empty schema and return a DSN whose tables go into it."""
        import psycopg  # noqa: PLC0415 - only where a schema is needed

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.dsn}?options=-csearch_path%3D{name}"

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["LocalPostgres", "find_postgres_bin"]
