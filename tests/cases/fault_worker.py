"""A durable run that may hit a storage fault: prints each batch once it is committed.

usage: fault_worker.py DB RUN_ID ITEMS RESULT_BYTES [FILE_SIZE_LIMIT]
"""

import resource
import signal
import sys

from batchline import RetryPolicy, SQLiteStateStore, StateError, stream_batches

db, run_id, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if len(sys.argv) > 5:  # a small file-size limit stands in for a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[5])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    for outcome in stream_batches(
        range(n),
        lambda batch: [f"{i:06d}" + "x" * size for i in batch.items],
        chunk_size=5,
        store=SQLiteStateStore(db),
        run_id=run_id,
        retry=RetryPolicy.none(),
        progress=False,
    ):
        print("committed", outcome.batch.number, flush=True)
except StateError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)
print("finished", flush=True)
