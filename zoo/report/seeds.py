"""Training-seed variance in the verdict: a difference in mask AP is called real only when it
holds against both the bootstrap over test images and the spread over training seeds.

The seed rule: with ``K_a`` and ``K_b`` seeds, the difference of the seed means must exceed
twice its standard error, ``2 * sqrt(std_a**2 / K_a + std_b**2 / K_b)`` (sample std over the
seeds, ``seeds.json``). With one seed per model the spread is unknown and the rule cannot hold.
"""

from __future__ import annotations

import math
from typing import Any

SEED_Z = 2.0  # standard errors the difference of seed means must exceed


def seed_difference(seeds: dict[str, Any], a: str, b: str, key: str = "segm_AP") -> tuple[float, float] | None:
    """(mean_a - mean_b, its standard error) over the seeds of ``seeds.json``; None when either
    model has fewer than two seeds or is not in it."""
    models = seeds.get("models", {})
    if a not in models or b not in models:
        return None
    ma, mb = models[a], models[b]
    ka, kb = len(ma[key]), len(mb[key])
    if ka < 2 or kb < 2:
        return None
    se = math.sqrt(ma["std"][key] ** 2 / ka + mb["std"][key] ** 2 / kb)
    return ma["mean"][key] - mb["mean"][key], se


def holds_against_seeds(seeds: dict[str, Any] | None, a: str, b: str, key: str = "segm_AP") -> bool | None:
    """Whether ``a`` beats ``b`` beyond training-seed variance; None when it was not measured."""
    if seeds is None:
        return None
    gap = seed_difference(seeds, a, b, key)
    if gap is None:
        return None
    diff, se = gap
    return diff > SEED_Z * se


def seed_means_line(seeds: dict[str, Any], labels: dict[str, str], key: str = "segm_AP") -> str:
    """One verdict line: each model's mask AP mean ± std over its seeds."""
    parts = []
    for name, m in seeds.get("models", {}).items():
        std = m["std"][key]
        spread = "" if std is None else f" ± {std:.3f}"
        parts.append(f"{labels.get(name, name)} {m['mean'][key]:.3f}{spread}")
    k = len(seeds.get("seeds", []))
    return f"Mask AP over {k} training seeds (mean ± sample std): " + ", ".join(parts) + "."
