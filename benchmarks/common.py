"""Helpers shared by the benchmarks: timing, machine description, table rows."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One line of a results table."""

    benchmark: str
    contender: str
    value: str
    note: str = ""


def machine() -> str:
    """The machine the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def best_of(repeat: int, func: Callable[[], object]) -> float:
    """The fastest of ``repeat`` timings of ``func`` (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
