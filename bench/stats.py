"""Small statistics shared by the benchmarks: min / median / max of repeats, and latency percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def spread(samples: Sequence[float]) -> dict[str, float]:
    """min / median / max of the repeats of one figure (what every table row shows)."""
    if not samples:
        return {"min": math.nan, "median": math.nan, "max": math.nan, "n": 0}
    return {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "n": len(samples),
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
