"""Train/validation splits: sizes, determinism, every category in validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zoo.config import DataConfig
from zoo.data.dataset import open_dataset
from zoo.data.split import split_indices
from zoo.errors import UserError


def skewed_label_sets(n: int = 200, seed: int = 3) -> list[set[int]]:
    """Multi-label sets with common, rare and very rare labels, and some empty images."""
    rng = np.random.default_rng(seed)
    frequency = {1: 0.8, 2: 0.5, 3: 0.2, 4: 0.06, 5: 0.03, 6: 0.015}
    sets = [{lab for lab, p in frequency.items() if rng.random() < p} for _ in range(n)]
    sets[0] |= {7}
    sets[1] |= {7}  # a label in exactly two images
    return sets


def test_stratified_split_keeps_every_category_in_validation_in_proportion() -> None:
    sets = skewed_label_sets()
    train, val = split_indices(sets, val_fraction=0.2, seed=0)
    assert sorted(train + val) == list(range(len(sets))) and len(val) == 40
    total = Counter(lab for s in sets for lab in s)
    in_val = Counter(lab for i in val for lab in sets[i])
    in_train = Counter(lab for i in train for lab in sets[i])
    assert min(total.values()) == 1  # a label in a single image cannot be on both sides
    for label, count in total.items():
        if count >= 2:
            assert in_val[label] >= 1 and in_train[label] >= 1, label
        assert abs(in_val[label] - 0.2 * count) <= max(1.0, 0.05 * count), (label, in_val[label], count)


def test_random_split_can_lose_rare_categories_that_stratified_keeps() -> None:
    sets = skewed_label_sets()
    missing_random = sum(7 not in {lab for i in split_indices(sets, 0.2, seed, "random")[1] for lab in sets[i]}
                         for seed in range(20))
    missing_strat = sum(7 not in {lab for i in split_indices(sets, 0.2, seed)[1] for lab in sets[i]}
                        for seed in range(20))
    assert missing_random > 0 and missing_strat == 0


@pytest.mark.parametrize("method", ["stratified", "random"])
def test_split_is_deterministic_by_seed(method: str) -> None:
    sets = skewed_label_sets()
    assert split_indices(sets, 0.2, 5, method) == split_indices(sets, 0.2, 5, method)
    assert split_indices(sets, 0.2, 5, method) != split_indices(sets, 0.2, 6, method)


def test_split_edge_cases() -> None:
    assert split_indices([], 0.2) == ([], [])
    assert split_indices([{1}], 0.2) == ([0], [])
    assert split_indices([{1}, {1}], 0.2) == ([0], [1]) or split_indices([{1}, {1}], 0.2) == ([1], [0])
    assert split_indices([set()] * 10, 0.3, method="stratified")[1].__len__() == 3
    with pytest.raises(UserError, match="val_fraction"):
        split_indices([{1}], 1.5)
    with pytest.raises(UserError, match="'stratified', 'random'"):
        split_indices([{1}], 0.2, method="kfold")


def test_stratified_split_of_the_synthetic_dataset(synth_dir: Path) -> None:
    sets = open_dataset(DataConfig(source=str(synth_dir))).label_sets()
    train, val = split_indices(sets, 0.25, seed=0)
    counts = Counter(lab for s in sets for lab in s)
    in_val = {lab for i in val for lab in sets[i]}
    assert len(val) == 3 and {lab for lab, c in counts.items() if c >= 4} <= in_val
