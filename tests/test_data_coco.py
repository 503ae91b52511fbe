"""COCO instance files: reading every segmentation form, export, and the prepared cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_util

from zoo.config import DataConfig
from zoo.data.dataset import open_dataset
from zoo.data.export import export_coco
from zoo.data.prepare import prepare_cache
from zoo.data.rle import mask_to_coco_rle, polygons_to_rle, sample_indices
from zoo.errors import DataError


def disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


@pytest.fixture
def coco_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A COCO JSON with a polygon, an uncompressed RLE, a compressed RLE, a crowd region and an
    image without annotations; category ids unsorted and non-contiguous; no ``bbox`` keys."""
    (tmp_path / "pics").mkdir()
    for name, (h, w) in {"a.jpg": (48, 64), "b.jpg": (40, 40)}.items():
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(tmp_path / "pics" / name)
    m_uncompressed, m_compressed = disc(48, 64, 30, 40, 9), disc(48, 64, 10, 10, 6)
    counts = mask_util.encode(np.asfortranarray(m_uncompressed.astype(np.uint8)))
    plain_counts = [int(v) for v in np.diff(np.flatnonzero(np.diff(np.concatenate(
        ([2], m_uncompressed.T.ravel().astype(int), [2]))) != 0))]
    plain_counts = ([0] if m_uncompressed.T.ravel()[0] else []) + plain_counts
    assert mask_util.decode(mask_util.frPyObjects({"size": [48, 64], "counts": plain_counts}, 48, 64)).sum() \
        == mask_util.area(counts)
    doc = {
        "images": [{"id": 7, "file_name": "a.jpg", "height": 48, "width": 64},
                   {"id": 9, "file_name": "b.jpg", "height": 40, "width": 40}],
        "categories": [{"id": 30, "name": "sleeve"}, {"id": 4, "name": "jacket"}, {"id": 12, "name": "cape"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 30, "segmentation": [[2, 2, 20, 2, 20, 14, 2, 14]],
             "attribute_ids": [5, 6], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 4, "iscrowd": 0,
             "segmentation": {"size": [48, 64], "counts": plain_counts}},
            {"id": 3, "image_id": 7, "category_id": 12, "segmentation": mask_to_coco_rle(m_compressed)},
            {"id": 4, "image_id": 7, "category_id": 12, "segmentation": mask_to_coco_rle(m_compressed), "iscrowd": 1},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path, {"uncompressed": m_uncompressed, "compressed": m_compressed}


def test_coco_json_reads_polygons_and_both_rle_forms(coco_file) -> None:
    path, masks = coco_file
    ds = open_dataset(DataConfig(source=str(path), images=str(path.parent / "pics"), max_size=64))
    assert [(c.id, c.label) for c in ds.categories] == [(4, 1), (12, 2), (30, 3)]
    assert ds.source.skipped == {"crowd annotation": 1}
    image, target = ds[0]
    assert image.shape == (3, 48, 64)
    assert target["labels"].tolist() == [3, 1, 2] and target["attributes"] == [[5, 6], [], []]
    polygon = mask_util.decode(mask_util.frPyObjects([[2, 2, 20, 2, 20, 14, 2, 14]], 48, 64))[:, :, 0]
    np.testing.assert_array_equal(target["masks"][0].numpy(), polygon)
    np.testing.assert_array_equal(target["masks"][1].numpy(), masks["uncompressed"])
    np.testing.assert_array_equal(target["masks"][2].numpy(), masks["compressed"])
    assert target["boxes"][2].tolist() == [4.0, 4.0, 17.0, 17.0]  # computed from the mask (no bbox key)
    image, target = ds[1]
    assert image.shape == (3, 40, 40) and target["masks"].shape == (0, 40, 40) and target["labels"].numel() == 0
    assert ds.label_sets() == [{1, 2, 3}, set()]


def test_coco_masks_read_smaller_match_nearest_resize(coco_file) -> None:
    path, masks = coco_file
    ds = open_dataset(DataConfig(source=str(path), images=str(path.parent / "pics"), max_size=32))
    _, target = ds[0]
    expected = masks["uncompressed"][sample_indices(48, 24)][:, sample_indices(64, 32)]
    np.testing.assert_array_equal(target["masks"][1].numpy(), expected)


def test_coco_images_default_to_images_folder_beside_the_json(coco_file) -> None:
    path, _ = coco_file
    with pytest.raises(DataError, match=r"images/a.jpg: image file not found"):
        open_dataset(DataConfig(source=str(path)))[0]
    os.rename(path.parent / "pics", path.parent / "images")
    assert open_dataset(DataConfig(source=str(path)))[0][0].shape == (3, 48, 64)


def test_export_to_coco_round_trips_through_pycocotools(synth_dir: Path, tmp_path: Path) -> None:
    out = export_coco(synth_dir, tmp_path / "synth.json")
    doc = json.loads(out.read_text())
    assert len(doc["categories"]) == 46 and doc["categories"][23] == {"id": 23, "name": "shoe",
                                                                      "supercategory": "legs and feet"}
    direct = open_dataset(DataConfig(source=str(synth_dir), max_size=128))
    again = open_dataset(DataConfig(source=str(out), images=str(synth_dir / "train"), max_size=128))
    assert again.image_ids == direct.image_ids and len(doc["annotations"]) > 12
    for i in (0, 5, 11):
        a, b = direct[i][1], again[i][1]
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["labels"], b["labels"])
        assert a["attributes"] == b["attributes"]
    ann = doc["annotations"][0]
    assert isinstance(ann["segmentation"]["counts"], str) and "attribute_ids" in ann
    assert ann["area"] == int(direct[0][1]["masks"][0].sum())
    small = json.loads(export_coco(synth_dir, tmp_path / "small.json", max_size=64).read_text())
    assert {(im["height"], im["width"]) for im in small["images"]} == {(64, 64)}


def test_prepared_cache_matches_direct_reading_and_resumes(synth_dir: Path, tmp_path: Path) -> None:
    cache = prepare_cache(synth_dir, tmp_path / "cache", max_size=64, workers=2)
    manifest = json.loads((cache / "zoo_cache.json").read_text())
    assert manifest["max_size"] == 64 and manifest["images"] == 12
    from_cache = open_dataset(DataConfig(cache=str(cache), max_size=64))
    direct = open_dataset(DataConfig(source=str(synth_dir), max_size=64))
    assert from_cache.image_ids == direct.image_ids and from_cache.source.kind == "cache"
    assert [c.id for c in from_cache.categories] == [c.id for c in direct.categories]
    for i in (0, 7):
        (img_c, tgt_c), (img_d, tgt_d) = from_cache[i], direct[i]
        assert torch.equal(tgt_c["masks"], tgt_d["masks"]) and tgt_c["attributes"] == tgt_d["attributes"]
        assert (img_c.int() - img_d.int()).abs().float().mean() < 5  # one more JPEG round (noisy textures)
    # Resume: only the missing part is redone, finished ones are left alone.
    parts = sorted((cache / "parts").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    parts[3].unlink()
    (cache / "zoo_cache.json").unlink()
    prepare_cache(synth_dir, cache, max_size=64, workers=1)
    assert parts[3].is_file() and all(p.stat().st_mtime_ns == stamps[p] for p in parts if p != parts[3])
    assert json.loads((cache / "annotations.json").read_text())["images"][3]["file_name"] == direct.image_ids[3]
    with pytest.raises(DataError, match="other settings .*max_size: 64 -> 96"):
        prepare_cache(synth_dir, cache, max_size=96, workers=1)


@pytest.mark.parametrize("far, near", [
    ([2, 2, 1e9, 2, 1e9, 8, 2, 8], [2, 2, 12, 2, 12, 8, 2, 8]),              # a box running off to the right
    ([0, 0, 1e12, 0, 0, 1e12], [0, 0, 40, 0, 0, 40]),                        # both far edges beyond the image
    ([-1e9, 5, 5, -1e9, 1e9, 5, 5, 1e9], [-5, 5, 5, -5, 15, 5, 5, 15]),      # a diamond larger than the image
    ([3, 3, 6, 3, 6, 6, 3, 6], [3, 3, 6, 3, 6, 6, 3, 6]),                    # inside: passed through as it is
])
def test_a_polygon_far_outside_the_image_rasterises_to_the_same_mask_as_a_near_one(far, near) -> None:
    """pycocotools walks every edge at 5x its length: a 1e9 coordinate used to exhaust memory."""
    got = mask_util.decode(polygons_to_rle([far], 10, 10))
    want = mask_util.decode(mask_util.frPyObjects([near], 10, 10))[:, :, 0]
    assert got.sum() > 0
    np.testing.assert_array_equal(got, want)


def test_a_polygon_wholly_outside_the_image_is_an_empty_mask() -> None:
    assert mask_util.decode(polygons_to_rle([[1e9, 1e9, 2e9, 1e9, 2e9, 2e9]], 10, 10)).sum() == 0
