"""The training harness: exact resume, kill -9 recovery, DDP on gloo, NaN guard, staged freezing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from zoo.adapter import available_adapters, get_adapter
from zoo.config import ConfigError
from zoo.train.api import load_train_config, train
from zoo.train.checkpoint import load_weights_only
from zoo.train.loop import TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
# The cheapest registered adapter on a CPU drives the harness tests; the harness never branches on it.
HARNESS_ADAPTER = "unet"


def tiny_overrides(data: Path, **extra: object) -> list[str]:
    base = {
        "data.source": str(data), "data.max_size": 64, "data.limit": 10, "batch_size": 2,
        "steps_per_epoch": 2, "eval_limit": 2, "seed": 0, "log_every": 1, "data.workers": 0,
        "stages": [{"name": "heads", "epochs": 1, "lr": 0.01, "layers": "heads", "augment": False},
                   {"name": "all", "epochs": 1, "lr": 0.005, "layers": "all", "augment": True}],
    }
    base.update(extra)
    return [f"{k}={json.dumps(v)}" for k, v in base.items()]


def tiny_cfg(data: Path, adapter: str = HARNESS_ADAPTER, **extra: object):
    return load_train_config(adapter, overrides=tiny_overrides(data, **extra))


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """In-process runs with ``threads`` set the process-wide torch thread count; put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_weights_only(run / "checkpoints" / f"{name}.pt")["model"]


def tiny_model(adapter: str) -> dict[str, object]:
    """Each adapter's input-size fields set to the data's 64 px, so that no model upsamples the tiny images."""
    return {f"model.{field}": 64 for field in get_adapter(adapter).input_size_fields}


# Adapters whose training steps draw from the global torch RNG, so that a resume that does not restore
# it trains another model: Mask R-CNN's RPN and ROI samplers draw every step; YOLACT draws only when an
# image has more positives than masks_to_train, which at 64 px needs a small cap. The UNet draws nothing.
RNG_DRAWING = ("maskrcnn", "yolact")
RESUME_MODEL_EXTRA: dict[str, dict[str, object]] = {"yolact": {"model.masks_to_train": 2}}
RESUME_CASES = [(adapter, stop_at) for adapter in available_adapters() for stop_at in (1, 3)]


def resume_cfg(data: Path, adapter: str):
    """The tiny two-stage run with batches from 2 DataLoader workers and every stage-2 sample augmented."""
    # One torch thread: two cores are shared with the two workers, and more busy threads than cores
    # make each step many times slower.
    extra = {"data.workers": 2, "augment.fraction": 1.0, "eval_limit": 1, "threads": 1, **tiny_model(adapter),
             **RESUME_MODEL_EXTRA.get(adapter, {})}
    cfg = tiny_cfg(data, adapter, **extra)
    assert cfg.data.workers == 2 and cfg.stages[1].augment and cfg.augment.fraction == 1.0
    return cfg


