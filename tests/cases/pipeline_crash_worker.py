"""A pipeline that may be killed at any moment, whose upstream list changes every run.

usage: pipeline_crash_worker.py DB LOG ATTEMPT CONCURRENCY

Discover returns ids 0..239 except those with ``id % 6 == ATTEMPT % 6`` (so every run
sees a different list), in an order that also depends on ATTEMPT. Enrich appends
``ATTEMPT:id`` to LOG for every item it starts, then records the attempt in the item.
On success the worker prints ``finished`` and the final list as JSON.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

from batchline import RetryPolicy, SQLiteStateStore
from batchline.pipeline import Agent, Pipeline

db, log_path, attempt, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
rng = random.Random(attempt)


class Discover(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        ids = [i for i in range(240) if i % 6 != attempt % 6]
        random.Random(attempt).shuffle(ids)
        return {"items": [{"id": i} for i in ids]}


class Enrich(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        os.write(log, "".join(f"{attempt}:{c['id']}\n" for c in context["items"]).encode())
        time.sleep(rng.random() * 0.01)
        return {"items": [{**c, "run_in": attempt} for c in context["items"]]}


Enrich.triggers_batching(chunk_size=6, over="items", key="id")

result = Pipeline(
    Discover >> Enrich,
    store=SQLiteStateStore(db),
    run_id="crash",
    max_concurrency=int(concurrency),
    retry=RetryPolicy(max_attempts=1),
).run()
assert result.ok, result.failures
print("finished", json.dumps(result.context["items"]), flush=True)
