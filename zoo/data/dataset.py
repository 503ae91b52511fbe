"""The torch Dataset every model trains on, and :func:`open_dataset` that builds it from a config.

``dataset[i]`` is ``(image, target)``: ``tv_tensors.Image`` uint8 ``[3, H, W]`` and a target dict
(see :mod:`zoo.types`) whose boxes and masks are ``tv_tensors``, so ``torchvision.transforms.v2``
moves image, boxes and masks together.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from zoo.config import DataConfig
from zoo.data.decode import ResizeSpec, decode_masks, instance_arrays, load_image
from zoo.data.index import record_category_ids, record_names, select_records
from zoo.data.sources import Source, read_source
from zoo.data.validate import describe_skips
from zoo.errors import DataError
from zoo.types import Category

Target = dict[str, Any]


class InstanceDataset(Dataset):
    """Images and instance targets read at the training size.

    Args:
        source: what :func:`zoo.data.sources.read_source` returned.
        resize: how images are sized (see :class:`ResizeSpec`).
        indices: records to use (default: all), e.g. the first N for ``limit``.
        transform: optional ``(image, target) -> (image, target)`` applied last.

    Attributes:
        categories: labels ``1..C`` with their source ids and names.
        image_ids: the source's image names (``ImageId`` / ``file_name``), one per index.
        swapped: indices of images whose annotation Height/Width were found transposed.
    """

    def __init__(self, source: Source, resize: ResizeSpec, indices: list[int] | None = None,
                 transform: Callable[[Any, Target], tuple[Any, Target]] | None = None) -> None:
        self.source = source
        self.resize = resize
        self.records = select_records(source.records, indices)  # an index stays an index: nothing is copied
        self.transform = transform
        self.categories: list[Category] = list(source.categories)
        self.image_ids: list[str] = record_names(self.records)
        self._label_of = {c.id: c.label for c in self.categories}
        self.swapped: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        """Foreground categories ``C`` (labels ``1..C``)."""
        return len(self.categories)

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        return {c.label: c.id for c in self.categories}

    def label_sets(self) -> list[set[int]]:
        """The labels present in each image, from the annotation file only (no mask is decoded).

        Unknown category ids are left out here; reading that image raises the error.
        """
        return [{self._label_of[c] for c in cats if c in self._label_of} for cats in record_category_ids(self.records)]

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, Target]:
        """Image uint8 ``[3, H, W]`` and its target: boxes float32 ``[N, 4]`` XYXY, labels int64 ``[N]``
        in ``1..C``, masks uint8 ``[N, H, W]``, attributes (N lists), image_id ``index``; N may be 0."""
        record = self.records[index]
        pixels, source_hw = load_image(record.path, self.resize)
        out_h, out_w = pixels.shape[:2]
        if (record.height, record.width) == source_hw[::-1] and source_hw[0] != source_hw[1]:
            self.swapped.add(index)
        arrays = instance_arrays(record, decode_masks(record, out_h, out_w, source_hw,
                                                      rle_base=self.source.rle_base), self._label_of)
        canvas_h, canvas_w = self.resize.canvas_size(*source_hw)
        image, masks = pixels, arrays["masks"]
        if (canvas_h, canvas_w) != (out_h, out_w):  # square mode: zero-pad bottom/right
            image = np.zeros((canvas_h, canvas_w, 3), dtype=np.uint8)
            image[:out_h, :out_w] = pixels
            masks = np.zeros((masks.shape[0], canvas_h, canvas_w), dtype=np.uint8)
            masks[:, :out_h, :out_w] = arrays["masks"]
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(arrays["boxes"]), format="XYXY",
                                              canvas_size=(canvas_h, canvas_w)),
            "labels": torch.from_numpy(arrays["labels"]),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "attributes": arrays["attributes"],
            "image_id": index,
        }
        # numpy does the HWC->CHW copy: torch's would wake its thread pool for a tiny array.
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
        if self.transform is not None:
            return self.transform(img, target)
        return img, target


def zoo_home() -> Path:
    """``$ZOO_HOME`` (default ``~/.cache/zoo``): where the embedded dataset is generated."""
    return Path(os.environ.get("ZOO_HOME", Path.home() / ".cache" / "zoo")).expanduser()


def synthetic_dataset_path(n: int, size: int, seed: int = 0) -> Path:
    """The embedded synthetic dataset's folder, generated on first use.

    Written to a temporary folder then renamed, so two processes starting at once never see (or
    leave) a half-written dataset: the loser of the rename race discards its copy.
    """
    from zoo.data.synth import write_synthetic

    # "-rle1": written with 1-based EncodedPixels starts; "-attr": every garment keeps its attributes
    # (a folder from before either is not reused).
    target = zoo_home() / f"synth-n{n}-s{size}-seed{seed}-rle1-attr"
    if (target / "train.csv").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_synthetic(tmp, n=n, size=size, seed=seed)
        os.rename(tmp, target)
    except OSError:
        if not (target / "train.csv").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def open_dataset(cfg: DataConfig) -> InstanceDataset:
    """The dataset ``cfg`` describes, read at ``cfg.max_size`` (see :class:`ResizeSpec`).

    ``cfg.cache`` (a ``zoo data prepare`` folder) wins over ``cfg.source``; ``source=None`` is the
    embedded synthetic dataset (``$ZOO_HOME/synth-n{n}-s{size}-seed0-rle1-attr``). ``cfg.limit`` keeps the
    first N images. Rows the reader leaves out (duplicates, crowd regions) are counted on stderr.
    """
    if cfg.resize not in ("max_side", "square"):
        raise DataError(f"data.resize: {cfg.resize!r} is not one of 'max_side', 'square'")
    if cfg.cache:
        source = read_source(cfg.cache)
        if source.kind != "cache":
            raise DataError(f"{cfg.cache}: not a `zoo data prepare` cache (no zoo_cache.json)")
    elif cfg.source is None:
        source = read_source(synthetic_dataset_path(cfg.synth_n, cfg.synth_size))
    else:
        source = read_source(cfg.source, images=cfg.images, rle_base=cfg.rle_base)
    note = describe_skips(source.skipped)
    if note:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"{source.path}: {note}")
    indices = list(range(min(cfg.limit, len(source.records)))) if cfg.limit is not None else None
    return InstanceDataset(source, ResizeSpec(cfg.max_size, cfg.resize, cfg.min_size), indices)
