"""InstanceDataset: reading iMaterialist folders and the embedded dataset at training size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from zoo.config import DataConfig
from zoo.data import dataset as dataset_module
from zoo.boxes import mask_boxes
from zoo.data.decode import DataWarning, ResizeSpec
from zoo.data.dataset import open_dataset
from zoo.data.rle import TargetGrid, decode_runs_at_size, encode_kaggle_rle, parse_kaggle_rle, sample_indices
from zoo.errors import DataError


def blob(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """An elliptic mask bool ``[h, w]`` inscribed in ``box = (x0, y0, x1, y1)``."""
    yy, xx = np.mgrid[:h, :w]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1


def test_synthetic_items_follow_the_target_contract(synth_dir: Path) -> None:
    ds = open_dataset(DataConfig(source=str(synth_dir), max_size=128))
    assert len(ds) == 12 and ds.num_classes == 46
    assert [c.label for c in ds.categories] == list(range(1, 47))
    assert ds.categories[6].name == "pants" and ds.categories[6].id == 6
    seen_attributes = False
    for i in range(len(ds)):
        image, target = ds[i]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 128, 128)
        n = target["labels"].numel()
        assert n > 0 and target["labels"].dtype == torch.int64
        assert int(target["labels"].min()) >= 1 and int(target["labels"].max()) <= 46
        assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (n, 128, 128)
        assert target["masks"].dtype == torch.uint8
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
        assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
        assert torch.equal(target["boxes"], torch.from_numpy(mask_boxes(target["masks"])))
        assert len(target["attributes"]) == n and target["image_id"] == i
        seen_attributes |= any(target["attributes"])
    assert seen_attributes


def test_masks_read_at_a_smaller_size_match_nearest_resize(synth_dir: Path) -> None:
    full = open_dataset(DataConfig(source=str(synth_dir), max_size=128))
    small = open_dataset(DataConfig(source=str(synth_dir), max_size=50))
    image, target = small[3]
    assert image.shape == (3, 50, 50)
    rows = sample_indices(128, 50)
    expected = full[3][1]["masks"][:, rows][:, :, rows]
    keep = expected.flatten(1).bool().any(1)
    assert torch.equal(target["masks"], expected[keep])


def test_label_sets_come_from_the_csv_without_decoding(synth_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = open_dataset(DataConfig(source=str(synth_dir), max_size=128, limit=5))
    expected = [set(ds[i][1]["labels"].tolist()) for i in range(len(ds))]

    def refuse(*args, **kwargs):
        raise AssertionError("label_sets decoded a mask or an image")

    monkeypatch.setattr(dataset_module, "decode_masks", refuse)
    monkeypatch.setattr(dataset_module, "load_image", refuse)
    assert ds.label_sets() == expected


def test_hand_built_folder_non_square_empty_and_swapped(tmp_path: Path, imat_writer) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    a, b = blob(60, 90, (10, 5, 40, 50)), blob(60, 90, (50, 20, 85, 58))
    tall = rng.integers(0, 255, (90, 40, 3), dtype=np.uint8)
    c = blob(90, 40, (5, 10, 30, 80))
    folder = imat_writer(tmp_path / "imat", [
        {"name": "a.jpg", "pixels": pixels, "masks": [(a, "6_28_77"), (b, "23")]},
        {"name": "empty.jpg", "pixels": pixels, "masks": []},
        # CSV says 40x90 (H x W) but the JPEG is 90x40: the known iMaterialist defect.
        {"name": "swapped.jpg", "pixels": tall, "masks": [(c.T, "10")], "csv_hw": (40, 90)},
    ])
    ds = open_dataset(DataConfig(source=str(folder), max_size=45))
    image, target = ds[0]
    assert image.shape == (3, 30, 45)
    assert target["labels"].tolist() == [7, 24] and target["attributes"] == [[28, 77], []]
    np.testing.assert_array_equal(target["masks"][0].numpy(), a[sample_indices(60, 30)][:, sample_indices(90, 45)])
    image, target = ds[1]
    assert target["masks"].shape == (0, 30, 45) and target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,) and target["attributes"] == []
    with pytest.warns(DataWarning, match="swapped.jpg: .* swapped"):
        image, target = ds[2]
    assert image.shape == (3, 45, 20) and ds.swapped == {2}
    np.testing.assert_array_equal(target["masks"][0].numpy(), c[sample_indices(90, 45)][:, sample_indices(40, 20)])
    assert ds.label_sets() == [{7, 24}, set(), {11}]


def test_square_mode_scales_and_pads_like_matterport(tmp_path: Path, imat_writer) -> None:
    pixels = np.full((60, 90, 3), 200, dtype=np.uint8)
    mask = blob(60, 90, (0, 0, 90, 60))
    folder = imat_writer(tmp_path / "imat", [{"name": "a.jpg", "pixels": pixels, "masks": [(mask, "1")]}])
    # Short side 60 -> at least 80 (x1.33), long side 90 -> 120 > 100, so x1.11: 67x100, padded to 100x100.
    ds = open_dataset(DataConfig(source=str(folder), resize="square", min_size=80, max_size=100))
    image, target = ds[0]
    assert image.shape == (3, 100, 100) and target["masks"].shape == (1, 100, 100)
    assert int(image[:, 67:].max()) == 0 and int(image[:, :67].min()) > 150
    assert target["masks"][0, 67:].sum() == 0 and target["boxes"][0].tolist() == [0.0, 0.0, 100.0, 67.0]
    assert ResizeSpec(100, "square", 0).scaled_size(30, 40) == (30, 40)  # no min_size: never upscaled
    assert ResizeSpec(64, "max_side").scaled_size(30, 40) == (30, 40)  # max_side never upscales


def test_large_jpeg_is_read_near_target_size(tmp_path: Path, imat_writer) -> None:
    yy, xx = np.mgrid[:1500, :2000]
    pixels = np.stack([xx * 255 // 2000, yy * 255 // 1500, np.full_like(xx, 90)], -1).astype(np.uint8)
    mask = blob(1500, 2000, (300, 200, 1700, 1300))
    folder = imat_writer(tmp_path / "big", [{"name": "big.jpg", "pixels": pixels, "masks": [(mask, "10")]}])
    image, target = open_dataset(DataConfig(source=str(folder), max_size=200))[0]
    assert image.shape == (3, 150, 200)
    reference = pixels[sample_indices(1500, 150)][:, sample_indices(2000, 200)]
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - reference).mean() < 4
    starts, lengths = parse_kaggle_rle(encode_kaggle_rle(mask))
    np.testing.assert_array_equal(target["masks"][0].numpy(),
                                  decode_runs_at_size(starts, lengths, TargetGrid(1500, 2000, 150, 200)))


def test_transforms_v2_move_image_boxes_and_masks_together(synth_dir: Path) -> None:
    ds = open_dataset(DataConfig(source=str(synth_dir), max_size=128))
    image, target = ds[0]
    flipped_image, flipped = v2.RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped["masks"], target["masks"].flip(-1))
    assert torch.equal(flipped["boxes"], torch.from_numpy(mask_boxes(flipped["masks"])))


def test_embedded_dataset_is_generated_once_under_zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    cfg = DataConfig(source=None, synth_n=3, synth_size=64, max_size=64, limit=2)
    ds = open_dataset(cfg)
    folder = tmp_path / "home" / "synth-n3-s64-seed0-rle1-attr"
    assert len(ds) == 2 and ds.source.path == folder and (folder / "train.csv").is_file()
    stamp = os.stat(folder / "train.csv").st_mtime_ns
    assert len(open_dataset(cfg)) == 2 and os.stat(folder / "train.csv").st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "home").iterdir()] == [folder.name]  # no temp folder left


def test_bad_inputs_are_one_line_errors(tmp_path: Path, imat_writer, synth_dir: Path) -> None:
    pixels = np.zeros((20, 20, 3), np.uint8)
    folder = imat_writer(tmp_path / "imat", [{"name": "a.jpg", "pixels": pixels, "masks": [(blob(20, 20, (2, 2, 9, 9)), "1")]}])
    (folder / "train" / "a.jpg").unlink()
    with pytest.raises(DataError, match="a.jpg: image file not found"):
        open_dataset(DataConfig(source=str(folder)))[0]
    csv = folder / "train.csv"
    csv.write_text(csv.read_text().replace("a.jpg", "../a.jpg"))
    with pytest.raises(DataError, match=r"train.csv row 2: image name '../a.jpg' escapes"):
        open_dataset(DataConfig(source=str(folder)))
    with pytest.raises(DataError, match="no such file or folder"):
        open_dataset(DataConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="not a dataset"):
        open_dataset(DataConfig(source=str(tmp_path)))
