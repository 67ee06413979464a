"""A durable run to send signals to: logs each batch it starts and finishes.

usage: signal_worker.py DB RUN_ID DRIVER CONCURRENCY SLEEP LOG [ITEMS]

DRIVER is ``sync`` (stream_batches), ``async`` (astream_batches, an async function) or
``async-threads`` (astream_batches, a plain function on the thread pool).
"""

import asyncio
import os
import sys
import time

from batchline import Batch, RetryPolicy, SQLiteStateStore, astream_batches, stream_batches

db, run_id, driver, concurrency, sleep, log_path = sys.argv[1:7]
n = int(sys.argv[7]) if len(sys.argv) > 7 else 40
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
options = {
    "chunk_size": 2,
    "store": SQLiteStateStore(db),
    "run_id": run_id,
    "max_concurrency": int(concurrency),
    "retry": RetryPolicy(max_attempts=1),
    "progress": False,
}


def note(word: str, batch: Batch[int]) -> None:
    os.write(log, f"{word} {batch.number}\n".encode())


def work(batch: Batch[int]) -> list[int]:
    note("start", batch)
    time.sleep(float(sleep))
    note("end", batch)
    return [item * 2 for item in batch.items]


async def awork(batch: Batch[int]) -> list[int]:
    note("start", batch)
    await asyncio.sleep(float(sleep))
    note("end", batch)
    return [item * 2 for item in batch.items]


async def main() -> int:
    fn = awork if driver == "async" else work
    count = 0
    async for outcome in astream_batches(range(n), fn, **options):
        count += len(outcome.results)
    return count


if driver == "sync":
    done = sum(len(o.results) for o in stream_batches(range(n), work, **options))
else:
    done = asyncio.run(main())
print(f"finished {done}", flush=True)
