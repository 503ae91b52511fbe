"""The YOLACT CPU preset really learns: trained through the harness on a few synthetic images, it
segments those images with mask AP50 >= 0.5 (COCO-style, averaged over the categories present)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from zoo.data.synth import write_synthetic
from zoo.metrics.evaluate import evaluate_adapter
from zoo.train.api import load_train_config, train
from zoo.train.run import load_run

IMAGES = 5  # val_fraction 0.2 leaves 4 training images
IMAGE_SIZE = 128  # synthetic image side = the preset's input size
EPOCHS, STEPS_PER_EPOCH = 2, 100  # 200 optimizer steps of the preset's batch size (2 images)
AP50_THRESHOLD = 0.5


@pytest.mark.slow
def test_cpu_preset_reaches_mask_ap50_on_its_training_images(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "synth", n=IMAGES, size=IMAGE_SIZE, seed=0)
    cfg = load_train_config("yolact", preset="cpu", overrides=[
        f"data.source={data}", f"data.max_size={IMAGE_SIZE}", f"steps_per_epoch={STEPS_PER_EPOCH}",
        "eval_limit=1", "device=cpu", "model.attributes=\"off\""])  # the detector alone, as measured before
    cfg = dataclasses.replace(cfg, stages=tuple(dataclasses.replace(s, epochs=EPOCHS) for s in cfg.stages))
    started = time.perf_counter()
    run = load_run(train(cfg, tmp_path / "run"), which="last")
    train_s = time.perf_counter() - started
    assert len(run.split["train"]) == 4

    metrics = evaluate_adapter(run.adapter, run.dataset, run.split["train"])
    per_category = {name: round(row["AP50"], 2) for name, row in metrics["per_category"].items()}
    print(f"yolact: {train_s:.0f} s training, segm AP50 {metrics['segm']['AP50']:.3f}, "
          f"bbox AP50 {metrics['bbox']['AP50']:.3f}, per category {per_category}")
    for iou_type in ("bbox", "segm"):
        print(f"learning-figure: yolact {iou_type}_AP50={metrics[iou_type]['AP50']:.4f} threshold={AP50_THRESHOLD}")
    assert metrics["bbox"]["AP50"] >= AP50_THRESHOLD
    assert metrics["segm"]["AP50"] >= AP50_THRESHOLD
