"""Stream N generated items and print the peak RSS growth in MB.

usage: stream_memory.py N CHUNK [sqlite DB]
"""

import resource
import sys

from batchline import SQLiteStateStore, stream_batches

n, chunk = int(sys.argv[1]), int(sys.argv[2])
store = SQLiteStateStore(sys.argv[4]) if len(sys.argv) > 4 else None


def items():
    for i in range(n):
        yield {"id": f"company-{i:07d}", "name": f"Company {i}", "employees": i % 5000}


def enrich(batch):
    return [{"size": "large" if item["employees"] > 1000 else "small"} for item in batch.items]


def peak_kb():
    """Peak RSS of this process in KiB. VmHWM, unlike ru_maxrss, is not inherited from
    the parent across fork and exec, so a large parent does not hide our growth."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


before = peak_kb()
count = 0
for outcome in stream_batches(
    items(), enrich, chunk_size=chunk, key="id", store=store, max_concurrency=2
):
    count += len(outcome.results)
after = peak_kb()
assert count == n, count
print(f"{(after - before) / 1024:.1f}")
