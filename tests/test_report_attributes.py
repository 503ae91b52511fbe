"""The report's attribute section and verdict line, from metrics files alone: hand-made predictions
with and without ``attribute_ids`` scored by the real evaluator, then the report built from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from zoo.metrics.attributes import attribute_metrics
from zoo.report.attributes import attribute_blocks, attribute_verdict
from zoo.report.collect import ModelResult
from zoo.report.content import Context, Figures, build_document, verdict
from zoo.report.document import Heading, Table
from zoo.report.markdown import render_markdown

REPO = Path(__file__).resolve().parents[1]


def ground_truth() -> dict:
    """Two 64-px images, a shirt with attributes and a bag without, in each."""
    images, anns = [], []
    for img in (1, 2):
        images.append({"id": img, "height": 64, "width": 64, "file_name": f"{img}.jpg"})
        for k, (cat, attrs) in enumerate(((1, [1, 2]), (2, []))):
            m = np.zeros((64, 64), dtype=np.uint8)
            m[4 + 30 * k: 26 + 30 * k, 8 * img: 30 + 8 * img] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat, "segmentation": rle,
                         "area": float(m.sum()), "iscrowd": 0, "attribute_ids": attrs})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "shirt"}, {"id": 2, "name": "bag"}],
            "attributes": [{"id": 1, "name": "long sleeve"}, {"id": 2, "name": "striped"}, {"id": 3, "name": "v-neck"}]}


def predictions(gt: dict, attributes: list[list[int]] | None) -> list[dict]:
    """Every ground truth found with its own mask; ``attributes`` per row, or none at all."""
    rows = [{k: a[k] for k in ("image_id", "category_id", "segmentation")} | {"score": 0.9 - 0.1 * i}
            for i, a in enumerate(gt["annotations"])]
    if attributes is not None:
        for row, attrs in zip(rows, attributes):
            row["attribute_ids"] = attrs
    return rows


def model(name: str, gt: dict, rows: list[dict]) -> ModelResult:
    metrics = {"segm": {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": -1.0, "APm": 1.0, "APl": -1.0},
               "bbox": {"AP": 1.0}, "semantic": {"mIoU": 0.5}, "per_category": {},
               "attributes": attribute_metrics(gt, rows)}
    bench = {"ms_median": 10.0, "ms_p90": 12.0, "images_per_s": 100.0, "device": "cpu"}
    return ModelResult(name, Path(name), Path(name), {"adapter": name}, {}, json.loads(json.dumps(metrics)), bench)


def models() -> list[ModelResult]:
    gt = ground_truth()
    right = model("right", gt, predictions(gt, [[1, 2], [], [1, 2], []]))
    half = model("half", gt, predictions(gt, [[1, 3], [], [1], []]))
    blind = model("blind", gt, predictions(gt, None))
    return [right, half, blind]


def test_verdict_names_the_best_model_by_ap_iou_f1() -> None:
    rs = models()
    line = attribute_verdict(rs)[0]
    assert line.startswith("Most accurate by AP (IoU+F1)") and "**right** (AP (IoU+F1) 1.000)" in line
    assert line.endswith("Not scored (no attribute predictions): blind.")
    assert line in verdict(rs, None)
    assert attribute_verdict([rs[2]]) == ["No model predicts attributes, so none has an AP (IoU+F1), "
                                          "Fashionpedia's measure."]


def test_section_shows_ap_iou_f1_beside_mask_ap_and_dashes_for_a_model_without_attributes() -> None:
    blocks = attribute_blocks(models())
    assert isinstance(blocks[0], Heading) and blocks[0].text == "Attributes"
    summary, per_attr = [b for b in blocks if isinstance(b, Table)]
    assert summary.headers[:3] == ("model", "mask AP", "AP (IoU+F1)")
    by_model = {row[0]: row for row in summary.rows}
    assert by_model["right"][1:3] == ("1.000", "1.000")
    # "half": the shirts' attribute F1 are 0.25 ({1, 3} for {1, 2} of 3) and 2/3 ({1} for {1, 2}), so
    # only the second shirt (ranked after the first) counts, at 4 of the 10 F1 thresholds: precision
    # 0.5 up to recall 0.5 (51 of 101 points). FPEval weighs the shirt once per F1 threshold and the
    # bag (no attributes, AP 1) once.
    half = rs_half_ap()
    assert abs(half - (100 * 0.4 * (51 * 0.5 / 101) + 10 * 1.0) / 110) < 1e-12
    assert by_model["half"][2] == f"{half:.3f}" and half < 1.0
    assert by_model["blind"][2:] == ("-",) * (len(summary.headers) - 2)
    assert per_attr.headers == ("attribute", "instances", "right", "half", "blind")
    rows = {row[0]: row for row in per_attr.rows}
    assert rows["long sleeve"] == ("long sleeve", "2", "1.000", "1.000", "-")
    assert rows["striped"][1:4] == ("2", "1.000", "0.000")
    assert "v-neck" not in rows  # no ground truth carries it


def rs_half_ap() -> float:
    gt = ground_truth()
    return attribute_metrics(gt, predictions(gt, [[1, 3], [], [1], []]))["iou_f1"]["AP"]


def test_no_section_without_attributes_in_the_ground_truth() -> None:
    gt = ground_truth()
    for a in gt["annotations"]:
        a["attribute_ids"] = []
    r = model("plain", gt, predictions(gt, None))
    assert r.metrics["attributes"] is None and attribute_blocks([r]) == [] and attribute_verdict([r]) == []


def test_markdown_report_carries_the_section(tmp_path: Path) -> None:
    ctx = Context(dataset="d", n_images=2, n_train=0, n_val=2, seed=0, split="s", device="cpu", command="zoo",
                  preset="cpu", versions={})
    text = render_markdown(build_document(models(), None, Figures(), ctx), tmp_path)
    assert "## Attributes" in text and "| right | 1.000 | 1.000 |" in text and "| blind | 1.000 | - |" in text


def test_zoo_eval_reports_ap_iou_f1_from_files(tmp_path: Path) -> None:
    gt = ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(predictions(gt, [[1, 3], [], [1], []])))
    cli = [sys.executable, str(REPO / "cli.py"), "eval", "--gt", "gt.json"]
    proc = subprocess.run([*cli, "--pred", "pred.json", "--out", "m.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "AP (IoU+F1)" in proc.stdout and "long sleeve" in proc.stdout
    written = json.loads((tmp_path / "m.json").read_text())["attributes"]
    assert written["scored"] and abs(written["iou_f1"]["AP"] - rs_half_ap()) < 1e-12


def test_zoo_eval_says_when_predictions_carry_no_attributes(tmp_path: Path, capsys) -> None:
    from zoo.metrics.cli_eval import eval_files

    gt = ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "plain.json").write_text(json.dumps(predictions(gt, None)))
    metrics = eval_files(tmp_path / "gt.json", tmp_path / "plain.json", out=None, backend="faster")
    assert metrics["attributes"] == {"scored": False, "reason": "the predictions carry no attribute_ids"}
    assert "attributes: not scored (the predictions carry no attribute_ids)" in capsys.readouterr().out
