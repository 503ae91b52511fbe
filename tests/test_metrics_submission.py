"""The iMaterialist 2019 submission CSV: written without overlaps and with the reader's start base,
read back for scoring, and a round trip on the real 2019 rows through the real CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conftest import imaterialist_rows
from zoo.data.rle import decode_runs_full, mask_to_coco_rle, parse_kaggle_rle
from zoo.errors import DataError
from zoo.metrics.cli_eval import eval_files
from zoo.metrics.submission import read_submission, submission_rows, write_submission

REPO = Path(__file__).resolve().parents[1]


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_rows_are_one_based_column_major_best_first_and_never_overlap() -> None:
    big, small = box(6, 5, 0, 0, 4, 3), box(6, 5, 2, 1, 6, 5)  # they share rows 2-3 of columns 1-2
    rows = submission_rows("a.jpg", [
        {"category_id": 4, "segmentation": mask_to_coco_rle(big), "score": 0.4, "attribute_ids": [20, 3]},
        {"category_id": 10, "segmentation": mask_to_coco_rle(small), "score": 0.9}])
    assert [r[2] for r in rows] == ["10", "4_3_20"]  # best first; attributes sorted into ClassId
    first, second = (decode_runs_full(*parse_kaggle_rle(r[1]), 6, 5).astype(bool) for r in rows)
    assert np.array_equal(first, small) and np.array_equal(second, big & ~small)
    assert rows[0][1].split()[:2] == ["9", "4"]  # column 1, row 2: flat index 1 * 6 + 2 = 8, written 1-based
    assert submission_rows("empty.jpg", []) == [("empty.jpg", "", "")]


def test_read_back_keeps_the_ranking_and_names_bad_rows(tmp_path: Path) -> None:
    gt = {"images": [{"id": 7, "file_name": "a.jpg", "height": 6, "width": 5}]}
    path = write_submission(tmp_path / "s.csv", [("a.jpg", [
        {"category_id": 4, "segmentation": mask_to_coco_rle(box(6, 5, 0, 0, 2, 2)), "score": 0.3},
        {"category_id": 5, "segmentation": mask_to_coco_rle(box(6, 5, 3, 3, 6, 5)), "score": 0.8}])])
    results = read_submission(path, gt)
    assert [(r["image_id"], r["category_id"], r["score"]) for r in results] == [(7, 5, 1.0), (7, 4, 0.5)]
    mask = mask_utils.decode({**results[0]["segmentation"], "counts": results[0]["segmentation"]["counts"].encode()})
    assert np.array_equal(mask.astype(bool), box(6, 5, 3, 3, 6, 5))
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,EncodedPixels,ClassId\nb.jpg,1 3,4\n")
    with pytest.raises(DataError, match=r"bad.csv row 2: ImageId 'b.jpg' is not in the ground truth"):
        read_submission(bad, gt)
    bad.write_text("ImageId,EncodedPixels,ClassId\na.jpg,29 3,4\n")
    with pytest.raises(DataError, match=r"bad.csv row 2: runs leave the 6x5 image"):
        read_submission(bad, gt)
    bad.write_text("ImageId,Pixels,ClassId\n")
    with pytest.raises(DataError, match="missing column"):
        read_submission(bad, gt)




def test_round_trip_export_submission_eval_scores_one(tmp_path: Path) -> None:
    folder = imaterialist_rows(tmp_path)
    proc = zoo("data", "export", str(folder), "--out", str(tmp_path / "gt.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert len(gt["images"]) == 13 and len(gt["annotations"]) == 28
    assert [im["id"] for im in gt["images"]] == list(range(1, 14))  # CSV order
    # A submission written from exactly those masks (and their attributes), one image at a time.
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    per_image = {i: [] for i in names}
    for ann in gt["annotations"]:
        per_image[ann["image_id"]].append({**ann, "score": 1.0})
    submission = write_submission(tmp_path / "submission.csv", [(names[i], rows) for i, rows in per_image.items()])
    with submission.open() as fh:
        written = list(csv.DictReader(fh))
    with (folder / "train.csv").open() as fh:
        original = {(r["ImageId"], r["ClassId"]): r["EncodedPixels"] for r in csv.DictReader(fh)}
    # The real rows do not overlap, so every one comes back as Kaggle wrote it (1-based starts).
    assert {(r["ImageId"], r["ClassId"]): r["EncodedPixels"] for r in written} == original
    for gt_arg in (folder / "train.csv", tmp_path / "gt.json"):
        proc = zoo("eval", "--gt", str(gt_arg), "--pred", str(submission), "--out", str(tmp_path / "m.json"),
                   cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["segm"]["AP"] == pytest.approx(1.0) and metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_the_start_base_matters(tmp_path: Path) -> None:
    """The real rows scored against themselves: AP 1 read with one base, far lower when the
    predictions are read with the other (every mask one pixel off: 0.71 here)."""
    from zoo.metrics.cli_eval import load_ground_truth
    from zoo.metrics.coco import evaluate_coco

    csv_path = imaterialist_rows(tmp_path) / "train.csv"
    gt = load_ground_truth(csv_path)
    same = evaluate_coco(gt, read_submission(csv_path, gt, base=1), backend="pycocotools")
    shifted = evaluate_coco(gt, read_submission(csv_path, gt, base=0), backend="pycocotools")
    assert same["segm"]["AP"] == pytest.approx(1.0) and shifted["segm"]["AP"] < 0.8
    metrics = eval_files(csv_path, csv_path, out=None, backend="pycocotools")
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
