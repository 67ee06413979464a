"""A pipeline to interrupt with a real signal (driven by tests/pipeline/test_interrupt.py).

    python pipeline_interrupt.py STATE_DB RUN_ID SIDE_EFFECT_LOG CONCURRENCY

Each item's enrichment appends its id to SIDE_EFFECT_LOG (the side effect that must
happen exactly once across an interrupted run and its resume). Prints ``batch N done``
after every committed batch, then ``DONE <ids>``; on an interrupt prints the error's
type and message and exits 130.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchline import RunInterrupted, SQLiteStateStore
from batchline.pipeline import Agent, BatchProgressContext, Pipeline


class Discover(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        if os.environ.get("SLOW_DISCOVER"):
            print("discovering", flush=True)
            time.sleep(1.5)  # a signal now lets this step finish; the scope never starts
        return {"companies": [{"id": i, "name": f"c{i}"} for i in range(12)]}


class Enrich(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        time.sleep(0.25)
        with Path(sys.argv[3]).open("a", encoding="utf-8") as log:
            log.writelines(f"{c['id']}\n" for c in context["companies"])
        return {"companies": [{**c, "enriched": True} for c in context["companies"]]}


class Score(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"scores": {str(c["id"]): c["id"] * 2 for c in context["companies"]}}


Enrich.triggers_batching(chunk_size=2, over="companies", key="id")
Score.ends_batching()


def report(progress: BatchProgressContext) -> None:
    print(f"batch {progress.batch_number} done", flush=True)


def main() -> None:
    class Other(Agent):
        def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
            return {"other": True}

    scope = Enrich >> Score
    pipeline = Pipeline(
        Discover >> (scope | Other) if os.environ.get("IN_BRANCH") else Discover >> scope,
        store=SQLiteStateStore(sys.argv[1]),
        run_id=sys.argv[2],
        max_concurrency=int(sys.argv[4]),
        progress=report,
    )
    try:
        result = pipeline.run({})
    except RunInterrupted as exc:
        print(f"INTERRUPTED {type(exc).__name__}: {exc}", flush=True)
        sys.exit(130)
    ids = [c["id"] for c in result.context["companies"]]
    print(f"DONE {json.dumps(ids)} {len(result.context['scores'])} ok={result.ok}", flush=True)


if __name__ == "__main__":
    main()
