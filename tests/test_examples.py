"""The examples in examples/ run as the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_is_interrupted_and_resumes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--state", str(tmp_path / "demo.db")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "pressing Ctrl-C (SIGINT) on purpose" in out
    assert "interrupted by SIGINT" in out
    assert "Resume with the same store" in out
    assert "12,000 enriched, 0 failed" in out
    resumed = int(out.split(" resumed from state")[0].rsplit(", ", 1)[-1].replace(",", ""))
    assert 6000 <= resumed < 12000


def test_prospects_pipeline_runs_and_resumes(tmp_path: Path) -> None:
    state = tmp_path / "prospects.db"
    command = [
        sys.executable,
        str(EXAMPLES / "prospects.py"),
        "fintech in Berlin",
        "--state",
        str(state),
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "103 prospects for 'fintech in Berlin'" in first.stdout
    assert "3 batches, 103 companies enriched, 0 resumed, 0 failed batches" in first.stdout
    assert "batch 3/3" in first.stderr
    assert "scope `Enrich` batch 3/3: 3 items" in first.stderr  # the on_batch_complete hook
    assert "7 shortlisted; tiers: 6 large, 38 mid, 59 small" in first.stdout  # after the scope
    again = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert "103 resumed" in again.stdout
    assert "shortlisted" not in again.stderr  # resumed batches are loaded, not run again
    assert first.stdout.splitlines()[:6] == again.stdout.splitlines()[:6]


def _workflow(tmp_path: Path, name: str, *params: str) -> dict[str, object]:
    import json

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchline.cli",
            "run",
            str(EXAMPLES / "workflows" / name),
            *params,
            "--workspace",
            str(tmp_path / "ws"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, object] = json.loads(done.stdout)
    assert summary["status"] == "completed"
    return summary


def test_thumbnails_workflow(tmp_path: Path) -> None:
    listing = tmp_path / "listing.txt"
    listing.write_text("".join(f"{p}\n" for p in sorted((EXAMPLES / "data").iterdir())))
    _workflow(
        tmp_path, "thumbnails.yaml", f"listing={listing}", f"out={tmp_path / 'th'}", "chunk=1"
    )
    assert (tmp_path / "th" / "report.txt").read_text() == "2 of 2 done"
    assert (tmp_path / "th" / "0.thumb").stat().st_size == 64


def test_word_counts_workflow(tmp_path: Path) -> None:
    summary = _workflow(tmp_path, "word_counts.yaml", f"out={tmp_path / 'wc'}")
    lines = (tmp_path / "wc" / "counts.jsonl").read_text().splitlines()
    assert len(lines) > 20
    assert "files," in str(summary["steps"])


def test_enrich_companies_workflow_over_12000_items(tmp_path: Path) -> None:
    _workflow(tmp_path, "enrich_companies.yaml", f"out={tmp_path / 'en'}")
    rows = (tmp_path / "en" / "companies.jsonl").read_text().splitlines()
    assert len(rows) == 12_000
    assert '"segment"' in rows[0]


def test_release_notes_workflow(tmp_path: Path) -> None:
    summary = _workflow(tmp_path, "release_notes.yaml", "version=2.0", f"out={tmp_path / 'r'}")
    assert "publish" in str(summary["steps"])
    assert (tmp_path / "r" / "NOTES-2.0.md").read_text().startswith("# batchline 2.0")
    assert not (tmp_path / "r" / "PUBLISHED.md").exists()  # publish defaults to false


def test_llm_tagging_runs_against_the_local_server(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "llm_tagging.py"),
            "limit=60",
            f"out={tmp_path / 'o'}",
            f"workspace={tmp_path / 'ws'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "using the local test server" in done.stdout
    assert "completed: 60 tagged, 0 failed" in done.stdout
    assert len((tmp_path / "o" / "tags.jsonl").read_text().splitlines()) == 60


def test_llm_batch_tagging_workflow_uses_provider_batch_jobs(tmp_path: Path) -> None:
    from batchline.testing import OpenAICompatibleServer

    for provider in ("openai", "anthropic"):
        with OpenAICompatibleServer(batch={"completion_time": 0.2}) as server:
            base_url = server.base_url if provider == "openai" else server.base_url[:-3]
            summary = _workflow(
                tmp_path / provider,
                "llm_batch_tagging.yaml",
                "limit=120",
                f"provider={provider}",
                f"base_url={base_url}",
                "poll_interval=0.1",
                f"out={tmp_path / provider / 'o'}",
            )
            counts = server.batches.counts()
        tag = summary["steps"]["tag"]  # type: ignore[index]
        assert tag["result"]["stats"]["processed"] == 120
        assert tag["usage"]["batch_jobs"] == 1
        assert counts["jobs"] == 1
        assert set(counts["answered"].values()) == {1}
        assert server.counts["requests"] == 0  # no online call
