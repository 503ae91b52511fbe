"""A trained run travels: its checkpoint holds what predicting needs, so the run folder (or its
best.pt alone) works after the folder is moved and the training data is deleted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.errors import UserError
from zoo.train.checkpoint import load_weights_only
from zoo.train.run import load_run

REPO = Path(__file__).resolve().parents[1]


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A maskrcnn run trained 2 steps on a copy of a tiny dataset, then moved; the data deleted."""
    from zoo.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("portable")
    data = write_synthetic(root / "data", n=6, size=64, seed=3)
    proc = zoo("train", "maskrcnn", "--data", str(data), "--out", str(root / "run"), "--steps-per-epoch", "2",
               "--epochs", "1", "--device", "cpu", "--set", "eval_limit=2", "--set", "data.max_size=64", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    categories = json.loads((data / "label_descriptions.json").read_text())["categories"]
    shutil.rmtree(data)
    target = root / "elsewhere" / "run-moved"
    target.parent.mkdir()
    shutil.move(str(root / "run"), target)
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (64, 64), "b.jpg": (48, 80)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(photos / name, quality=90)
    return {"run": target, "photos": photos, "root": root, "categories": categories, "data": data}


def test_checkpoint_holds_what_predicting_needs_and_loads_weights_only(moved: dict) -> None:
    ckpt = load_weights_only(moved["run"] / "checkpoints" / "best.pt")  # weights_only=True: plain containers
    meta = ckpt["meta"]
    import zoo

    assert meta["zoo_version"] == zoo.__version__ and meta["adapter"] == "maskrcnn"
    assert meta["config"]["model"]["backbone"] and meta["config"]["data"]["max_size"] == 64
    source = {c["id"]: c for c in moved["categories"]}
    assert len(meta["categories"]) == len(source)
    for cat in meta["categories"]:
        assert cat["name"] == source[cat["id"]]["name"] and cat["supercategory"] == source[cat["id"]]["supercategory"]
    assert meta["input"]["max_size"] == 64 and meta["input"]["resize"] == "max_side"
    split = json.loads((moved["run"] / "split.json").read_text())
    assert meta["split"]["train"] == split["train"] and meta["split"]["val"] == split["val"]
    assert len(meta["split"]["train_ids_sha256"]) == 64 and meta["split"]["images"] == 6


@pytest.mark.parametrize("which", ["run folder", "best.pt"])
def test_predict_and_bench_on_the_moved_run_without_its_data(moved: dict, which: str, tmp_path: Path) -> None:
    assert not moved["data"].exists()
    target = moved["run"] if which == "run folder" else tmp_path / "best.pt"
    if which == "best.pt":
        shutil.copy(moved["run"] / "checkpoints" / "best.pt", target)  # the file alone, no run folder
    out = tmp_path / "pred"
    proc = zoo("predict", str(target), str(moved["photos"]), "--out", str(out), "--score-threshold", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    coco = json.loads((out / "predictions.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == ["a.jpg", "b.jpg"]
    names = {c["id"]: c["name"] for c in moved["categories"]}
    assert {c["id"]: c["name"] for c in coco["categories"]} == names  # from the checkpoint, not the data
    bench = tmp_path / "bench.json"
    proc = zoo("bench", str(target), "--size", "64", "--iters", "2", "--warmup", "1", "--out", str(bench), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(bench.read_text())


def test_load_run_reads_no_dataset_and_eval_asks_for_one(moved: dict) -> None:
    loaded = load_run(moved["run"])
    by_id = sorted(moved["categories"], key=lambda c: c["id"])
    assert [c.name for c in loaded.categories] == [c["name"] for c in by_id]
    reference = torch.load(moved["run"] / "checkpoints" / "best.pt", weights_only=True)["model"]
    for key, value in loaded.adapter.state_dict().items():
        assert torch.equal(value, reference[key]), key
    with pytest.raises(UserError, match="no such file|not found|does not exist|missing"):
        loaded.dataset  # ground truth needs the (deleted) dataset


def test_eval_refuses_a_dataset_whose_categories_differ(moved: dict, tmp_path: Path) -> None:
    from zoo.data.synth import write_synthetic

    other = write_synthetic(tmp_path / "other", n=4, size=64, seed=5)
    labels = json.loads((other / "label_descriptions.json").read_text())
    labels["categories"][2]["name"] = "cape"  # same ids, one name differs
    (other / "label_descriptions.json").write_text(json.dumps(labels))
    proc = zoo("eval", str(moved["run"] / "checkpoints" / "best.pt"), "--data", str(other), cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "'cape'" in lines[0] and f"id {labels['categories'][2]['id']}" in lines[0] and "Traceback" not in proc.stderr
