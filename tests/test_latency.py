"""The latency protocol: phase attribution, bookkeeping, every registered adapter, `zoo bench`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.cli import app
from zoo.adapter import Adapter, available_adapters
from zoo.build import build_adapter
from zoo.errors import UserError
from zoo.bench import bench_settings, load_target
from zoo.latency import (dataset_photos, fit_photos, interleaved_schedule, make_photos, measure_latency, preprocess,
                         quantile_interval, time_interleaved)
from zoo.types import InstancePred

KEYS = {"images_per_s", "ms_median", "ms_p90", "ms_mean", "preprocess_ms", "model_ms", "postprocess_ms",
        "peak_mem_mb", "peak_mem_kind", "device", "device_name", "threads", "size", "batch_size", "params",
        "backbone", "adapter", "amp", "iters", "warmup"}


class SlowPaste(Adapter):
    """A 1x1 conv whose postprocess waits 30 ms per batch: the wait must land in postprocess_ms."""

    config_cls = dict
    name = "slow-paste"

    def __init__(self) -> None:
        super().__init__({"backbone": "conv1x1"}, num_classes=2)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        return {"zero": self.conv.weight.sum() * 0}

    def run_model(self, images: list[Tensor]) -> Tensor:
        return self.conv(torch.stack(images))

    def postprocess(self, raw: Tensor, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        time.sleep(0.03)
        return [InstancePred.empty(h, w) for h, w in sizes]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"heads": list(self.parameters())}


def test_photos_and_preprocess_follow_the_user_path() -> None:
    photos = make_photos(2, 48)
    assert photos[0].shape == (48, 48, 3) and photos[0].dtype.name == "uint8"
    images = preprocess(photos, torch.device("cpu"))
    assert images[0].shape == (3, 48, 48) and images[0].dtype == torch.float32
    # Every pixel is the photo's uint8 value / 255, channels first (not only in [0, 1]).
    for image, photo in zip(images, photos):
        assert torch.equal(image, torch.from_numpy(photo).permute(2, 0, 1).float() / 255)
    assert float(images[0].max()) > 0.5 > float(images[0].min())  # a photo, not a constant field


def test_phases_are_timed_apart_and_bookkept() -> None:
    before = torch.get_num_threads()
    r = measure_latency(SlowPaste(), size=32, batch_size=2, iters=3, warmup=1, threads=1)
    assert KEYS <= set(r)
    assert r["threads"] == 1 and torch.get_num_threads() == before
    assert r["postprocess_ms"] >= 14.0  # 30 ms per batch of 2
    assert r["model_ms"] < r["postprocess_ms"]
    assert r["ms_median"] == pytest.approx(r["preprocess_ms"] + r["model_ms"] + r["postprocess_ms"], rel=0.3)
    assert r["ms_p90"] >= r["ms_median"] > 0
    assert r["images_per_s"] == pytest.approx(1000.0 / r["ms_mean"], rel=1e-6)
    assert r["params"] == 3 * 2 + 2 and r["backbone"] is None and r["batch_size"] == 2
    assert r["peak_mem_mb"] > 10 and r["device"] == "cpu"


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="amp"):
        measure_latency(SlowPaste(), amp="int8", size=16, iters=1)
    if torch.cuda.is_available():
        r = measure_latency(SlowPaste(), device="cuda", amp="bf16", size=32, iters=2, warmup=1)
        assert r["peak_mem_kind"] == "cuda_max_allocated" and r["device"] == "cuda"
    else:
        with pytest.raises(UserError, match="CUDA is not available"):
            measure_latency(SlowPaste(), device="cuda", size=16, iters=1)
        with pytest.raises(UserError, match="CUDA only"):
            measure_latency(SlowPaste(), amp="bf16", size=16, iters=1)
    with pytest.raises(UserError, match="iters"):
        measure_latency(SlowPaste(), size=16, iters=0)


def test_bench_settings_cover_batch_one_and_n_fp32_and_amp() -> None:
    assert bench_settings(1, "none") == [(1, "none")]
    assert bench_settings(4, "bf16") == [(1, "none"), (4, "none"), (1, "bf16"), (4, "bf16")]


@pytest.mark.parametrize("name", available_adapters())
def test_every_adapter_is_timed(name: str) -> None:
    torch.manual_seed(0)
    adapter = build_adapter(name)
    r = measure_latency(adapter, size=64, batch_size=2, iters=2, warmup=1, threads=2)
    assert KEYS <= set(r)
    assert r["adapter"] == name and r["params"] == sum(p.numel() for p in adapter.parameters())
    assert isinstance(r["backbone"], str) and r["size"] == 64
    assert min(r["preprocess_ms"], r["model_ms"], r["postprocess_ms"]) > 0
    # With two timed iterations every median is a mean, so the per-image phases add up to the
    # per-image total exactly, and throughput is its inverse: nothing is lost or counted twice.
    phases = r["preprocess_ms"] + r["model_ms"] + r["postprocess_ms"]
    assert r["ms_median"] == pytest.approx(phases, rel=1e-9)
    assert r["ms_mean"] == pytest.approx(r["ms_median"], rel=1e-9)
    assert r["images_per_s"] == pytest.approx(1000.0 / r["ms_mean"], rel=1e-9)
    assert r["ms_p90"] >= r["ms_median"]
    assert not adapter.training


@pytest.mark.parametrize("name", available_adapters()[:1])
def test_bench_cli_subprocess_writes_json(name: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "bench", name, "--size", "64", "--iters", "2",
                           "--warmup", "1", "--batch-size", "2", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "img/s" in proc.stdout
    r = json.loads(out.read_text())
    assert {"images_per_s", "ms_median", "ms_p90", "peak_mem_mb", "device", "backbone", "size", "batch_size"} <= set(r)
    assert r["batch_size"] == 2 and r["threads"] == 1
    assert [(s["batch_size"], s["amp"]) for s in r["settings"]] == [(1, "none"), (2, "none")]


def test_bench_targets_and_backbone_override() -> None:
    bad = CliRunner().invoke(app, ["bench", "no-such-model", "--size", "32", "--iters", "1"])
    assert bad.exit_code == 2 and "registered:" in bad.stderr
    if "maskrcnn" in available_adapters():
        assert load_target("maskrcnn", backbone="resnet34").cfg.backbone == "resnet34"
    if "unet" in available_adapters():  # smp names its backbone "encoder"
        assert load_target("unet", backbone="resnet34").cfg.encoder == "resnet34"


def test_bench_a_trained_run_folder(tmp_path: Path) -> None:
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    write_synthetic(tmp_path / "synth", n=4, size=64, seed=0)
    cfg = load_train_config("unet", overrides=[f"data.source={tmp_path / 'synth'}", "data.max_size=64",
                                               "stages=[{epochs: 1}]", "steps_per_epoch=1", "batch_size=2",
                                               "device=cpu", "eval_limit=1"])
    run = train(cfg, tmp_path / "run")
    result = CliRunner().invoke(app, ["bench", str(run), "--size", "64", "--iters", "2", "--warmup", "1",
                                      "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output[-2000:]
    assert json.loads((tmp_path / "b.json").read_text())["adapter"] == "unet"
    with pytest.raises(UserError, match="backbone applies to adapter names"):
        load_target(str(run), backbone="resnet34")


# ---------------------------------------------------------------- several models, interleaved
class SizeRecorder(SlowPaste):
    """SlowPaste that records the image sizes each postprocess call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[tuple[int, int]]] = []

    def postprocess(self, raw: Tensor, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        self.seen.append(list(sizes))
        return super().postprocess(raw, sizes)

    def run_model(self, images: list[Tensor]) -> list[Tensor]:
        return [self.conv(im[None]) for im in images]  # photos keep their own sizes


def test_schedule_is_round_robin_and_rotates_the_first_model() -> None:
    assert interleaved_schedule(["a", "b"], 3, 2) == list("aabbbbaaaabb")  # A B, B A, A B
    assert interleaved_schedule(["a", "b", "c"], 3, 1) == list("abcbcacab")


def test_quantile_intervals_are_the_order_statistic_ranks() -> None:
    x = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))  # x_(k) = k
    assert quantile_interval(x, 0.5, 0.95) == (40.0, 61.0)  # the textbook ranks for n = 100
    assert quantile_interval(x, 0.9, 0.95) == (84.0, 96.0)
    assert quantile_interval(x[:5], 0.9, 0.95) == (float(np.sort(x[:5])[2]), float(x[:5].max()))  # clipped


