"""`zoo eval` as a real subprocess: COCO files (the real Fashionpedia sample) and a trained run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoo.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "fashionpedia-sample"


def fashionpedia_sample() -> Path:
    """The shared Fashionpedia sample folder; skips when this checkout has no ../shared."""
    if not (SAMPLE / "sample.json").is_file():
        pytest.skip(f"real-data fixture {SAMPLE} is absent (fresh clone without ../shared)")
    return SAMPLE


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_eval_files_on_real_fashionpedia_sample(tmp_path: Path) -> None:
    sample = fashionpedia_sample()
    gt, pred = sample / "sample.json", sample / "fake_results.json"
    proc = zoo("eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "m.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "AP50" in proc.stdout and "shoe" in proc.stdout  # the rich tables
    m = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 < m["segm"]["AP"] < 1.0
    # sample.json has no bbox: boxes come from the polygons, so box AP is defined too
    assert 0.0 < m["bbox"]["AP"] <= 1.0
    assert m["per_category"]["shoe"]["n_gt"] == 2 and m["per_category"]["shoe"]["id"] == 24
    assert m["per_category"]["sock"]["AP"] == -1.0  # predicted, never annotated
    ref = CliRunner().invoke(app, ["eval", "--gt", str(gt), "--pred", str(pred), "--backend", "pycocotools",
                                   "--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    r = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    for kind in ("segm", "bbox"):
        for key, value in r[kind].items():
            assert m[kind][key] == pytest.approx(value, abs=1e-4), (kind, key)


def test_eval_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "height": 8, "width": 8}], "annotations": [],
                              "categories": [{"id": 1, "name": "hat"}]}))
    missing = zoo("eval", "--gt", str(gt), "--pred", str(tmp_path / "none.json"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "none.json" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5,
                               "segmentation": {"size": [8, 8], "counts": [64]}}]))
    wrong = CliRunner().invoke(app, ["eval", "--gt", str(gt), "--pred", str(bad)])
    assert wrong.exit_code == 2 and "bad.json: row 0 has image_id 7" in wrong.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5,
                               "segmentation": {"size": [8, 8], "counts": [64]}}]))
    backend = CliRunner().invoke(app, ["eval", "--gt", str(gt), "--pred", str(good), "--backend", "mmdet"])
    assert backend.exit_code == 2 and "choose one of faster, pycocotools" in backend.stderr
    neither = CliRunner().invoke(app, ["eval", "--gt", str(gt)])
    assert neither.exit_code == 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step UNet run on 6 synthetic 64 px JPEGs, trained by the harness."""
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    root = tmp_path_factory.mktemp("evalrun")
    write_synthetic(root / "synth", n=6, size=64, seed=0)
    cfg = load_train_config("unet", overrides=[f"data.source={root / 'synth'}", "data.max_size=64",
                                               "stages=[{epochs: 1}]", "steps_per_epoch=1", "batch_size=2",
                                               "device=cpu", "eval_limit=1"])
    return train(cfg, root / "run")


def test_eval_run_writes_metrics_results_and_figures(trained_run: Path) -> None:
    proc = zoo("eval", str(trained_run), cwd=trained_run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = trained_run / "eval"
    m = json.loads((out / "metrics.json").read_text())
    val = json.loads((trained_run / "split.json").read_text())["val"]
    assert m["split"] == "val" and m["n_images"] == len(val)
    assert {"segm", "bbox", "per_category", "semantic", "confusion"} <= set(m)
    assert m["resolution"]["scored_at"] == "original" and "original resolution" in proc.stdout
    # Standard files with the source's ids: the validation photos by name, ids 1-based in CSV order.
    results, gt = (json.loads((out / name).read_text()) for name in ("results.json", "gt.json"))
    split = json.loads((trained_run / "split.json").read_text())
    assert sorted(im["file_name"] for im in gt["images"]) == sorted(split["val_image_ids"])
    assert {im["id"] for im in gt["images"]} == {i + 1 for i in val}
    assert {r["image_id"] for r in results} <= {i + 1 for i in val}
    for name in ("results_segm.json", "confusion.csv", "confusion.png", "pr_curves.png", "pr_per_category.png"):
        assert (out / name).is_file(), name
    # The written files score the same through `zoo eval --gt --pred`.
    again = CliRunner().invoke(app, ["eval", "--gt", str(out / "gt.json"), "--pred", str(out / "results.json"),
                                     "--out", str(out / "again.json")])
    assert again.exit_code == 0, again.output[-2000:]
    rescored = json.loads((out / "again.json").read_text())
    assert rescored["segm"] == pytest.approx(m["segm"], abs=1e-4) and rescored["bbox"] == pytest.approx(m["bbox"], abs=1e-4)


def test_eval_pred_takes_a_results_list_or_a_scored_coco_dataset(tmp_path: Path) -> None:
    sample = fashionpedia_sample()
    results = json.loads((sample / "fake_results.json").read_text())
    gt = json.loads((sample / "sample.json").read_text())
    # The same detections as a COCO dataset (zoo predict's predictions.json): its own image ids,
    # matched to the ground truth by file name.
    renumber = {im["id"]: 100 + k for k, im in enumerate(gt["images"])}
    dataset = {"images": [{**im, "id": renumber[im["id"]]} for im in gt["images"]], "categories": gt["categories"],
               "annotations": [{**r, "id": k + 1, "image_id": renumber[r["image_id"]]} for k, r in enumerate(results)]}
    (tmp_path / "as_dataset.json").write_text(json.dumps(dataset))
    scores = []
    for pred in (sample / "fake_results.json", tmp_path / "as_dataset.json"):
        proc = CliRunner().invoke(app, ["eval", "--gt", str(sample / "sample.json"), "--pred", str(pred),
                                        "--out", str(tmp_path / f"{pred.stem}.json")])
        assert proc.exit_code == 0, proc.output[-2000:]
        scores.append(json.loads((tmp_path / f"{pred.stem}.json").read_text())["segm"])
    assert scores[0] == scores[1] and 0 < scores[0]["AP"] < 1
    dataset["annotations"][0].pop("score")
    (tmp_path / "unscored.json").write_text(json.dumps(dataset))
    proc = CliRunner().invoke(app, ["eval", "--gt", str(sample / "sample.json"), "--pred", str(tmp_path / "unscored.json")])
    assert proc.exit_code == 2 and "unscored.json: annotations[0] has no score" in proc.stderr


def test_eval_run_other_split_to_named_file(trained_run: Path, tmp_path: Path) -> None:
    proc = CliRunner().invoke(app, ["eval", str(trained_run), "--split", "train", "--limit", "2",
                                    "--out", str(tmp_path / "train.json")])
    assert proc.exit_code == 0, proc.output[-2000:]
    m = json.loads((tmp_path / "train.json").read_text())
    assert m["split"] == "train" and m["n_images"] == 2
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "metrics.json").exists()
    small = CliRunner().invoke(app, ["eval", str(trained_run), "--resolution", "input", "--out", str(tmp_path / "in")])
    assert small.exit_code == 0, small.output[-2000:]
    assert json.loads((tmp_path / "in" / "metrics.json").read_text())["resolution"]["scored_at"] == "input"
    bad = CliRunner().invoke(app, ["eval", str(trained_run), "--split", "holdout"])
    assert bad.exit_code == 2 and "unknown split 'holdout'" in bad.stderr
