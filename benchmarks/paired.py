"""Paired comparisons for the load benchmarks' few-percent goals.

On a shared 2-core machine the time of one load scatters by ±30 % from run to run, much more
than the 3–5 % a goal allows, and slowly (other work comes and goes). The load benchmarks
therefore run their variants interleaved, round by round, and compare each variant with the
baseline *of the same round*: the median of the per-round ratios, with a 95 % bootstrap
interval, is what a goal is judged on. A collection by Python's garbage collector inside a
timed load is a pause of the process, not a cost of a variant: each timed load starts after a
collection, with the collector off (as ``timeit`` does).
"""

from __future__ import annotations

import gc
import random
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def without_gc(fn: Callable[[], T]) -> T:
    """``fn()`` after a full collection, with the collector off while it runs."""
    gc.collect()
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    """The variants in another order each round (no variant always runs first)."""
    k = round_no % len(items)
    return list(items[k:]) + list(items[:k])


def ratio_interval(
    base: Sequence[float], times: Sequence[float], resamples: int = 2000, seed: int = 1
) -> tuple[float, float, float]:
    """Median of the per-round ratios ``times[i] / base[i]`` and its 95 % bootstrap interval."""
    ratios = [t / b for t, b in zip(times, base, strict=True)]
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    lo = medians[int(0.025 * resamples)]
    hi = medians[int(0.975 * resamples) - 1]
    return statistics.median(ratios), lo, hi


def report_line(name: str, base: Sequence[float], times: Sequence[float], width: int = 34) -> str:
    """``name  best / median ms  xbest / xmedian  paired xM [lo, hi]``."""
    best, median = min(times), statistics.median(times)
    m, lo, hi = ratio_interval(base, times)
    return (
        f"  {name:<{width}} {best * 1000:8.2f} / {median * 1000:8.2f} ms"
        f"   x{best / min(base):.3f} / x{median / statistics.median(base):.3f}"
        f"   paired x{m:.3f} [{lo:.3f}, {hi:.3f}]"
    )
