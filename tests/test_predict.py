"""`zoo predict` on unlabeled photos: overlays, COCO file, counts and co-occurrence."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from faster_coco_eval.core import mask as mask_utils
from rich.console import Console
from torch import Tensor, nn

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.adapter import Adapter
from zoo.errors import UserError
from zoo.predict import annotate_photos, count_tables, find_images
from zoo.types import InstancePred

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTO = REPO.parent / "shared" / "fixtures" / "fashionpedia-sample" / "images" / "unlabeled_input.jpg"


def shared_photo() -> Path:
    """The real unlabeled street photo from ../shared, or a clean skip when it is absent."""
    if not SHARED_PHOTO.is_file():
        pytest.skip(f"{SHARED_PHOTO} not present (no ../shared checkout)")
    return SHARED_PHOTO


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unet run trained for two steps on a tiny synthetic dataset (64 px)."""
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    root = tmp_path_factory.mktemp("predict")
    data = write_synthetic(root / "tiny", n=8, size=64, seed=1)
    overrides = {"data.source": str(data), "data.max_size": 64, "steps_per_epoch": 2, "batch_size": 2,
                 "eval_limit": 2, "device": "cpu",
                 "stages": [{"name": "all", "epochs": 1, "lr": 0.01, "layers": "all"}]}
    cfg = load_train_config("unet", overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    return train(cfg, root / "run")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of JPEGs without labels: two square, one wide in a subfolder, one broken file."""
    folder = tmp_path / "photos"
    (folder / "street").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (64, 64), "b.jpeg": (80, 80), "street/wide.jpg": (60, 150)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name, quality=90)
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("ignored: not a photo")
    return folder


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_predict_writes_overlays_coco_counts_and_cooccurrence(run_dir: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = zoo("predict", str(run_dir), str(photos), "--out", str(out), "--score-threshold", "0.0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    coco = json.loads((out / "predictions.json").read_text())
    sizes = {im["file_name"]: (im["height"], im["width"]) for im in coco["images"]}
    assert sizes == {"a.jpg": (64, 64), "b.jpeg": (80, 80), "street/wide.jpg": (60, 150)}
    assert "broken.jpg" in (out / "skipped.txt").read_text() and "1 skipped" in proc.stderr
    by_id = {im["id"]: im for im in coco["images"]}
    assert coco["annotations"], "an untrained model at threshold 0 still finds instances"
    cat_names = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        im = by_id[ann["image_id"]]
        assert ann["segmentation"]["size"] == [im["height"], im["width"]]  # masks at the photo's own size
        mask = mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()})
        assert mask.sum() == ann["area"] > 0 and 0.0 <= ann["score"] <= 1.0
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6
    for name, (h, w) in sizes.items():
        overlay = out / "overlays" / (name.rsplit(".", 1)[0].replace("/", "__") + ".png")
        with Image.open(overlay) as img:
            assert img.size == (w, h)
    found: dict[str, int] = {}
    for ann in coco["annotations"]:
        found[cat_names[ann["category_id"]]] = found.get(cat_names[ann["category_id"]], 0) + 1
    with (out / "counts.csv").open() as fh:
        counts = {r["category"]: r for r in csv.DictReader(fh)}
    assert {c: int(r["instances"]) for c, r in counts.items()} == found
    with (out / "cooccurrence.csv").open() as fh:
        rows = list(csv.reader(fh))
    header, matrix = rows[0][1:], np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert header == [r[0] for r in rows[1:]] == list(counts)
    assert (matrix == matrix.T).all()
    assert [int(counts[c]["images"]) for c in header] == np.diag(matrix).tolist()
    with (out / "counts_per_image.csv").open() as fh:
        per_image = list(csv.DictReader(fh))
    assert sum(int(r["instances"]) for r in per_image) == len(coco["annotations"])
    assert "categories found in 3 photos" in proc.stderr
    # results.json: a standard COCO results list on predictions.json's images, the same instances.
    from pycocotools.coco import COCO

    results = json.loads((out / "results.json").read_text())
    assert isinstance(results, list) and len(results) == len(coco["annotations"])
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = COCO(str(out / "predictions.json")).loadRes(str(out / "results.json"))
    assert len(loaded.anns) == len(results)
    assert [r["segmentation"] for r in results] == [a["segmentation"] for a in coco["annotations"]]


def test_predict_writes_an_imaterialist_submission_that_zoo_eval_scores(run_dir: Path, photos: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "csv"
    proc = zoo("predict", str(run_dir), str(photos), "--out", str(out), "--score-threshold", "0.0",
               "--format", "imaterialist-csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "results.json").exists() and (out / "overlays").is_dir()
    with (out / "submission.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["ImageId", "EncodedPixels", "ClassId"]
    assert {r["ImageId"] for r in rows} == {"a.jpg", "b.jpeg", "street/wide.jpg"}
    # The same photos' COCO predictions as ground truth: the CSV holds those masks, made disjoint.
    coco_out = tmp_path / "coco"
    assert zoo("predict", str(run_dir), str(photos), "--out", str(coco_out), "--score-threshold", "0.0",
               cwd=tmp_path).returncode == 0
    scored = zoo("eval", "--gt", str(coco_out / "predictions.json"), "--pred", str(out / "submission.csv"),
                 "--out", str(tmp_path / "m.json"), cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert 0.0 < json.loads((tmp_path / "m.json").read_text())["segm"]["AP50"] <= 1.0
    bad = zoo("predict", str(run_dir), str(photos), "--out", str(out), "--format", "parquet", cwd=tmp_path)
    assert bad.returncode == 2 and "--format 'parquet': choose one of coco, imaterialist-csv" in bad.stderr


def test_threshold_keeps_only_confident_instances(run_dir: Path, photos: Path, tmp_path: Path) -> None:
    from zoo.predict import predict_photos

    low = predict_photos(run_dir, [photos / "a.jpg"], out=tmp_path / "low", score_threshold=0.0)
    high = predict_photos(run_dir, [photos / "a.jpg"], out=tmp_path / "high", score_threshold=1.0)
    assert low.n_instances > 0 and high.n_instances <= low.n_instances
    scores = [a["score"] for a in json.loads((tmp_path / "high" / "predictions.json").read_text())["annotations"]]
    assert all(s >= 1.0 for s in scores)


def test_predict_on_a_real_street_photo(run_dir: Path, tmp_path: Path) -> None:
    photo = shared_photo()
    from zoo.predict import predict_photos

    summary = predict_photos(run_dir, [photo], out=tmp_path / "out", score_threshold=0.0)
    coco = json.loads((tmp_path / "out" / "predictions.json").read_text())
    with Image.open(photo) as img:
        assert (coco["images"][0]["width"], coco["images"][0]["height"]) == img.size
        side = max(img.size)
    with Image.open(tmp_path / "out" / "overlays" / "unlabeled_input.png") as overlay:
        assert max(overlay.size) == min(side, 1280)
    assert summary.n_photos == 1


def test_count_tables_known_answer() -> None:
    per_image = [["shoe", "shoe", "pants"], ["shoe", "hat"], [], ["pants"]]
    instances, images, co = count_tables(per_image, ["shoe", "pants", "hat"])
    assert instances == {"shoe": 3, "pants": 2, "hat": 1}
    assert images == {"shoe": 2, "pants": 2, "hat": 1}
    assert co.tolist() == [[2, 1, 1], [1, 2, 0], [1, 0, 1]]


def test_find_images_names_and_errors(photos: Path, tmp_path: Path) -> None:
    found = find_images([photos, photos / "a.jpg"])
    names = [n for _, n in found]
    # a.jpg appears twice (the folder and the file): both keep their full paths to stay unique.
    assert names.count(str((photos / "a.jpg").as_posix())) == 2
    assert "street/wide.jpg" in names and not any(n.endswith("notes.txt") for n in names)
    with pytest.raises(UserError, match="no such file"):
        find_images([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no photos"):
        find_images([empty])
    with pytest.raises(UserError, match="not a photo"):
        find_images([photos / "notes.txt"])
    shutil.rmtree(empty)


# ---------------------------------------------------------------- where the masks land
class RedPaintFinder(Adapter):
    """One instance (label 1, score 0.9): the pixels where red exceeds green and blue.

    A fixed 1x1 convolution ``logit = R - G/2 - B/2 - 1/4`` (image in ``[0, 1]``), thresholded
    at 0: pure red paint gives 0.75, any grey (R = G = B) gives -0.25, so the model's output on
    a photo is known exactly: the painted shape at the size of the image it is given.
    """

    config_cls = dict

    def __init__(self) -> None:
        super().__init__({}, num_classes=1)
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))
            self.conv.bias.fill_(-0.25)

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        return {"zero": self.conv.weight.sum() * 0}

    def run_model(self, images: list[Tensor]) -> list[Tensor]:
        return [self.conv(im[None])[0, 0] for im in images]

    def postprocess(self, raw: list[Tensor], sizes: list[tuple[int, int]]) -> list[InstancePred]:
        preds = []
        for logits, (h, w) in zip(raw, sizes):
            mask = logits > 0  # [H, W], the size of the image given to predict
            if not mask.any():
                preds.append(InstancePred.empty(h, w))
                continue
            ys, xs = torch.nonzero(mask, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            preds.append(InstancePred(box, torch.tensor([1]), torch.tensor([0.9]), mask[None]))
        return preds

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"heads": list(self.parameters())}


def painted_photo(path: Path, height: int, width: int) -> np.ndarray:
    """Write a full-size JPEG: grey texture with a red ellipse off the centre; returns the
    ellipse as bool ``[height, width]`` (what a perfect prediction covers in the photo)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:height, 0:width]
    grey = 60 + 90 * (xx / width) + 40 * np.sin(yy / 37.0) + rng.normal(0, 8, (height, width))
    pixels = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    # Off the centre and nearer the right/bottom edges, so a lost offset or scale moves it.
    cy, cx, ry, rx = 0.62 * height, 0.6 * width, 0.26 * height, 0.25 * width
    shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    pixels[shape] = (255, 0, 0)
    Image.fromarray(pixels).save(path, quality=92)
    return shape


