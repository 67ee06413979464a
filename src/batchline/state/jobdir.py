"""State must not live in the throw-away copy of a Ray job's working directory.

``ray job submit --working-dir .`` runs the driver in an unpacked copy of the folder
(under Ray's session directory). A state file there is lost when the job ends, so the
next submission would silently run everything again. The store refuses such a path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from batchline.errors import StateError

JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in the environment of a submitted driver."""


def job_working_dir() -> Path | None:
    """The unpacked working dir when this process is a Ray job driver shipped with one."""
    raw = os.environ.get(JOB_CONFIG_VARIABLE)
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError:
        return None
    runtime_env = config.get("runtime_env") if isinstance(config, dict) else None
    if not isinstance(runtime_env, dict) or not runtime_env.get("working_dir"):
        return None
    return Path.cwd().resolve()


def check_state_path(path: Path) -> None:
    """Refuse a state file inside a submitted Ray job's unpacked working directory.

    Raises:
        StateError: ``path`` would be lost when the job ends.
    """
    folder = job_working_dir()
    if folder is None:
        return
    resolved = path.expanduser().resolve()
    if resolved == folder or folder in resolved.parents:
        raise StateError(
            f"the state file {path} would be inside the Ray job's working directory "
            f"({folder}), an unpacked copy that Ray deletes when the job ends: the next "
            "submission would run everything again. Pass an absolute path on a disk that "
            "outlives the job (e.g. --state /data/runs.db, or settings.workspace: "
            "/data/batchline), or a PostgreSQL store (--state postgresql://...)."
        )
