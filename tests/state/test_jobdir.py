"""State inside a submitted Ray job's unpacked working dir would be lost: refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchline import SQLiteStateStore, StateError
from batchline.state.jobdir import JOB_CONFIG_VARIABLE


def _as_ray_job(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.setenv(
        JOB_CONFIG_VARIABLE,
        json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}, "metadata": {}}),
    )


def test_relative_state_in_a_ray_job_working_dir_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = tmp_path / "session" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    job.mkdir(parents=True)
    _as_ray_job(monkeypatch, job)
    with pytest.raises(StateError, match=r"inside the Ray job's working directory.*absolute"):
        SQLiteStateStore("runs.db")
    with pytest.raises(StateError, match="PostgreSQL"):
        SQLiteStateStore(job / "sub" / "runs.db")
    assert not (job / "runs.db").exists()
    outside = tmp_path / "durable" / "runs.db"
    SQLiteStateStore(outside).close()  # an absolute path elsewhere is fine
    assert outside.exists()


def test_without_a_shipped_working_dir_nothing_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(JOB_CONFIG_VARIABLE, json.dumps({"runtime_env": {}}))
    SQLiteStateStore("runs.db").close()
    assert (tmp_path / "runs.db").exists()
