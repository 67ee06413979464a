"""batchline's main demo: an LLM step over 12,000 companies, Ctrl-C half-way, resume, cache.

    python examples/demo.py            # the whole story (what `make demo` runs)
    python examples/demo.py --worker   # just the LLM run (resumes if interrupted)

The run reads examples/data/companies.csv and asks a model, for every company, for its
segment and a one-line pitch (structured output), 100 companies a batch, 4 batches in
flight, each batch's answers committed to a SQLite state file. With OPENAI_API_KEY (and
optionally OPENAI_BASE_URL, DEMO_MODEL) set it calls that provider, on the first 200
companies by default and under a $0.50 budget; otherwise it starts batchline's local
OpenAI-compatible server, so the demo needs no key and no network.

The story: start the run as a child process, send it Ctrl-C (SIGINT) once about half of
the items are done, show what the run says, resume it (only the missing items run, and
answers already paid for come from the response cache), then run the whole job again
under a new run id to show that a re-run pays nothing. It ends with the command that
opens the dashboard over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batchline import Batch, RetryPolicy, RunInterrupted, SQLiteStateStore, arun_batches
from batchline.llm import ChatModel

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "companies.csv"
RUN_ID = "companies-demo"
SYSTEM = "You are a B2B market analyst. Answer with JSON only."
ANSWER = {
    "type": "object",
    "properties": {
        "segment": {"type": "string", "enum": ["enterprise", "smb", "startup"]},
        "pitch": {"type": "string"},
    },
    "required": ["segment", "pitch"],
    "additionalProperties": False,
}


def load(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The input records: one dict per CSV row (the first ``limit`` of them)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def score(company: dict[str, Any]) -> float:
    """A deterministic fit score from the record itself (no LLM needed for this part)."""
    employees = int(company["employees"])
    revenue = float(company["revenue_musd"])
    age = 2026 - int(company["founded"])
    return round(min(100.0, 12 * math.log1p(employees) + 9 * math.log1p(revenue) + age / 5), 1)


def prompt_for(company: dict[str, Any]) -> str:
    """The question asked about one company."""
    return (
        f"Company: {company['name']} ({company['industry']}, {company['city']}, "
        f"{company['country']}), founded {company['founded']}, {company['employees']} "
        f"employees, revenue {company['revenue_musd']} MUSD, {company['website']}.\n"
        "Give its segment (enterprise, smb or startup) and a one-line sales pitch."
    )


def make_enrich(model: ChatModel) -> Any:
    """The batch function: one structured LLM call per company, the batch's calls at once."""

    async def ask(company: dict[str, Any]) -> dict[str, Any]:
        prompt = prompt_for(company)
        completion = await model.acomplete(prompt, system=SYSTEM, output=ANSWER, max_tokens=200)
        answer = completion.parsed or {}
        return {
            "segment": answer.get("segment"),
            "pitch": answer.get("pitch"),
            "score": score(company),
            # what the dashboard's item page shows as the LLM call
            "llm": {
                "model": completion.model,
                "system": SYSTEM,
                "prompt": prompt,
                "answer": answer,
                "prompt_tokens": completion.usage.prompt_tokens,
                "completion_tokens": completion.usage.completion_tokens,
                "cost_usd": completion.usage.cost_usd,
                "cached": completion.cached,
                "finish_reason": getattr(completion, "finish_reason", None),
            },
        }

    async def enrich(batch: Batch[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(ask(company) for company in batch.items)))

    return enrich


