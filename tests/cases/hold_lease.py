"""Take a run's lease in a child process and hold it (or die holding it)."""

import os
import sys
import time

from batchline import SQLiteStateStore

path, run_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
store = SQLiteStateStore(path)
store.acquire(run_id)
print("held", flush=True)
if mode == "die":
    os._exit(0)  # never releases: a crash
time.sleep(60)