# stop_at 1: mid-epoch in stage 1; 3: mid-epoch in stage 2 (augmented). Either way the resumed loader
# skips one batch, so its workers get other batches than the uninterrupted run's did.
@pytest.mark.parametrize("adapter,stop_at", RESUME_CASES, ids=[f"{a}-{s}" for a, s in RESUME_CASES])
def test_interrupted_then_resumed_equals_uninterrupted(synth_dir, tmp_path, adapter, stop_at):
    cfg = resume_cfg(synth_dir, adapter)
    rng_states: list[bytes] = []  # the global torch RNG after each step of the uninterrupted run
    straight = train(cfg, tmp_path / "straight",
                     on_step=lambda step, _: rng_states.append(bytes(torch.get_rng_state().numpy())) or False)
    if adapter in RNG_DRAWING:
        assert len(set(rng_states)) == len(rng_states), f"{adapter} no longer draws every step"
    train(cfg, tmp_path / "resumed", on_step=lambda step, _: step == stop_at)
    state = load_weights_only(tmp_path / "resumed" / "checkpoints" / "last.pt")["state"]
    assert state["global_step"] == stop_at
    train(cfg, tmp_path / "resumed", resume=True)
    a, b = weights(straight), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed weights differ in {len(different)} tensors, e.g. {different[:5]}"
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["stopped_reason"] == "completed"
    steps = [line.split(",")[3] for line in (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()[1:]
             if line.startswith("step")]
    assert steps == ["1", "2", "3", "4"], "metrics.csv must hold each step once after a resume"


def test_staged_training_freezes_what_it_says(synth_dir, tmp_path):
    cfg = tiny_cfg(synth_dir, stages=[{"name": "heads", "epochs": 1, "lr": 0.05, "layers": "heads"}])
    from zoo.build import build_adapter

    torch.manual_seed(cfg.seed)
    fresh = build_adapter(cfg.adapter, num_classes=46).state_dict()
    run = train(cfg, tmp_path / "run")
    after = weights(run)
    from zoo.adapter import get_adapter

    adapter = get_adapter(cfg.adapter)(cfg.model, 46)
    names = {id(p): n for n, p in adapter.named_parameters()}
    groups = {g: [names[id(p)] for p in ps] for g, ps in adapter.param_groups().items()}
    frozen = [n for g, ns in groups.items() if g != "heads" for n in ns]
    assert frozen and all(torch.equal(fresh[n], after[n]) for n in frozen), "a frozen parameter changed"
    assert any(not torch.equal(fresh[n], after[n]) for n in groups["heads"]), "no head parameter learned"


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_good_checkpoint(synth_dir, tmp_path):
    cfg = tiny_cfg(synth_dir, checkpoint_every=1)

    def poison(step: int, adapter) -> bool:
        if step == 1:  # after the first step's checkpoint, make the next forward pass NaN
            with torch.no_grad():
                adapter.param_groups()["heads"][0].fill_(float("nan"))
        return False

    with pytest.raises(TrainingDiverged, match=r"not finite at step 2.*last\.pt"):
        train(cfg, tmp_path / "run", on_step=poison)
    ckpt = load_weights_only(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["state"]["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_unknown_config_key_is_an_error_with_a_hint(synth_dir):
    with pytest.raises(ConfigError, match=r"optim\.momentun.*did you mean 'momentum'"):
        load_train_config(HARNESS_ADAPTER, overrides=["optim.momentun=0.5"])


def _zoo(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "zoo.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_bad_config_key_is_one_line(synth_dir):
    p = _zoo("train", HARNESS_ADAPTER, "--set", "optim.momentun=0.5")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert "did you mean 'momentum'" in err and "Traceback" not in err


def step_rows(run: Path) -> list[str]:
    """The ``step`` rows of ``run/metrics.csv``, as written."""
    return [r for r in (run / "metrics.csv").read_text().splitlines()[1:] if r.startswith("step")]


def test_kill_minus_9_mid_epoch_then_resume_completes(synth_dir, tmp_path):
    # One thread each, so that the uninterrupted run trains beside the killed one on two cores.
    per_epoch = 6
    overrides = tiny_overrides(synth_dir, steps_per_epoch=per_epoch, checkpoint_every=1, eval_limit=1, threads=1)
    sets = [arg for item in overrides for arg in ("--set", item)]
    straight = tmp_path / "straight"
    uninterrupted = _zoo("train", HARNESS_ADAPTER, "--out", str(straight), *sets)
    run = tmp_path / "run"
    proc = _zoo("train", HARNESS_ADAPTER, "--out", str(run), *sets)
    deadline = time.time() + 240
    last = run / "checkpoints" / "last.pt"
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_weights_only(last)["state"]["global_step"] >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.communicate()[1][-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_weights_only(last)["state"]["global_step"]
    assert 2 <= killed_at < 12 and killed_at % per_epoch, f"the kill must land mid-epoch (checkpoint: step {killed_at})"
    written = step_rows(run)[:killed_at]  # the killed process's rows up to its last checkpoint
    assert len(written) == killed_at

    p = _zoo("train", HARNESS_ADAPTER, "--out", str(run), "--resume")
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-2000:]
    assert f"resumed at step {killed_at} " in " ".join(err.split()), err[-1000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 12 and summary["stopped_reason"] == "completed"
    rows = step_rows(run)
    assert [r.split(",")[3] for r in rows] == [str(i) for i in range(1, 13)], "each step once in metrics.csv"
    # The rows up to the checkpoint are still the killed process's own: a redone step would log
    # another images_per_s (a wall-clock rate), so the resumed process did not run them again.
    assert rows[:killed_at] == written, "the resumed process redid steps before its checkpoint"

    # Continuing from the mid-epoch checkpoint ends where an uninterrupted run ends.
    _, err = uninterrupted.communicate(timeout=400)
    assert uninterrupted.returncode == 0, err[-2000:]
    a, b = weights(straight), weights(run)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ from an uninterrupted run's in {len(different)} tensors: {different[:5]}"


def parameter_names(cfg) -> list[str]:
    """State-dict keys of ``cfg``'s model that are parameters (batch-norm statistics and counters left out)."""
    return [n for n, _ in get_adapter(cfg.adapter)(cfg.model, 46).named_parameters()]


def test_two_process_gloo_run_completes_and_only_rank0_writes(synth_dir, tmp_path):
    # Two ranks with batch 1 must train the very model one process trains with batch 1 and
    # accumulate 2: ranks take every second sample of the epoch order, so optimizer step s sees
    # samples 2s and 2s+1 either way, and DDP's mean of the ranks' gradients is the accumulated
    # gradient. Batch 1 because batch norm normalises over each rank's own batch (SyncBatchNorm
    # needs CUDA) and Dice is taken over the batch: with 2 per rank, rank 0 holds samples 4s and
    # 4s+2, which no one-process batch or micro-batch holds together.
    extra = {"eval_limit": 1, "batch_size": 1}
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
            "cli.py", "train", HARNESS_ADAPTER, "--out", str(run)]
    for item in tiny_overrides(synth_dir, **extra):
        args += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # The harness compares the ranks' parameters at every epoch end and fails the run when they differ.
    p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    files = sorted(str(f.relative_to(run)) for f in run.rglob("*") if f.is_file())
    assert "summary.json" in files and "checkpoints/last.pt" in files
    assert not [f for f in files if f.startswith(".") or "/." in f], f"stray temp files: {files}"
    steps = [r.split(",")[3] for r in step_rows(run)]
    assert steps == sorted(set(steps), key=int), f"a step row was written twice (two writers?): {steps}"
    assert p.stderr.count("validation:") == 2, "only rank 0 reports validation (one line per epoch)"

    # One thread, as each rank: CPU kernels sum in an order that depends on the thread count, and
    # AdamW's first steps turn that rounding into weight differences of about 1e-3. With one thread
    # both the parameters come out bitwise equal; the tolerance only leaves room for rounding.
    cfg = tiny_cfg(synth_dir, threads=1, **{"optim.accumulate": 2}, **extra)
    one = train(cfg, tmp_path / "one")
    a, b = weights(run), weights(one)
    # Batch-norm running statistics differ by design: DDP keeps rank 0's (one update per step from
    # its own sample), accumulation updates them once per micro-batch.
    for name in parameter_names(cfg):
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: 2 ranks differ from 1 process: {m}")


def test_augmentation_keeps_masks_and_boxes_aligned(synth_dir):
    from torchvision.ops import masks_to_boxes

    from zoo.config import AugmentConfig, DataConfig
    from zoo.data.dataset import open_dataset
    from zoo.transforms import augment_sample, build_augmentation

    ds = open_dataset(DataConfig(source=str(synth_dir), max_size=128, limit=4))
    geometric = AugmentConfig(blur_sigma=0.0, contrast=(1.0, 1.0), brightness=(1.0, 1.0), noise_std=0.0)
    pipeline = build_augmentation(geometric)
    torch.manual_seed(0)
    checked = 0
    for i in range(len(ds)):
        _, target = ds[i]
        if len(target["labels"]) == 0:
            continue
        # Paint each instance's pixels with a colour keyed to its index: after the warp, every
        # mask pixel must still carry its own instance's colour (image and masks moved together).
        m = target["masks"].bool()
        image = torch.zeros(3, *m.shape[-2:])
        k = int(m.shape[0])
        order = torch.arange(k, dtype=torch.float32) + 1
        for j in range(k):
            image[0][m[j]] = order[j] / (k + 1)
        for _ in range(3):
            aug_image, aug = augment_sample(image.clone(), target, pipeline)
            masks = aug["masks"].bool()
            assert len(aug["labels"]) == masks.shape[0] == aug["boxes"].shape[0] == len(aug["attributes"])
            if masks.shape[0]:
                assert masks.flatten(1).any(1).all(), "an empty instance survived"
                tight = masks_to_boxes(masks) + torch.tensor([0, 0, 1, 1])
                assert torch.allclose(aug["boxes"].as_subclass(torch.Tensor), tight)
                topmost = masks.float().sum(0) == 1  # pixels covered by exactly one instance
                inside = aug_image[0][topmost]
                assert (inside > 0).float().mean() > 0.9, "image and masks no longer overlap"
            checked += 1
    assert checked >= 3


def test_ctrl_c_saves_and_exits_cleanly(synth_dir, tmp_path):
    run = tmp_path / "run"
    args = ["train", HARNESS_ADAPTER, "--out", str(run)]
    for item in tiny_overrides(synth_dir, steps_per_epoch=200):
        args += ["--set", item]
    proc = _zoo(*args)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (run / "metrics.csv").exists():
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-800:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-1500:]  # 128 + SIGINT, as an interrupted program exits
    assert "Traceback" not in err
    assert f"--out {run} --resume" in " ".join(err.split())  # says how to continue
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_reason"] == "interrupted" and 1 <= summary["global_step"] < 200
    ckpt = load_weights_only(run / "checkpoints" / "last.pt")
    assert ckpt["state"]["global_step"] == summary["global_step"]


def test_pretrained_transfer_skips_mismatched_head_layers(synth_dir, tmp_path):
    from zoo.build import build_adapter

    other = build_adapter(HARNESS_ADAPTER, num_classes=3)  # a model trained on another class count
    weights_file = tmp_path / "other.pt"
    torch.save(other.state_dict(), weights_file)
    cfg = tiny_cfg(synth_dir, pretrained=str(weights_file),
                   stages=[{"name": "heads", "epochs": 1, "lr": 0.01, "layers": "heads"}], steps_per_epoch=1)
    run = train(cfg, tmp_path / "run")
    notes = json.loads((run / "notes.json").read_text())["pretrained"]
    assert notes["shape_mismatch"], "the class-specific layers must be reported as skipped"
    assert notes["loaded"] > 0
    after = weights(run)
    mismatched = {entry.split()[0] for entry in notes["shape_mismatch"]}
    same = [k for k, v in other.state_dict().items() if k not in mismatched and v.is_floating_point()
            and "running" not in k and "num_batches" not in k]
    # The first tensors are the backbone's, frozen in a heads stage: still exactly the file's.
    assert all(torch.equal(after[k], other.state_dict()[k]) for k in same[:20] if k in after)


def test_metrics_csv_names_each_loss_once(tmp_path: Path) -> None:
    import csv

    from zoo.train.logger import MetricsLog, loss_column

    assert loss_column("loss_mask") == "loss_mask" and loss_column("mask") == "loss_mask"
    log = MetricsLog(tmp_path / "metrics.csv", ["loss_mask", "dice"], resume_step=None, tensorboard=False)
    log.write({"kind": "step", "step": 1, "loss": 1.0, "loss_mask": 0.5, "loss_dice": 0.5})
    with (tmp_path / "metrics.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert "loss_mask" in header and "loss_dice" in header
    assert not any(name.startswith("loss_loss") for name in header)