def test_interleaved_models_see_the_same_photos_and_post_is_attributed() -> None:
    photos = [make_photos(1, 40, seed=i)[0][:, : 20 + 10 * i] for i in range(3)]  # 40x20, 40x30, 40x40
    a, b = SizeRecorder(), SizeRecorder()
    r = time_interleaved({"a": a, "b": b}, photos, size=32, iters=4, warmup=1, block=2, batch_size=2, threads=1)
    assert [len(s) for s in (a.seen, b.seen)] == [5, 5]  # 1 warm-up + 4 timed, batches of 2
    assert a.seen == b.seen and a.seen[1:3] == [[(32, 16), (32, 24)], [(32, 32), (32, 16)]]  # cycling
    for rec in r.values():
        assert rec["postprocess_ms"] >= 14.0 > rec["model_ms"]  # 30 ms per batch of 2
        assert rec["iters"] == 4 and rec["block"] == 2 and rec["order"] == ["a", "b"] and rec["photos"] == 3


@pytest.mark.parametrize("block", [1, 2])
def test_every_registered_adapter_is_timed_interleaved_on_dataset_photos(synth_dir: Path, block: int) -> None:
    from zoo.config import DataConfig
    from zoo.data.dataset import open_dataset

    dataset = open_dataset(DataConfig(source=str(synth_dir), max_size=64))
    photos = dataset_photos(dataset, list(range(len(dataset))), n=3)
    assert len(photos) == 3 and photos[0].dtype == np.uint8 and photos[0].shape[2] == 3
    torch.manual_seed(0)
    names = available_adapters()
    models = {n: build_adapter(n) for n in names}
    r = time_interleaved(models, photos, size=64, iters=3, warmup=1, block=block, threads=1)
    assert list(r) == names
    starts = sorted((t, n) for n in names for t in r[n]["started_s"])
    rounds = -(-3 // block)
    assert [n for _, n in starts] == interleaved_schedule(names, rounds, block)  # the order it really ran
    for name, rec in r.items():
        assert KEYS <= set(rec) and rec["protocol"] == "interleaved" and rec["adapter"] == name
        samples = np.array(rec["samples_ms"])
        assert samples.shape == (rounds * block, 3) and (samples > 0).all()
        total = samples.sum(axis=1)  # each iteration: pre + network + post is its total
        assert rec["ms_median"] == pytest.approx(float(np.median(total)), abs=1e-3)
        assert rec["ms_mean"] == pytest.approx(float(samples.mean(axis=0).sum()), abs=1e-3)
        lo, hi = rec["ms_median_ci"]
        assert lo <= rec["ms_median"] <= hi and rec["ms_p90_ci"][0] <= rec["ms_p90"] <= rec["ms_p90_ci"][1]
        assert rec["size"] == 64 and rec["peak_mem_kind"] == "rss_peak_all_models_loaded"


def test_fit_photos_keeps_the_aspect_ratio() -> None:
    photo = make_photos(1, 80)[0][:40]  # 40 x 80
    assert fit_photos([photo], 64)[0].shape == (32, 64, 3)
    assert fit_photos([photo], 80)[0] is photo
    with pytest.raises(UserError, match="photos"):
        time_interleaved({"a": SlowPaste()}, [], size=32)


def test_compare_times_trained_runs_interleaved_on_their_validation_photos(tmp_path: Path) -> None:
    from rich.console import Console

    from zoo.compare import CompareSettings, load_runs, time_models
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    write_synthetic(tmp_path / "synth", n=6, size=64, seed=0)
    runs, evals = {}, {}
    for name in ("unet", "maskrcnn"):
        cfg = load_train_config(name, overrides=[f"data.source={tmp_path / 'synth'}", "data.max_size=64",
                                                 "stages=[{epochs: 1}]", "steps_per_epoch=1", "batch_size=2",
                                                 "device=cpu", "eval_limit=1"])
        runs[name] = train(cfg, tmp_path / name)
        evals[name] = tmp_path / "eval" / name
        evals[name].mkdir(parents=True)
    settings = CompareSettings(latency_iters=2, latency_warmup=1)
    benches = time_models(load_runs(runs, None, Console(quiet=True)), evals, [0, 1, 2], settings, Console(quiet=True),
                          photos=2)
    for name in runs:
        written = json.loads((evals[name] / "bench.json").read_text())
        assert written == json.loads(json.dumps(benches[name]))
        assert written["protocol"] == "interleaved" and written["order"] == ["unet", "maskrcnn"]
        assert written["photos"] == 2 and written["size"] == 64 and written["iters"] == 2
