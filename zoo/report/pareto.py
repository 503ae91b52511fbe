"""The accuracy/latency Pareto front: models no other model beats on both at once."""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(latency_ms: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, ordered by increasing latency.

    A point is dominated when another point is at least as fast *and* at least as accurate and
    strictly better on one of the two. Points with a NaN coordinate are never on the front.

    Args:
        latency_ms: lower is better, one value per model.
        accuracy: higher is better (e.g. mask AP), one value per model.
    """
    if len(latency_ms) != len(accuracy):
        raise ValueError(f"{len(latency_ms)} latencies but {len(accuracy)} accuracies")
    points = [(float(t), float(a), i) for i, (t, a) in enumerate(zip(latency_ms, accuracy))
              if not (math.isnan(float(t)) or math.isnan(float(a)))]
    # Sweep from fastest to slowest (ties: most accurate first); a point joins the front when it
    # is more accurate than everything faster than it.
    points.sort(key=lambda p: (p[0], -p[1]))
    front: list[int] = []
    best = -math.inf
    for _, acc, i in points:
        if acc > best:
            front.append(i)
            best = acc
    return front
