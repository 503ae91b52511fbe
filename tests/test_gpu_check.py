"""benchmarks/gpu_check.py in its CPU quick mode: every step of the GPU check runs and is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_mode_runs_every_step(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", ZOO_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path / "check")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert result["failed"] == [] and result["not_run"] == []
    bench = {(r["adapter"], r["size"], r["batch_size"], r["amp"]): r for r in result["bench"]}
    assert set(bench) == {(m, 64, b, "none") for m in ("maskrcnn", "yolact", "unet") for b in (1, 2)}
    assert all(r["images_per_s"] > 0 and r["backbone"] == "resnet18" for r in bench.values())
    assert [(r["adapter"], r["size"], r["workers"]) for r in result["train"]] == [
        ("maskrcnn", 64, 1), ("yolact", 64, 1), ("unet", 64, 1)]
    assert all(r["images_per_s"] > 0 for r in result["train"])
    assert (tmp_path / "check" / "train-unet" / "checkpoints" / "last.pt").is_file()
    for row in result["ratio"]:
        key = (64, row["batch_size"], "none")
        assert row["ratio"] == pytest.approx(bench[("yolact", *key)]["images_per_s"]
                                             / bench[("maskrcnn", *key)]["images_per_s"])
    assert len(result["ratio"]) == 2
    table = (tmp_path / "check" / "gpu_check.md").read_text()
    assert "| yolact | resnet18 | 64 | 2 | none |" in table and "| YOLACT / Mask R-CNN |" in table


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "error: --device cuda, but torch sees no CUDA device" in proc.stderr
