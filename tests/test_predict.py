"""`zoo predict` on unlabeled photos: overlays, COCO file, counts and co-occurrence."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from faster_coco_eval.core import mask as mask_utils

import adapters  # noqa: F401  (fills the registry)
from zoo.errors import UserError
from zoo.predict import count_tables, find_images

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
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
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