def local_analyst(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """The local server's stand-in for a model: reads the prompt, answers plausibly."""
    del body
    text = str(messages[-1]["content"])
    words = text.split()
    name = text.split(" (", 1)[0].removeprefix("Company: ")
    employees = int(words[words.index("employees,") - 1]) if "employees," in words else 0
    segment = "enterprise" if employees >= 500 else "smb" if employees >= 25 else "startup"
    pitch = f"{name}: {segment}-grade results without {segment}-grade overhead."
    return json.dumps({"segment": segment, "pitch": pitch})


def _real_provider() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY")) and not os.environ.get("DEMO_BASE_URL")


async def _run(state: Path, run_id: str, limit: int | None, progress: bool | None) -> None:
    companies = load(DATA, limit)
    model = ChatModel(
        os.environ.get("DEMO_MODEL", "gpt-4o-mini"),
        cache_dir=state.parent,  # llm-cache.db beside the state: a re-run pays nothing
        max_cost_usd=0.50 if _real_provider() else None,
        max_concurrency=64,
    )
    try:
        result = await arun_batches(
            companies,
            make_enrich(model),
            chunk_size=100,
            key="id",
            store=SQLiteStateStore(state),
            run_id=run_id,
            max_concurrency=4,
            retry=RetryPolicy(max_attempts=3, backoff=0.2),
            progress=progress,
        )
    finally:
        await model.aclose()
    segments: dict[str, int] = {}
    for row in result.results:
        if row is not None:
            segments[row["segment"]] = segments.get(row["segment"], 0) + 1
    usage = model.usage
    print(
        f"run {result.run_id!r}: {result.stats.succeeded:,} enriched, {result.stats.failed} "
        f"failed, {result.stats.resumed:,} resumed from state, {result.stats.batches} batches "
        f"in {result.stats.duration:.1f}s; segments {dict(sorted(segments.items()))}"
    )
    print(
        f"   LLM this time: {usage.calls:,} calls, {usage.cached_calls:,} from the cache, "
        f"{usage.prompt_tokens + usage.completion_tokens:,} tokens, ${usage.cost_usd:.6f}"
    )


def run(state: Path, run_id: str, limit: int | None, progress: bool | None) -> None:
    """The LLM run itself; the same command resumes it after an interruption."""
    asyncio.run(_run(state, run_id, limit, progress))


def _worker(state: Path, run_id: str, limit: int | None) -> list[str]:
    command = [sys.executable, __file__, "--worker", "--state", str(state), "--run-id", run_id]
    return [*command, "--no-progress", *(["--limit", str(limit)] if limit else [])]


def story(state: Path, limit: int | None) -> None:
    """Start the run, interrupt it half-way with Ctrl-C, resume it, then re-run it."""
    state.parent.mkdir(parents=True, exist_ok=True)
    for name in (state.name, "llm-cache.db"):
        for suffix in ("", "-wal", "-shm"):
            Path(state.parent / f"{name}{suffix}").unlink(missing_ok=True)
    total = len(load(DATA, limit))
    print(f"1. asking a model about {total:,} companies from {DATA.relative_to(HERE.parent)} ...")
    child = subprocess.Popen(  # noqa: S603 - runs this very file
        _worker(state, RUN_ID, limit), stderr=subprocess.PIPE, text=True
    )
    store = None
    shown = 0
    while child.poll() is None:
        time.sleep(0.05)
        if store is None and state.exists():
            store = SQLiteStateStore(state)
        if store is not None and any(r.run_id == RUN_ID for r in store.list_runs()):
            done = store.get_run(RUN_ID).succeeded
            if done >= shown + total // 8:
                shown = done
                print(f"   {done:,} of {total:,} answered and committed")
            if done >= total // 2:
                print(f"2. {done:,} of {total:,} done: pressing Ctrl-C (SIGINT) on purpose")
                child.send_signal(signal.SIGINT)
                break
    _, err = child.communicate()
    message = [line for line in err.splitlines() if "interrupted by" in line]
    print("   the run said:", message[-1].split(": ", 1)[-1] if message else err.strip())
    assert store is not None
    info = store.get_run(RUN_ID)
    print(f"   state: {info.status}, {info.succeeded:,} committed, nothing lost")
    print("3. resuming the same run (same store, same run_id): only the missing items run")
    run(state, RUN_ID, limit, progress=None)
    print("4. the whole job again under a new run id: every answer comes from the cache")
    run(state, f"{RUN_ID}-again", limit, progress=None)
    print(
        f"5. look at it in the dashboard: batchline ui --state {state}\n"
        f"   (or `make ui`; from a `make demo` checkout: .venv/bin/batchline ui --state {state})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="run (or resume) the LLM run")
    parser.add_argument("--state", type=Path, default=Path("demo-out/state.db"))
    parser.add_argument("--run-id", default=RUN_ID)
    parser.add_argument("--limit", type=int, default=None, help="only the first N companies")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    limit = args.limit or (200 if _real_provider() else None)
    server = None
    if not _real_provider() and not os.environ.get("DEMO_BASE_URL"):
        from batchline.testing import OpenAICompatibleServer

        server = OpenAICompatibleServer(latency=0.05, responder=local_analyst).start()
        os.environ["DEMO_BASE_URL"] = server.base_url  # the worker child uses the same server
    if os.environ.get("DEMO_BASE_URL"):
        os.environ["OPENAI_BASE_URL"] = os.environ["DEMO_BASE_URL"]
        os.environ.setdefault("OPENAI_API_KEY", "local-test-server")
        if server is not None:
            print(f"no OPENAI_API_KEY: a local OpenAI-compatible server at {server.base_url}")
    try:
        if args.worker:
            try:
                run(args.state, args.run_id, limit, progress=False if args.no_progress else None)
            except RunInterrupted as exc:
                print(f"RunInterrupted: {exc}", file=sys.stderr)
                sys.exit(130)
            return
        story(args.state, limit)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
