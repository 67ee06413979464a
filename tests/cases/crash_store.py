"""A run that may be killed at any moment, on any store and backend.

usage: crash_store.py STATE RUN_ID ITEMS CHUNK CONCURRENCY LOG BACKEND [SLEEP]

STATE is a SQLite path or a PostgreSQL URL; BACKEND is ``local`` or a Ray address
(``ray:ADDRESS``). Every started item is appended to LOG (by whichever process runs it).
"""

import os
import sys
import time

from batchline import Batch, RetryPolicy, stream_batches
from batchline.backends import RayBackend
from batchline.state import open_store

state, run_id, n, chunk, concurrency, log_path, backend_name = sys.argv[1:8]
sleep = float(sys.argv[8]) if len(sys.argv) > 8 else 0.01


def work(batch: Batch[dict[str, int]]) -> list[int]:
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(log, "".join(f"{key}\n" for key in batch.keys).encode())
    finally:
        os.close(log)
    time.sleep(sleep)
    return [item["id"] * 2 for item in batch.items]


backend = RayBackend(address=backend_name[4:]) if backend_name.startswith("ray:") else "local"
items = ({"id": i} for i in range(int(n)))
done = 0
for outcome in stream_batches(
    items,
    work,
    chunk_size=int(chunk),
    key="id",
    store=open_store(state),
    run_id=run_id,
    max_concurrency=int(concurrency),
    retry=RetryPolicy(max_attempts=1),
    backend=backend,
):
    done += len(outcome.results)
    print(f"committed {done}", flush=True)
print(f"finished {done}", flush=True)
