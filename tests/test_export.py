"""`zoo export` and the runtimes: every registered adapter's network exported to ONNX and
TorchScript gives PyTorch's outputs, and with zoo's post-processing PyTorch's predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from zoo.adapter import available_adapters
from zoo.build import build_adapter
from zoo.errors import UserError
from zoo.export import (FORMATS, SUFFIXES, ExportedAdapter, example_images, export_network, flatten_raw,
                        load_network, read_metadata)
from zoo.runtimes import at_input_size, load_exported, runtime_points, time_runtimes

REPO = Path(__file__).resolve().parents[1]
SIZE = 96
NUM_CLASSES = 3
# Exported network outputs vs PyTorch's, per element: onnxruntime's fp32 kernels differ from
# ATen's by ~1e-5 on these outputs (measured max 1.2e-5); TorchScript replays ATen's ops (0).
ATOL = {"onnx": 1e-4, "torchscript": 1e-6}


def _tiny(name: str):
    torch.manual_seed(0)
    adapter = build_adapter(name, None, num_classes=NUM_CLASSES)
    return at_input_size(adapter, SIZE).eval()


def _assert_outputs_close(name: str, want: torch.Tensor, got: torch.Tensor, atol: float) -> None:
    """Element-wise within ``atol``; rows of a per-candidate output ``[P, ...]`` may come in
    another order (Mask R-CNN's proposals are sorted by RPN objectness, and candidates whose
    scores tie within float noise swap places): then every row must have a partner within
    ``atol`` (a one-to-one matching) and at most 5% of the rows may move."""
    from scipy.optimize import linear_sum_assignment

    assert got.shape == want.shape, name
    want, got = want.float(), got.float()
    if want.numel() == 0 or bool(torch.allclose(got, want, atol=atol, rtol=1e-4)):
        return
    assert want.dim() >= 2, f"{name}: max difference {float((got - want).abs().max()):.3g} > {atol}"
    a, b = want.flatten(1), got.flatten(1)
    cost = torch.cdist(a, b, p=float("inf"))
    rows, cols = linear_sum_assignment(cost.numpy())
    assert float(cost[rows, cols].max()) <= atol * (1 + float(a.abs().max())), f"{name}: rows differ"
    moved = float((torch.as_tensor(rows) != torch.as_tensor(cols)).float().mean())
    assert moved <= 0.05, f"{name}: {moved:.0%} of the rows are in another order"


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-instance IoU of bool masks ``[N, H, W]``."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", available_adapters())
def test_exported_network_gives_pytorch_outputs_and_predictions(name: str, fmt: str, tmp_path: Path) -> None:
    adapter = _tiny(name)
    path = tmp_path / f"{name}{SUFFIXES[fmt]}"
    meta = export_network(adapter, fmt, path, size=SIZE, batch_size=2)
    assert read_metadata(path)["outputs"] == meta["outputs"] and meta["input_shape"] == [2, 3, SIZE, SIZE]
    exported = ExportedAdapter(adapter, load_network(path, meta), meta)
    images = list(example_images(SIZE, 2, seed=5).unbind(0))  # not the photos it was traced on

    with torch.inference_mode():
        want, names, _ = flatten_raw(adapter.run_model(images))
        got = exported.network(torch.stack(images))
    assert len(got) == len(want)
    for n, a, b in zip(names, want, got):
        _assert_outputs_close(n, a, b, ATOL[fmt])

    expected, predicted = adapter.predict(images), exported.predict(images)
    assert sum(len(p) for p in expected) > 0, f"{name}: no instances to compare; the test would prove nothing"
    for e, p in zip(expected, predicted):
        assert torch.equal(p.labels, e.labels)
        torch.testing.assert_close(p.scores, e.scores, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(p.boxes, e.boxes, atol=1e-2, rtol=1e-4)
        assert p.masks.shape == e.masks.shape
        assert bool((_mask_iou(p.masks, e.masks) >= 0.99).all())


def test_wrong_input_shape_is_one_line_error(tmp_path: Path) -> None:
    unet = _tiny("unet")
    meta = export_network(unet, "torchscript", tmp_path / "u.torchscript", size=SIZE)
    exported = ExportedAdapter(unet, load_network(tmp_path / "u.torchscript", meta), meta)
    with pytest.raises(UserError, match=r"takes 1 image\(s\) \[3, 96, 96\]"):
        exported.predict([torch.rand(3, 64, 80)])


def test_onnx_export_without_the_extra_names_it(monkeypatch, tmp_path: Path) -> None:
    from zoo.cli import app

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    result = CliRunner().invoke(app, ["export", "yolact", "--size", "64", "--out", str(tmp_path / "y.onnx")])
    assert result.exit_code == 2
    assert "error: onnxruntime is not installed; install the export extra: pip install 'zoo[export]'" in result.stderr
    assert not (tmp_path / "y.onnx").exists()


def test_runtimes_timed_interleaved_with_their_runtime_named() -> None:
    from zoo.latency import make_photos

    yolact = _tiny("yolact")
    photos = make_photos(2, SIZE + 32)
    timed = time_runtimes({"yolact": yolact}, photos, ["torch", "onnxruntime", "torchscript"], size=SIZE,
                          iters=2, warmup=1)
    records = timed["yolact"]
    assert set(records) == {"torch", "onnxruntime", "torchscript"}
    assert {r["runtime"] for r in records.values()} == set(records)
    assert records["onnxruntime"]["order"] == ["yolact@torch", "yolact@onnxruntime", "yolact@torchscript"]
    assert all(r["iters"] == 2 and r["ms_median"] > 0 for r in records.values())
    # Same model, same photos: every runtime finds the same instances.
    assert len({r["instances_per_image"] for r in records.values()}) == 1


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step UNet run on 6 synthetic 64 px JPEGs, trained by the harness."""
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    root = tmp_path_factory.mktemp("exportrun")
    write_synthetic(root / "synth", n=6, size=64, seed=0)
    cfg = load_train_config("unet", overrides=[f"data.source={root / 'synth'}", "data.max_size=64",
                                               "stages=[{epochs: 1}]", "steps_per_epoch=1", "batch_size=2",
                                               "device=cpu", "eval_limit=1", "model.input_size=64"])
    return train(cfg, root / "run")


