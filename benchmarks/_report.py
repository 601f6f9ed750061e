"""Timing and reporting helpers shared by the benchmark scripts.

The machine is shared and noisy, so a benchmark times Tether beside a raw baseline in the
same run and reports the ratio of the two; absolute times are context only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np


def measure(fn: Callable[[], object], repeat: int, warmup: int) -> list[float]:
    """Seconds taken by each of `repeat` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e9)
    return samples


def summarize(samples: Sequence[float]) -> tuple[float, float]:
    """The 50th and 99th percentiles of `samples`."""
    p50, p99 = np.percentile(np.asarray(samples, dtype=np.float64), [50, 99])
    return float(p50), float(p99)


def ratio(a: float, b: float) -> float:
    """How many times `a` is `b`; inf when `b` is zero."""
    return a / b if b > 0 else math.inf


def duration(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits readable."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    """Print a plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join([first, *rest])

    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
