"""Percentiles of timings, in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.locomo.metrics import percentile


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """count, p50, p95, p99 and max of ``seconds`` (NaN entries, failed requests, left out), in ms."""
    values = [s * 1000 for s in seconds if not math.isnan(s)]
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3) if values else math.nan,
    }
