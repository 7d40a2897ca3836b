"""Shared by the benchmarks: the machine they ran on, and timings that survive a noisy,
shared machine (the sides are run alternately, so a burst of load hits all of them)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """CPU model, the widest x86 vector extension, cores available and the load average."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    simd = next((s for s in ("avx512f", "avx2") if f" {s}" in flags), "no AVX2")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu_model()} ({simd}), {len(os.sched_getaffinity(0))} cores available, load average {load}"


class Rates:
    """Items per second of each repetition of one side."""

    def __init__(self, n_items: int, seconds: list[float]):
        self.n_items, self.seconds = n_items, seconds

    def per_rep(self) -> list[float]:
        return [self.n_items / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.per_rep())

    def spread(self) -> tuple[float, float]:
        r = self.per_rep()
        return min(r), max(r)


def interleaved(sides: dict[str, tuple[Callable[[], object], int]], repeats: int) -> dict[str, Rates]:
    """Time each side `repeats` times, alternating between the sides (the starting side
    rotates every repetition) so that slow and fast spells of the machine fall on all of
    them. `sides` maps a name to (function, items it processes per call)."""
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            fn, _ = sides[name]
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return {n: Rates(sides[n][1], seconds[n]) for n in names}


def ratio_spread(a: Rates, b: Rates) -> tuple[float, float, float]:
    """Median, min and max over repetitions of a's rate over b's (paired repetition by
    repetition: both ran back to back)."""
    r = [x / y for x, y in zip(a.per_rep(), b.per_rep(), strict=True)]
    return statistics.median(r), min(r), max(r)
