"""Mask R-CNN really learns: the CPU preset, trained from scratch by the harness on a few synthetic
images, finds their garments again (mask AP50 >= 0.5 on the images it trained on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zoo.metrics.evaluate import evaluate_adapter
from zoo.train.api import load_train_config, train
from zoo.train.run import load_run

# The preset's network, optimizer and schedule shape unchanged; the dataset is shrunk to 10 images
# (8 train, 2 validation) and the run to 5 epochs of 50 steps (250 steps of 2 images) so that the
# test fits CI's budget (a few minutes on 2 cores).
IMAGES = 10
EPOCHS = 5
AP50_THRESHOLD = 0.5
# The attribute head stays off: this test measures the detector as it was measured before it existed.
OVERRIDES = {"data.limit": IMAGES, "data.val_fraction": 0.2, "steps_per_epoch": 50, "eval_limit": 2, "seed": 0,
             "model.attributes": "off"}


@pytest.mark.slow
def test_cpu_preset_reaches_ap50_on_its_training_images(tmp_path: Path, recipe_overrides: list[str]) -> None:
    import dataclasses

    from zoo.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "synth", n=IMAGES, size=128, seed=0)
    overrides = [f"data.source={json.dumps(str(data))}"] + [f"{k}={json.dumps(v)}" for k, v in OVERRIDES.items()]
    cfg = load_train_config("maskrcnn", overrides=overrides + recipe_overrides)
    cfg = dataclasses.replace(cfg, stages=tuple(dataclasses.replace(s, epochs=EPOCHS) for s in cfg.stages))
    run = load_run(train(cfg, tmp_path / "run"), which="last")
    assert len(run.split["train"]) == 8
    torch.manual_seed(0)
    metrics = evaluate_adapter(run.adapter, run.dataset, run.split["train"], batch_size=2)
    summary = json.loads((run.path / "summary.json").read_text())
    report = (f"segm AP50={metrics['segm']['AP50']:.3f} AP={metrics['segm']['AP']:.3f} "
              f"bbox AP50={metrics['bbox']['AP50']:.3f} final loss={summary['final_loss']} "
              f"steps={summary['global_step']}")
    print(report)
    print(f"learning-figure: maskrcnn segm_AP50={metrics['segm']['AP50']:.4f} threshold={AP50_THRESHOLD}")
    assert summary["global_step"] == EPOCHS * OVERRIDES["steps_per_epoch"] * len(cfg.stages)
    assert metrics["segm"]["AP50"] >= AP50_THRESHOLD, report