def _zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_exports_a_run_and_benches_the_file(trained_run: Path) -> None:
    from zoo.train.run import load_run

    out = trained_run.parent / "unet.onnx"
    proc = _zoo("export", str(trained_run), "--format", "onnx", "--out", str(out), cwd=trained_run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout and "input images 1x3x64x64" in proc.stdout
    meta = read_metadata(out)
    assert meta["source"]["run"] == str(trained_run.resolve()) and meta["check"]["max_abs_diff"] < ATOL["onnx"]

    # The file plus zoo's post-processing predicts what the run predicts, on a real photo of the run.
    run = load_run(trained_run)
    photo = run.dataset[run.split["val"][0]][0].as_subclass(torch.Tensor).float().div(255)
    exported = load_exported(out)
    for e, p in zip(run.adapter.predict([photo]), exported.predict([photo])):
        assert torch.equal(p.labels, e.labels) and bool((_mask_iou(p.masks, e.masks) >= 0.99).all())

    bench = trained_run.parent / "bench.json"
    proc = _zoo("bench", str(out), "--runtime", "onnxruntime", "--iters", "2", "--warmup", "1", "--out", str(bench),
                cwd=trained_run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(bench.read_text())
    assert record["runtime"] == "onnxruntime" and record["size"] == 64 and record["model_ms"] > 0
    from zoo.cli import app

    wrong = CliRunner().invoke(app, ["bench", str(out), "--runtime", "torchscript"])
    assert wrong.exit_code == 2 and wrong.stderr.strip().splitlines() == [
        f"error: {out}: exported as onnx; time it with --runtime onnxruntime"]


def test_chart_has_a_point_per_model_and_runtime() -> None:
    benches = [{"ms_median": 10.0, "runtimes": {"torch": {"ms_median": 11.0}, "onnxruntime": {"ms_median": 6.0}}},
               {"ms_median": 20.0}]
    names, ms, ap, owner = runtime_points(["unet", "yolact"], benches, [0.3, 0.4])
    assert names == ["unet", "unet (onnxruntime)", "yolact"]
    assert ms == [10.0, 6.0, 20.0] and ap == [0.3, 0.3, 0.4] and owner == [0, 0, 1]


def test_compare_adds_a_latency_column_per_runtime(trained_run: Path) -> None:
    out = trained_run.parent / "compare"
    from zoo.cli import app

    proc = CliRunner().invoke(app, ["compare", "--runs", str(trained_run), "--out", str(out), "--report", "md",
                                    "--set", "compare.runtimes=[torch, onnxruntime]", "--set", "compare.resamples=5",
                                    "--set", "compare.latency_iters=2", "--set", "compare.latency_warmup=1",
                                    "--set", "compare.gallery=1"])
    assert proc.exit_code == 0, proc.output[-3000:]
    (bench_path,) = (out / "models").glob("*/bench.json")
    bench = json.loads(bench_path.read_text())
    assert set(bench["runtimes"]) == {"torch", "onnxruntime"}
    assert bench["runtimes"]["onnxruntime"]["order"] == [f"{n}@{r}" for n in [bench_path.parent.name]
                                                        for r in ("torch", "onnxruntime")]
    header = next(line for line in (out / "report.md").read_text().splitlines() if "median on onnxruntime (ms)" in line)
    cells = [c.strip() for c in header.split("|")]
    column = cells.index("median on onnxruntime (ms)")
    table = (out / "report.md").read_text().split(header, 1)[1].splitlines()
    row = [c.strip() for c in table[2].split("|")]  # after the separator
    assert float(row[column]) == pytest.approx(bench["runtimes"]["onnxruntime"]["ms_median"], abs=0.051)

    wrong = CliRunner().invoke(app, ["compare", "--runs", str(trained_run), "--out", str(out / "x"),
                                     "--set", "compare.runtimes=[tensorrt]"])
    assert wrong.exit_code == 2 and "unknown runtime 'tensorrt'; choose one of torch, onnxruntime, torchscript" \
        in wrong.stderr