@pytest.mark.parametrize("resize", ["max_side", "square"])
@pytest.mark.parametrize(("height", "width"), [(1478, 1000), (1000, 1478)])
def test_predicted_mask_lands_on_the_painted_shape_at_full_size(run_dir: Path, tmp_path: Path, resize: str,
                                                                 height: int, width: int) -> None:
    """A 1000x1478 photo read at 256 px (square mode: padded to 256x256) comes back at full size
    with the model's mask exactly where the shape was painted."""
    from zoo.train.run import load_run

    path = tmp_path / "painted.jpg"
    shape = painted_photo(path, height, width)
    run = load_run(run_dir)
    data = dataclasses.replace(run.cfg.data, max_size=256, resize=resize)
    run = dataclasses.replace(run, adapter=RedPaintFinder(), cfg=dataclasses.replace(run.cfg, data=data))
    done = annotate_photos(run, [(path, "painted.jpg")], tmp_path / "out", 0.5, Console(stderr=True))
    assert done.images == [{"id": 1, "file_name": "painted.jpg", "height": height, "width": width}]
    assert len(done.annotations) == 1
    ann = done.annotations[0]
    assert ann["segmentation"]["size"] == [height, width]
    assert ann["category_id"] == run.dataset.categories[0].id
    mask = mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}).astype(bool)
    iou = (mask & shape).sum() / (mask | shape).sum()
    assert iou >= 0.97, iou
    # One pixel of the 256 px model input is about 6 photo pixels: the box is that close.
    ys, xs = np.nonzero(shape)
    expected = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    assert ann["bbox"] == pytest.approx(expected, abs=max(height, width) / 256 * 1.5)
    assert ann["area"] == pytest.approx(shape.sum(), rel=0.03)
    with Image.open(tmp_path / "out" / "overlays" / "painted.png") as overlay:
        assert max(overlay.size) == 1280


