"""``zoo data check`` finds each defect planted in a copy of a synthetic dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from zoo.data.check import check_dataset
from zoo.data.rle import mask_to_coco_rle

# defect -> how it is planted (a train.csv row change); each is planted exactly once.
PLANTED_ROWS = {
    "run out of bounds": ("EncodedPixels", f"{128 * 128 - 5} 10"),
    "unsorted runs": ("EncodedPixels", "500 3 100 2"),
    "overlapping runs": ("EncodedPixels", "100 10 105 3"),
    "odd number of values": ("EncodedPixels", "100 10 200"),
    "malformed EncodedPixels": ("EncodedPixels", "100 x"),
    "unknown category": ("ClassId", "99"),
    "unknown attribute": ("ClassId", "6_400"),
    "empty mask": ("EncodedPixels", ""),
}


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=200)


def plant_defects(synth_dir: Path, folder: Path) -> None:
    shutil.copytree(synth_dir, folder)
    frame = pd.read_csv(folder / "train.csv", dtype=str, keep_default_na=False)
    names = list(dict.fromkeys(frame.ImageId))
    # Each row defect goes to its own image's first row, away from the image-level defects below.
    for (column, value), name in zip(PLANTED_ROWS.values(), names[4:]):
        frame.loc[frame.index[frame.ImageId == name][0], column] = value
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)  # duplicate row
    escape = frame.iloc[[1]].copy()
    escape["ImageId"] = "../outside.jpg"
    frame = pd.concat([frame, escape], ignore_index=True)
    frame.to_csv(folder / "train.csv", index=False)
    (folder / "train" / names[1]).unlink()  # missing image file
    Image.new("RGB", (100, 128)).save(folder / "train" / names[2])  # size mismatch (128x100 vs 128x128)
    # Swapped Height/Width: the JPEG is 96x128 (H x W), the CSV says 128x96.
    Image.new("RGB", (128, 96)).save(folder / "train" / names[3])
    frame.loc[frame.ImageId == names[3], ["Height", "Width"]] = ["128", "96"]
    frame.to_csv(folder / "train.csv", index=False)


def test_clean_synthetic_dataset_has_no_errors(synth_dir: Path) -> None:
    assert check_dataset(synth_dir, console=quiet()) == 0


def test_check_finds_each_planted_defect(synth_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    plant_defects(synth_dir, folder)
    console = Console(record=True, width=250, file=open("/dev/null", "w"))
    errors = check_dataset(folder, console=console)
    text = console.export_text()
    expected = set(PLANTED_ROWS) | {"duplicate row", "image name escapes the image folder", "missing image file",
                                    "size mismatch"}
    for kind in expected:
        assert f"{kind} " in text, kind
    assert "Height/Width swapped" in text and "warning" in text
    # What the readers work around (runs read as their union) or leave out and count (duplicates,
    # empty masks) is a warning or a skip, not an error: check's levels are the readers' own.
    lenient = {"unsorted runs", "overlapping runs", "empty mask", "duplicate row"}
    # One planted defect each (runs out of bounds: the row planted, no false alarms elsewhere).
    assert errors == len(expected - lenient)
    assert "2 skipped by the readers, 3 warning(s)" in text
    assert "train.csv row" in text and "../outside.jpg" in text


def test_check_finds_coco_defects(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "images" / "a.jpg")
    mask = np.zeros((24, 32), bool)
    mask[5:10, 5:20] = True
    good = {"image_id": 1, "category_id": 1, "segmentation": mask_to_coco_rle(mask)}
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 24, "width": 32},
                   {"id": 2, "file_name": "gone.jpg", "height": 24, "width": 32},
                   {"id": 3, "file_name": "../../etc/passwd", "height": 24, "width": 32}],
        "categories": [{"id": 1, "name": "shirt"}],
        "annotations": [
            {**good, "id": 1},
            {**good, "id": 1, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},  # duplicate id
            {**good, "id": 3, "category_id": 8, "segmentation": [[1, 1, 9, 1, 9, 9]]},  # unknown category
            {**good, "id": 4, "segmentation": [[1, 1, 5]]},  # bad polygon
            {**good, "id": 5, "image_id": 42},  # unknown image id
            {**good, "id": 6, "segmentation": mask_to_coco_rle(np.zeros((10, 10), bool))},  # size mismatch
            {**good, "id": 7},  # duplicate of annotation 1
            {**good, "id": 8, "segmentation": mask_to_coco_rle(np.zeros((24, 32), bool))},  # empty mask
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    console = Console(record=True, width=250, file=open("/dev/null", "w"))
    errors = check_dataset(path, console=console)
    text = console.export_text()
    for kind in ("duplicate annotation id", "unknown category", "bad polygon", "unknown image_id",
                 "size mismatch", "empty mask", "duplicate row", "missing image file",
                 "image name escapes the image folder"):
        assert kind in text, kind
    assert errors == 7  # the duplicate and the empty mask are left out by the readers and counted
    assert "7 error(s), 2 skipped by the readers" in text


@pytest.mark.parametrize("bad", ["nowhere", "folder"])
def test_check_of_a_non_dataset_is_a_user_error(tmp_path: Path, bad: str) -> None:
    from zoo.errors import DataError

    target = tmp_path / "nowhere" if bad == "nowhere" else tmp_path
    with pytest.raises(DataError):
        check_dataset(target, console=quiet())
