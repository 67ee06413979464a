"""A pipeline scope committed to SQLite, to be killed at any moment.

usage: scope_crash_worker.py DB LOG ITEMS
Prints the scope's output as JSON when the run finishes.
"""

import json
import os
import sys
import time
from typing import Any

from batchline import SQLiteStateStore
from batchline.pipeline import Agent, Pipeline

db, log_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


class Discover(Agent):
    def run(self, context: Any) -> dict[str, Any]:
        return {"ids": list(range(n))}


class Double(Agent):
    def run(self, context: Any) -> dict[str, Any]:
        ids = context["ids"]
        os.write(log, "".join(f"{i}\n" for i in ids).encode())
        time.sleep(0.01)
        return {"ids": [i * 2 for i in ids], "seen": dict.fromkeys(ids, True)}


flow = Discover >> Double.triggers_batching(chunk_size=3, over="ids")
result = Pipeline(flow, store=SQLiteStateStore(db), run_id="p", max_concurrency=3).run()
assert result.ok, result.failures
print(json.dumps({"ids": result.context["ids"], "seen": sorted(result.context["seen"])}))
