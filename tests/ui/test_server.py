"""The dashboard over HTTP: redacted, loopback-only, escaped, exports, and `batchline ui`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .builders import SECRET, engine_run, workflow_run


def _get(url: str, host: str | None = None) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    engine_run(path)
    return path


def test_every_page_and_export_redacts_secrets(
    state: Path, dashboard_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    board = dashboard_for(state)
    pages = [
        "/", "/run?s=0&id=enrich-nov", "/run?s=0&id=enrich-nov&error_type=KeyError",
        "/items?s=0&id=enrich-nov&status=failed", "/item?s=0&id=enrich-nov&key=11",
        "/export?s=0&id=enrich-nov&format=jsonl", "/export?s=0&id=enrich-nov&format=csv",
        "/api/runs", "/api/run?s=0&id=enrich-nov",
    ]  # fmt: skip
    for page in pages:
        status, body, _ = _get(board.url + page)
        assert status == 200, page
        assert SECRET not in body, page
    _, item, _ = _get(board.url + "/item?s=0&id=enrich-nov&key=11")
    assert "key=***" in item


def test_exports_hold_every_item_in_order(state: Path, dashboard_for: Any) -> None:
    board = dashboard_for(state)
    _, body, headers = _get(board.url + "/export?s=0&id=enrich-nov&format=jsonl")
    rows = [json.loads(line) for line in body.splitlines()]
    assert [row["key"] for row in rows] == list(range(300))
    assert rows[1] == {
        "key": 1,
        "status": "done",
        "attempts": 1,
        "result": {"id": 1, "tier": "A"},
        "error_type": None,
        "message": None,
    }
    assert "enrich-nov.jsonl" in headers["Content-Disposition"]
    _, csv_body, _ = _get(board.url + "/export?s=0&id=enrich-nov&format=csv")
    assert len(csv_body.splitlines()) == 300


def test_only_loopback_host_names_and_safe_headers(state: Path, dashboard_for: Any) -> None:
    board = dashboard_for(state)
    status, _, headers = _get(board.url + "/")
    assert status == 200
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = _get(board.url + "/", host="attacker.example:80")
    assert status == 403
    assert "loopback" in body


def test_item_values_are_escaped(tmp_path: Path, dashboard_for: Any) -> None:
    from batchline import SQLiteStateStore, run_batches

    state = tmp_path / "state.db"
    hostile = "<script>alert(1)</script>"
    with SQLiteStateStore(state) as store:
        run_batches(
            [{"id": hostile}], lambda b: [{"html": hostile}], key="id", store=store, run_id=hostile
        )
    board = dashboard_for(state)
    for page in ("/", "/items?s=0&id=" + urllib.request.quote(hostile)):
        _, body, _ = _get(board.url + page)
        assert hostile not in body
        assert "&lt;script&gt;" in body


def test_unknown_run_and_bad_parameters(state: Path, dashboard_for: Any) -> None:
    board = dashboard_for(state)
    status, body, _ = _get(board.url + "/run?s=0&id=nope")
    assert status == 404
    assert "no run `nope`" in body
    assert "enrich-nov" in body
    assert _get(board.url + "/run?s=7&id=nope")[0] == 404
    assert _get(board.url + "/export?s=0&id=enrich-nov&format=xml")[0] == 400
    assert _get(board.url + "/item?s=0&id=enrich-nov&key=%5B1%5D")[0] == 400


def test_workflow_steps_fold_under_their_run(tmp_path: Path, dashboard_for: Any) -> None:
    state = workflow_run(tmp_path / "wf")
    board = dashboard_for(state)
    _, body, _ = _get(board.url + "/api/runs")
    runs = json.loads(body)
    assert len(runs) == 1
    assert runs[0]["front_door"] == "workflow"
    tag = [child for child in runs[0]["children"] if child["run_id"].endswith("/tag")]
    assert tag
    assert tag[0]["succeeded"] == 27
    assert tag[0]["failed"] == 3


def test_the_command_serves_and_names_bad_files(state: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", "ui", "--state", str(state), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        status, body, _ = _get(match.group(0))
        assert status == 200
        assert "enrich-nov" in body
    finally:
        proc.terminate()
        proc.wait(10)
    none = str(tmp_path / "none.db")
    missing = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "ui", "--state", none, "--port", "0"],
        check=False,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "no state file at" in missing.stderr
    assert "none.db" in missing.stderr
    assert "Traceback" not in missing.stderr
