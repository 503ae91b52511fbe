"""Train/validation(/test) splits, deterministic by seed.

Validation images choose the checkpoint and stop training early; test images are only scored,
so a comparison's numbers come from images that neither training nor selection saw.

``stratified`` is iterative stratification for multi-label data (Sechidis et al., 2011): labels
are served rarest first, and each image goes to the side that still wants that label most, so
every category found in at least two images lands in validation in proportion.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

from zoo.errors import UserError


def _val_size(n: int, val_fraction: float) -> int:
    if n < 2 or val_fraction <= 0:
        return 0
    return min(n - 1, max(1, round(n * val_fraction)))


def _choose_side(want_train: int, want_val: int, space: list[int], rng: np.random.Generator) -> int:
    """0 (train) or 1 (val): where the label is wanted most, then where room is left."""
    if want_train != want_val:
        side = int(want_val > want_train)
    elif space[0] != space[1]:
        side = int(space[1] > space[0])
    else:
        side = int(rng.integers(2))
    return side if space[side] > 0 else 1 - side


def _stratified(label_sets: list[set[int]], n_val: int, rng: np.random.Generator) -> set[int]:
    n = len(label_sets)
    fraction = n_val / n
    counts: dict[int, int] = {}
    for labels in label_sets:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    # Wanted images per label on each side; a label seen twice or more gets at least one in val.
    want_val = {lab: (max(1, round(c * fraction)) if c >= 2 else 0) for lab, c in counts.items()}
    want_train = {lab: c - want_val[lab] for lab, c in counts.items()}
    space = [n - n_val, n_val]  # images still wanted on each side (train, val)
    side_of = np.full(n, -1)
    order = rng.permutation(n)  # tie-breaks are random but seeded
    members: dict[int, list[int]] = {lab: [] for lab in counts}
    for i in order.tolist():
        for lab in label_sets[i]:
            members[lab].append(i)
    unassigned = dict(counts)
    while any(unassigned.values()):
        # The label with the fewest unplaced images decides first: rare labels are the fragile ones.
        label = min((lab for lab, c in unassigned.items() if c), key=lambda lab: (unassigned[lab], lab))
        for i in members[label]:
            if side_of[i] >= 0:
                continue
            side = _choose_side(want_train[label], want_val[label], space, rng)
            side_of[i] = side
            space[side] -= 1
            for lab in label_sets[i]:
                (want_val if side else want_train)[lab] -= 1
                unassigned[lab] -= 1
    for i in order:  # images without labels fill what is left
        if side_of[i] < 0:
            side = 1 if space[1] > 0 else 0
            side_of[i] = side
            space[side] -= 1
    return {int(i) for i in np.flatnonzero(side_of == 1)}


def split_indices(label_sets: list[set[int]], val_fraction: float = 0.2, seed: int = 0,
                  method: Literal["stratified", "random"] = "stratified") -> tuple[list[int], list[int]]:
    """Split image indices ``0..n-1`` into ``(train, val)`` sorted lists.

    Args:
        label_sets: the labels present in each image (``InstanceDataset.label_sets()``).
        val_fraction: share of images in validation (rounded; at least one when n >= 2).
        seed: the same seed and inputs always give the same split.
        method: ``"stratified"`` (multi-label iterative stratification) or ``"random"``.
    """
    if not 0 <= val_fraction < 1 or math.isnan(val_fraction):
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if method not in ("stratified", "random"):
        raise UserError(f"split method {method!r} is not one of 'stratified', 'random'")
    n = len(label_sets)
    n_val = _val_size(n, val_fraction)
    rng = np.random.default_rng(seed)
    if n_val == 0:
        return list(range(n)), []
    if method == "random":
        val = {int(i) for i in rng.permutation(n)[:n_val]}
    else:
        val = _stratified(label_sets, n_val, rng)
    return [i for i in range(n) if i not in val], sorted(val)


def split_three(label_sets: Sequence[set[int]], val_fraction: float = 0.2, test_fraction: float = 0.0,
                seed: int = 0, method: Literal["stratified", "random"] = "stratified") -> dict[str, list[int]]:
    """Split image indices ``0..n-1`` into sorted ``train``, ``val`` and ``test`` lists.

    Both fractions are shares of all ``n`` images. The test images are drawn first (stratified
    over every image), then validation from the rest, so a category found in enough images lands
    on all three sides. ``test_fraction=0`` gives exactly :func:`split_indices`' two-way split
    (and an empty ``test``), so runs made before test splits existed split as they did.
    """
    if not 0 <= test_fraction < 1 or math.isnan(test_fraction) or val_fraction + test_fraction >= 1:
        raise UserError(f"test_fraction must be in [0, 1) with val_fraction + test_fraction < 1, "
                        f"got {test_fraction} and {val_fraction}")
    sets = list(label_sets)
    rest, test = split_indices(sets, test_fraction, seed, method) if test_fraction > 0 else (list(range(len(sets))), [])
    share = val_fraction / (1 - test_fraction) if rest and test_fraction > 0 else val_fraction
    train_pos, val_pos = split_indices([sets[i] for i in rest], min(share, 0.99), seed + 1 if test else seed, method)
    return {"train": [rest[i] for i in train_pos], "val": [rest[i] for i in val_pos], "test": test}
