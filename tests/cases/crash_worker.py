"""A run that may be killed at any moment: logs every item it starts, commits to SQLite.

usage: crash_worker.py DB RUN_ID ITEMS CHUNK CONCURRENCY LOG SEED [SLEEP]
"""

import os
import random
import sys
import time

from batchline import Batch, RetryPolicy, SQLiteStateStore, stream_batches

db, run_id, n, chunk, concurrency, log_path, seed = sys.argv[1:8]
sleep = float(sys.argv[8]) if len(sys.argv) > 8 else 0.004
rng = random.Random(int(seed))
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def work(batch: Batch[dict[str, int]]) -> list[int]:
    os.write(log, "".join(f"{key}\n" for key in batch.keys).encode())
    time.sleep(rng.random() * sleep)
    return [item["id"] * 2 for item in batch.items]


items = ({"id": i} for i in range(int(n)))
done = 0
for outcome in stream_batches(
    items,
    work,
    chunk_size=int(chunk),
    key="id",
    store=SQLiteStateStore(db),
    run_id=run_id,
    max_concurrency=int(concurrency),
    retry=RetryPolicy(max_attempts=1),
):
    done += len(outcome.results)
print(f"finished {done}", flush=True)
