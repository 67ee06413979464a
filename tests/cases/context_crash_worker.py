"""A durable context-array run that may be killed at any moment.

usage: context_crash_worker.py DB LOG CAPACITY SEED

Every start plans the same tasks with another batch capacity, so a resume sees a
different plan than the run it resumes: work must be matched by task id. The handler
appends ``task_id:batch_size`` to LOG for each task it runs, before returning.
"""

import os
import random
import sys
import time

from batchline import SQLiteStateStore
from batchline.context import (
    BatchExecutor,
    CentralContextStore,
    ContextEntry,
    EntryType,
    TaskBatcher,
    TaskSpec,
)

TASKS = 1000

db, log_path, capacity, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

store = CentralContextStore()
for i in range(60):
    store.add(ContextEntry(f"e{i}", EntryType.FILE, f"src/m{i}.py", f"code {i}", f"module {i}"))
tasks = [
    TaskSpec(
        f"t{i}",
        f"task {i}",
        [f"e{(i * 7 + k) % 60}" for k in range(3 + i % 4)],
        depends_on=[f"t{i - 200}"] if i >= 200 else [],
    )
    for i in range(TASKS)
]
batches = TaskBatcher(capacity).create_batches(tasks)


def handler(context, batch_tasks):
    size = len(batch_tasks)
    os.write(log, "".join(f"{task.id}:{size}\n" for task in batch_tasks).encode())
    time.sleep(rng.random() * 0.004)
    return {task.id: f"done:{task.id}" for task in batch_tasks}


executor = BatchExecutor(
    store, max_entries=capacity, max_concurrency=2, state=SQLiteStateStore(db), run_id="crash"
)
results = executor.execute_all(batches, handler)
answers = executor.get_all_task_results(results)
assert all(r.success for r in results), [r.error_message for r in results if not r.success]
print(f"finished {len(answers)}", flush=True)
