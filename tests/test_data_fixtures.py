"""Real public data: iMaterialist 2019 rows and the Fashionpedia sample (skipped without ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from conftest import imaterialist_rows, shared_fixture_path
from zoo.config import DataConfig
from zoo.data.dataset import open_dataset
from zoo.data.decode import decode_segmentation
from zoo.data.rle import decode_runs_full, parse_kaggle_rle, sample_indices
from zoo.data.sources import read_imaterialist




def test_real_rows_parse_with_attributes_and_categories(tmp_path: Path) -> None:
    source = read_imaterialist(imaterialist_rows(tmp_path))
    assert len(source.categories) == 46 and len(source.attributes) == 92
    assert sum(len(r.instances) for r in source.records) == 28 and len(source.records) == 13
    by_name = {r.name: r for r in source.records}
    record = by_name["000aac3870ea7c59ca0333ffa5327323.jpg"]
    assert (record.height, record.width) == (4000, 6000)
    assert [(i.category_id, i.attributes) for i in record.instances] == [
        (10, [3, 20, 34, 56, 69, 91]), (3, [1, 10, 20, 41, 60, 61, 91])]
    assert by_name["00000663ed1ff0c4e0132b9b9ac53f6e.jpg"].instances[0].attributes == []


def test_real_runs_are_column_major_and_read_one_based(tmp_path: Path) -> None:
    source = read_imaterialist(imaterialist_rows(tmp_path))
    assert source.rle_base == 1  # the default, as Kaggle's evaluation text and the winning solution read it
    strides, reach = [], {0: {"last": 0, "one_short": 0}, 1: {"last": 0, "one_short": 0}}
    for record in source.records:
        for inst in record.instances:
            for base in (0, 1):
                starts, lengths = parse_kaggle_rle(inst.segmentation, base=base)
                end_row = (starts % record.height) + lengths  # exclusive end row of each run
                reach[base]["last"] += int((end_row == record.height).sum())
                reach[base]["one_short"] += int((end_row == record.height - 1).sum())
            starts, _ = parse_kaggle_rle(inst.segmentation)
            strides += (np.diff(starts) / record.height).tolist()
    # Consecutive runs of a garment sit one column (Height pixels) apart: column-major order.
    assert 0.95 < np.median(strides) < 1.05
    # Read 1-based, garments that touch the bottom stop at row H - 2, as on full photos they stop at
    # column W - 2 on the right; read 0-based they would fill the last row and never the last column.
    assert reach[1]["last"] == 0 and reach[1]["one_short"] >= 5
    assert reach[0]["last"] == reach[1]["one_short"]


def test_real_row_decodes_at_size_like_full_decode_and_resize(tmp_path: Path) -> None:
    source = read_imaterialist(imaterialist_rows(tmp_path))
    record = next(r for r in source.records if r.height == 5214)
    inst = record.instances[0]
    small = decode_segmentation(inst.segmentation, (5214, 3676), (1024, 722), rle_base=1, where="row", grids={})
    full = decode_runs_full(*parse_kaggle_rle(inst.segmentation), 5214, 3676)
    np.testing.assert_array_equal(small, full[sample_indices(5214, 1024)][:, sample_indices(3676, 722)])
    assert full.sum() == 109  # 7 + 20 + 34 + 48 pixels in four columns


def test_fashionpedia_sample_masks_areas_and_boxes_agree_with_pycocotools() -> None:
    sample = shared_fixture_path("fashionpedia-sample", "sample.json")
    ds = open_dataset(DataConfig(source=str(sample), max_size=4000))  # no upscaling: full size
    coco = COCO(str(sample))
    assert ds.num_classes == 48 and [c.id for c in ds.categories] == sorted(coco.getCatIds())
    assert ds.categories[24].id == 24 and ds.categories[24].label == 25
    id_of = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    total = 0
    for i in range(len(ds)):
        image, target = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=id_of[ds.image_ids[i]]))
        assert tuple(image.shape[1:]) == (anns and coco.imgs[anns[0]["image_id"]]["height"],
                                          coco.imgs[anns[0]["image_id"]]["width"])
        for ann, mask, box, label, attrs in zip(anns, target["masks"], target["boxes"], target["labels"],
                                                target["attributes"]):
            reference = coco.annToMask(ann)
            assert np.array_equal(mask.numpy(), reference)
            rle = coco.annToRLE(ann)
            x, y, w, h = mask_util.toBbox(rle)
            assert box.tolist() == [x, y, x + w, y + h]
            assert int(mask.sum()) == int(mask_util.area(rle))
            assert ds.categories[int(label) - 1].id == ann["category_id"] and attrs == ann["attribute_ids"]
            total += 1
    assert total == 12


def test_fashionpedia_sample_at_training_size() -> None:
    sample = shared_fixture_path("fashionpedia-sample", "sample.json")
    ds = open_dataset(DataConfig(source=str(sample), max_size=256))
    for i in range(len(ds)):
        image, target = ds[i]
        assert max(image.shape[1:]) == 256 and target["masks"].shape[1:] == image.shape[1:]
        assert len(target["labels"]) > 0 and bool((target["boxes"][:, 2:] > target["boxes"][:, :2]).all())
