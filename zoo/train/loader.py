"""Deterministic, resumable batches: per-epoch orders and per-sample augmentation seeds.

Every random choice in data loading derives from ``(seed, epoch, index)``, not from a worker's
state, so a run resumed mid-epoch sees exactly the batches an uninterrupted run would, with any
number of DataLoader workers or DDP ranks.
"""

from __future__ import annotations

import shutil
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.config import AugmentConfig
from zoo.errors import UserError
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


class SamplerSlot(Sampler):
    """The sampler a kept DataLoader iterates: each epoch puts its :class:`EpochSampler` here."""

    def __init__(self) -> None:
        self.current: Sampler | None = None

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.current or [])

    def __len__(self) -> int:
        return len(self.current) if self.current is not None else 0  # type: ignore[arg-type]


def instance_counts(dataset: Any) -> np.ndarray:
    """Instances per image of an :class:`~zoo.data.dataset.InstanceDataset`, int64 ``[N]``, read
    from the index when the records have one (no segmentation is read)."""
    records = getattr(dataset, "records", [])
    if hasattr(records, "instance_counts"):
        return records.instance_counts()
    return np.asarray([len(r.instances) for r in records], dtype=np.int64)


def shared_memory_need(workers: int, batch_size: int, max_side: int, masks_per_image: float, prefetch: int = 2) -> int:
    """Bytes of ``/dev/shm`` the DataLoader's workers hold at once: each keeps ``prefetch`` batches,
    an image a float32 ``[3, S, S]`` and its uint8 masks ``[N, S, S]`` at the longest side ``S``."""
    per_image = max_side * max_side * (3 * 4 + masks_per_image)
    return int(workers * prefetch * batch_size * per_image)


def check_shared_memory(workers: int, batch_size: int, max_side: int, masks_per_image: float,
                        shm: str = "/dev/shm") -> None:
    """Refuse, before the first step, a loader whose workers would overflow ``shm`` (a bus error
    mid-epoch otherwise), naming the fixes. Nothing is checked without workers or without ``shm``."""
    if workers <= 0:
        return
    try:
        free = shutil.disk_usage(shm).free
    except OSError:
        return
    need = shared_memory_need(workers, batch_size, max_side, masks_per_image)
    if need > free:
        mib, gib = 1 << 20, -(-2 * need // (1 << 30))
        raise UserError(
            f"{shm}: {free / mib:.0f} MiB free, but {workers} DataLoader workers x 2 prefetched batches of "
            f"{batch_size} images at {max_side} px (with about {masks_per_image:.0f} masks each) need about "
            f"{need / mib:.0f} MiB; give the container more (docker run --shm-size={gib}g), or lower data.workers "
            f"or batch_size (data.workers=0 loads in the training process; torch's file_system sharing strategy "
            f"also keeps batches in {shm})")


class EpochLoaders:
    """The training DataLoader, kept from epoch to epoch so its workers persist.

    Workers are forked once per training view (``key``: what the view depends on, e.g. whether
    augmentation is on) rather than once per epoch. That is safe because every random choice
    comes from ``(seed, epoch, index)`` in the items the sampler yields, not from worker state,
    and the dataset is read-only (its index is shared, not copied). Each epoch's
    :class:`EpochSampler` goes into the kept loader's :class:`SamplerSlot`.
    """

    def __init__(self, batch_size: int, workers: int, pin: bool, max_side: int) -> None:
        self.batch_size, self.workers, self.pin, self.max_side = batch_size, workers, pin, max_side
        self.slot = SamplerSlot()
        self._key: Hashable = None
        self._loader: DataLoader | None = None

    def loader(self, key: Hashable, make_view: Callable[[], Dataset], sampler: EpochSampler, seed: int) -> DataLoader:
        """The loader of this epoch's ``sampler`` over the view ``make_view()`` builds for ``key``."""
        if self.workers <= 0:
            return make_loader(make_view(), sampler, self.batch_size, 0, self.pin, seed)
        self.slot.current = sampler
        if self._loader is None or key != self._key:
            self.close()
            view = make_view()
            counts = instance_counts(getattr(view, "dataset", view))
            check_shared_memory(self.workers, self.batch_size, self.max_side,
                                float(np.percentile(counts, 99)) if len(counts) else 0.0)
            self._loader = DataLoader(view, batch_size=self.batch_size, sampler=self.slot, num_workers=self.workers,
                                      collate_fn=collate, pin_memory=self.pin, persistent_workers=True,
                                      generator=torch.Generator().manual_seed(seed))
            self._key = key
        return self._loader

    def close(self) -> None:
        """Stop the kept workers (dropping the last reference to the loader shuts them down)."""
        self._loader, self._key = None, None


def move_batch(images: list[torch.Tensor], targets: list[dict[str, Any]], device: torch.device
               ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    nb = device.type == "cuda"
    images = [im.to(device, non_blocking=nb) for im in images]
    moved = []
    for t in targets:
        moved.append({k: (v.to(device, non_blocking=nb) if isinstance(v, torch.Tensor) else v) for k, v in t.items()})
    return images, moved