def test_predicted_attributes_reach_the_results_the_submission_and_the_overlays(run_dir: Path, photos: Path,
                                                                                 tmp_path: Path) -> None:
    """A run trained on attributed data predicts attribute ids: they are in results.json, in the
    ClassId suffixes of the submission CSV (``category_attr_attr``) and named on the overlay."""
    from zoo.predict import PhotoResult, draw_overlay, write_predictions
    from zoo.train.run import load_run

    run = load_run(run_dir)
    space = run.adapter.attribute_space
    assert space is not None and len(space) == 92 and space.names[61] == "plain (pattern)"
    run.adapter.set_attribute_threshold(0.0)  # every attribute passes: the ids of a carrying category are all of them
    categories = getattr(run, "categories", None) or run.dataset.categories
    carrying = {c.id for c in categories if c.label in space.labels}
    out = tmp_path / "out"
    done = annotate_photos(run, find_images([photos / "a.jpg", photos / "b.jpeg"]), out, 0.0,
                           Console(file=io.StringIO()))
    assert any(r["category_id"] in carrying for r in done.rows)
    for row in done.rows:
        assert row["attribute_ids"] == (list(space.ids) if row["category_id"] in carrying else [])
    write_predictions(out, done, run, 0.0, "coco", 1)
    coco = json.loads((out / "predictions.json").read_text())
    assert coco["attributes"][61] == {"id": 61, "name": "plain (pattern)"}
    assert [a["attribute_ids"] for a in coco["annotations"]] == [r["attribute_ids"] for r in done.rows]
    write_predictions(out, done, run, 0.0, "imaterialist-csv", 1)
    with (out / "submission.csv").open() as fh:
        class_ids = [r["ClassId"] for r in csv.DictReader(fh)]
    suffix = "_".join(str(a) for a in space.ids)
    assert any(c.endswith("_" + suffix) for c in class_ids)
    assert all(c.endswith("_" + suffix) == (int(c.split("_")[0]) in carrying) for c in class_ids)
    # The overlay writes the names under the label.
    mask = np.zeros((1, 64, 64), dtype=bool)
    mask[0, 20:50, 10:40] = True
    plain = PhotoResult(Path("x.jpg"), "x.jpg", 64, 64, [1], [0.9], mask, [], [[]])
    named = dataclasses.replace(plain, attributes=[["mini (length)", "stripe"]])
    photo = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    names, colors = {1: "shirt"}, {1: (200, 30, 30)}
    a = np.asarray(draw_overlay(photo, plain, names, colors))
    b = np.asarray(draw_overlay(photo, named, names, colors))
    assert (a != b).any(axis=2).sum() > 20
