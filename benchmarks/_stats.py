"""Summaries of timing samples: median, p90, p99 and min, in microseconds."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypedDict

ns = time.perf_counter_ns


class Summary(TypedDict):
    """One figure: ``n`` samples summarised in microseconds."""

    n: int
    median_us: float
    p90_us: float
    p99_us: float
    min_us: float


def _quantile(ordered: list[int], q: float) -> float:
    # Nearest-rank on the sorted samples (no interpolation: every quoted figure was observed).
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


def summarise(samples_ns: list[int]) -> Summary:
    """Summarise nanosecond samples; ``ValueError`` if there are none."""
    if not samples_ns:
        raise ValueError("no samples to summarise")
    ordered = sorted(samples_ns)
    return Summary(
        n=len(ordered),
        median_us=_quantile(ordered, 0.5) / 1000,
        p90_us=_quantile(ordered, 0.9) / 1000,
        p99_us=_quantile(ordered, 0.99) / 1000,
        min_us=ordered[0] / 1000,
    )


def ratio(figure: Summary | None, floor: Summary | None) -> float | None:
    """``figure``'s median over ``floor``'s median (None when either is missing)."""
    if figure is None or floor is None or floor["median_us"] <= 0:
        return None
    return figure["median_us"] / floor["median_us"]


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect, then keep the cyclic GC off for a timed section (restored afterwards).

    Documented in docs/benchmarks.md: a collection landing inside one sample measures the
    garbage of earlier samples, not the code under test. Reference counting still frees
    everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
