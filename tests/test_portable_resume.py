"""`zoo train --resume` continues a run with a changed plan when the change can apply: more
epochs, an added stage; and refuses, in one line, what cannot (model, data, another adapter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--steps-per-epoch", "2", "--device", "cpu", "--set", "eval_limit=2", "--set", "data.max_size=64",
          "--set", "data.synth_n=6", "--set", "data.synth_size=64"]


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unet run of 1 epoch (2 steps), finished."""
    root = tmp_path_factory.mktemp("resume")
    proc = zoo("train", "unet", "--out", str(root / "run"), "--epochs", "1", *COMMON, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


@pytest.mark.slow
def test_resume_with_more_epochs_equals_an_uninterrupted_run(finished: Path, tmp_path: Path) -> None:
    before = weights(finished)
    proc = zoo("train", "unet", "--out", str(finished), "--resume", "--epochs", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stages.0.epochs 1 -> 3" in proc.stderr
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["global_epoch"] == 3 and summary["global_step"] == 6  # 2 more epochs of 2 steps
    history = json.loads((finished / "config_history.json").read_text())
    assert history[-1]["changes"] == {"stages.0.epochs": {"from": 1, "to": 3}}
    assert history[-1]["resumed_at_step"] == 2 and history[-1]["epochs_done"] == 1
    assert yaml.safe_load((finished / "config.yaml").read_text())["stages"][0]["epochs"] == 3
    meta = torch.load(finished / "checkpoints" / "last.pt", weights_only=True)["meta"]
    assert meta["config"]["stages"][0]["epochs"] == 3  # the checkpoint carries the plan it was trained with

    straight = tmp_path / "straight"
    proc = zoo("train", "unet", "--out", str(straight), "--epochs", "3", *COMMON, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extended, reference = weights(finished), weights(straight)
    assert any(not torch.equal(before[k], extended[k]) for k in before)  # it did train on
    for key, value in reference.items():
        assert torch.equal(extended[key], value), key


def one_line_error(args: list[str]) -> str:
    from zoo.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--set", "model.encoder=resnet34"], "cannot change model.encoder ('resnet18' -> 'resnet34')"),
    (["--set", "data.synth_n=8"], "cannot change data.synth_n (6 -> 8)"),
    (["--batch-size", "4"], "cannot change batch_size (2 -> 4)"),
    (["--epochs", "0"], "stages.0.epochs"),
    (["--set", "stages.0.lr=0.5"], "cannot change stages.0.lr of the stage the run is in"),
])
def test_resume_refuses_what_cannot_apply(finished: Path, args: list[str], expected: str) -> None:
    before = (finished / "config.yaml").read_text()
    line = one_line_error(["train", "unet", "--out", str(finished), "--resume", *args])
    assert expected in line, line
    assert (finished / "config.yaml").read_text() == before  # nothing recorded


def test_resume_of_another_adapters_run_names_it(finished: Path) -> None:
    line = one_line_error(["train", "yolact", "--out", str(finished), "--resume"])
    assert "this run is a unet run" in line and f"zoo train unet --out {finished} --resume" in line


def test_resume_with_an_added_stage_trains_it(finished: Path) -> None:
    from zoo.cli import app

    stages = yaml.safe_load((finished / "config.yaml").read_text())["stages"]
    done = json.loads((finished / "summary.json").read_text())["global_step"]
    added = [*stages, {"name": "heads", "epochs": 1, "lr": 0.001, "layers": "heads", "augment": False}]
    result = CliRunner().invoke(app, ["train", "unet", "--out", str(finished), "--resume",
                                      "--set", f"stages={json.dumps(added)}"])
    assert result.exit_code == 0, result.output
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["global_step"] == done + 2 and summary["stage"] == 2
    history = json.loads((finished / "config_history.json").read_text())
    assert "stages.1.name" in history[-1]["changes"] and history[-1]["changes"]["stages.1.name"]["from"] is None
