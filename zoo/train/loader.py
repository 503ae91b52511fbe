"""Deterministic, resumable batches: per-epoch orders and per-sample augmentation seeds.

Every random choice in data loading derives from ``(seed, epoch, index)``, not from a worker's
state, so a run resumed mid-epoch sees exactly the batches an uninterrupted run would, with any
number of DataLoader workers or DDP ranks.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.config import AugmentConfig
from zoo.transforms import augment_sample, build_augmentation, to_model_input


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(n)`` fixed by ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class TrainView(Dataset):
    """Training samples: float image in ``[0, 1]`` and target, augmented for a share of samples.

    ``item = (dataset_index, epoch)``; the augmentation RNG is seeded from it.
    """

    def __init__(self, dataset: Dataset, augment: AugmentConfig | None, seed: int) -> None:
        self.dataset = dataset
        self.augment = augment
        self.pipeline = build_augmentation(augment) if augment is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        index, epoch = item
        image, target = self.dataset[index]
        image = to_model_input(image)
        if self.pipeline is None or self.augment is None:
            return image, target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 7919 + epoch) * 1_000_003 + index)
            if float(torch.rand(())) < self.augment.fraction:
                image, target = augment_sample(image, target, self.pipeline)
        return image, target


class EpochSampler(Sampler):
    """Yields ``(index, epoch)`` for this rank's share of the epoch, skipping consumed samples."""

    def __init__(self, indices: Sequence[int], seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, skip: int = 0, limit: int | None = None) -> None:
        order = [indices[i] for i in epoch_order(len(indices), seed, epoch)]
        # Pad so every rank gets the same count (as DistributedSampler does).
        per_rank = -(-len(order) // world_size)
        order = (order * (world_size + 1))[: per_rank * world_size]
        mine = order[rank::world_size]
        if limit is not None:
            mine = (mine * (limit // max(1, len(mine)) + 1))[:limit]  # cycle when steps exceed one pass
        self.items = [(i, epoch) for i in mine[skip:]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Lists, not stacked tensors: images in a batch may differ in size."""
    return [b[0] for b in batch], [b[1] for b in batch]


def make_loader(view: Dataset, sampler: Sampler, batch_size: int, workers: int, pin: bool, seed: int) -> DataLoader:
    # An explicit generator: otherwise creating the loader draws from the global torch RNG,
    # and a run resumed mid-epoch would draw at a different point than an uninterrupted one.
    return DataLoader(view, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=pin, persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed))


def move_batch(images: list[torch.Tensor], targets: list[dict[str, Any]], device: torch.device
               ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    nb = device.type == "cuda"
    images = [im.to(device, non_blocking=nb) for im in images]
    moved = []
    for t in targets:
        moved.append({k: (v.to(device, non_blocking=nb) if isinstance(v, torch.Tensor) else v) for k, v in t.items()})
    return images, moved
