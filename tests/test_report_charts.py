"""Report charts: every chart writes a readable PNG; the gallery draws GT green and predictions red."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.metrics.coco import masks_to_rles
from zoo.report import charts
from zoo.report.collect import ModelResult, decode_instances

NAMES = ["maskrcnn", "yolact", "unet"]


def _png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 2000
    with Image.open(path) as im:
        return im.size


def test_ap_vs_latency(tmp_path: Path) -> None:
    path = charts.ap_vs_latency(NAMES, [400.0, 150.0, 60.0], [0.3, 0.2, 0.08], tmp_path / "ap.png",
                                ci=[(0.25, 0.35), (float("nan"), float("nan")), (0.05, 0.1)])
    w, h = _png_size(path)
    assert w > 400 and h > 300
    with pytest.raises(ValueError, match="positive latencies"):
        charts.ap_vs_latency(NAMES, [0.0, 1.0, 2.0], [0.1, 0.2, 0.3], tmp_path / "bad.png")


def test_per_category_ap_grows_with_categories(tmp_path: Path) -> None:
    few = {n: {"shirt, blouse": 0.5, "shoe": -1.0} for n in NAMES}
    many = {n: {f"category {k}": k / 30 for k in range(30)} | {"sleeve": float("nan")} for n in NAMES}
    _, h_few = _png_size(charts.per_category_ap(few, tmp_path / "few.png"))
    _, h_many = _png_size(charts.per_category_ap(many, tmp_path / "many.png"))
    assert h_many > 2 * h_few  # one row per category keeps the names readable


def test_per_category_axis_fits_the_largest_ap() -> None:
    assert charts.ap_axis_limit([0.0, 0.192, 0.129]) == 0.3  # the default demo's APs
    assert charts.ap_axis_limit([0.02, 0.04]) == 0.05
    assert charts.ap_axis_limit([0.95, 0.3]) == 1.0 and charts.ap_axis_limit([1.0]) == 1.0
    assert charts.ap_axis_limit([]) == 0.05 and charts.ap_axis_limit([float("nan")]) == 0.05


def test_loss_panels_switch_to_log_scale_when_the_first_drop_would_flatten_the_rest() -> None:
    assert charts.wants_log_scale([140.0, 20.0, 12.0, 9.3])  # a one-stage detector's first steps
    assert not charts.wants_log_scale([6.1, 2.4, 1.8])  # Mask R-CNN's: linear is readable
    assert not charts.wants_log_scale([0.5, 0.0, 8.0])  # a zero loss cannot go on a log axis
    assert not charts.wants_log_scale([float("nan"), 3.0, 2.0]) and not charts.wants_log_scale([])


def test_loss_curves_and_pr_curves(tmp_path: Path) -> None:
    x = np.arange(10)
    curves = {n: [charts.Curve("train", x, np.exp(-x / 5)), charts.Curve("val", x[::3], np.exp(-x[::3] / 5), True)]
              for n in NAMES}
    w, _ = _png_size(charts.loss_curves(curves, tmp_path / "loss.png"))
    assert w > 3 * 300  # one panel per model
    pr = {n: {0.5: np.linspace(1, 0, 101), 0.75: np.linspace(0.8, 0, 101)} for n in NAMES}
    _png_size(charts.pr_curves(pr, tmp_path / "pr.png"))
    _png_size(charts.bootstrap_forest(["a - b", "a - c"], [0.1, -0.02], [(0.05, 0.15), (-0.1, 0.06)],
                                      tmp_path / "forest.png"))


def _color_pixels(image: np.ndarray, color: str, tol: int = 40) -> int:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) < tol).sum())


def test_gallery_outlines_ground_truth_green_and_predictions_red(tmp_path: Path) -> None:
    gray = np.full((64, 64, 3), 128, np.uint8)
    gt_mask = np.zeros((1, 64, 64), bool)
    gt_mask[0, 10:40, 10:40] = True
    pred_mask = np.zeros((1, 64, 64), bool)
    pred_mask[0, 30:60, 30:60] = True
    gt = [charts.Instances(gt_mask, ["shirt, blouse"]), charts.Instances(np.zeros((0, 64, 64), bool), [])]
    empty = charts.Instances(np.zeros((0, 64, 64), bool), [])
    with_pred = charts.gallery([gray, gray], gt, {"m": [charts.Instances(pred_mask, ["shoe 0.90"]), empty]},
                               tmp_path / "g.png", titles=["a.jpg", "b.jpg"])
    without = charts.gallery([gray, gray], gt, {"m": [empty, empty]}, tmp_path / "g0.png")
    img = np.asarray(Image.open(with_pred).convert("RGB"))
    img0 = np.asarray(Image.open(without).convert("RGB"))
    assert _color_pixels(img, charts.GT_COLOR) > 100
    assert _color_pixels(img, charts.PRED_COLOR) > 100
    assert _color_pixels(img0, charts.PRED_COLOR) < 5  # red appears only for predictions


def test_decode_instances_round_trip() -> None:
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 10:, 20:] = True
    anns = [{"segmentation": rle} for rle in masks_to_rles(masks)]
    np.testing.assert_array_equal(decode_instances(anns), masks)
    assert decode_instances([]).shape[0] == 0


def test_loss_curves_from_a_real_metrics_csv(tmp_path: Path) -> None:
    from zoo.train.logger import MetricsLog

    log = MetricsLog(tmp_path / "metrics.csv", ["mask"], None, tensorboard=False)
    for step in (10, 20, 30):
        log.write({"kind": "step", "stage": "all", "epoch": 0, "step": step, "lr": 0.01, "loss": 3.0 / step})
    log.write({"kind": "epoch", "stage": "all", "epoch": 0, "step": 30, "val_loss": 0.2})
    from zoo.report.collect import read_history

    result = ModelResult("m", tmp_path, tmp_path, {}, {}, {}, {}, read_history(tmp_path / "metrics.csv"))
    train, val = result.loss_curves()
    assert train.x.tolist() == [10, 20, 30] and train.y.tolist() == pytest.approx([0.3, 0.15, 0.1])
    assert val.x.tolist() == [30] and val.y.tolist() == [0.2] and val.dashed
