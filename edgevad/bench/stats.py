"""Latency summaries: percentiles by linear interpolation between order statistics.

The same definition as ``numpy.percentile``'s default (``method="linear"``, Hyndman & Fan type 7):
for sorted samples ``x[0..n-1]`` the ``q``-th percentile sits at rank ``(n - 1) * q / 100``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["PERCENTILES", "LatencyStats", "percentile"]

PERCENTILES = (50, 90, 95, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples`` (linear interpolation, see module doc)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(float(x) for x in samples)
    rank = (len(xs) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencyStats:
    """One stage's timings in milliseconds (``count`` samples, ``total_s`` their sum)."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    total_s: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        if not samples:
            raise ValueError("no timing samples")
        ms = [float(s) * 1e3 for s in samples]
        p = {q: percentile(ms, q) for q in PERCENTILES}
        return cls(count=len(ms), mean_ms=sum(ms) / len(ms), p50_ms=p[50], p90_ms=p[90],
                   p95_ms=p[95], p99_ms=p[99], max_ms=max(ms), min_ms=min(ms),
                   total_s=sum(samples))

    def to_dict(self) -> dict:
        return asdict(self)
