"""The one latency protocol every model is timed with (`zoo bench`, the comparison report).

:func:`measure_latency` times one model on synthetic photos (`zoo bench`); :func:`time_interleaved`
times several models interleaved on the same real photos, for a comparison.

Per iteration, a batch of B photos goes through what a user's photo goes through, each phase
timed apart (with ``torch.cuda.synchronize()`` at each boundary on CUDA, so GPU work is counted
where it happens):

1. **preprocess**: uint8 ``[H, W, 3]`` numpy photo -> float32 ``[3, H, W]`` in ``[0, 1]`` on the device;
2. **model**: ``adapter.run_model(images)``: resizing, normalising, the network up to its dense
   per-candidate outputs;
3. **postprocess**: ``adapter.postprocess(raw, sizes)``: decoding, score filtering, NMS,
   per-detection mask assembly, mask pasting to image size, thresholding.

``warmup`` iterations run first (cuDNN autotuning, allocator growth, lazy init) and are not
counted. Reported: median and p90 milliseconds *per image* (iteration time / B), images/s
(B x iterations / total time), per-phase medians, peak memory (CUDA: ``max_memory_allocated``;
CPU: the process's peak resident set during the timed iterations), device name, torch threads
(set explicitly on CPU), input size, parameter count, backbone.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from zoo.adapter import Adapter
from zoo.device import resolve_device
from zoo.errors import UserError

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_threads() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def backbone_of(adapter: Adapter) -> str | None:
    """The value of the adapter's declared ``backbone_option`` (None when it declares none)."""
    if adapter.backbone_option is None:
        return None
    value = getattr(adapter.cfg, adapter.backbone_option, None)
    return None if value is None else str(value)


def make_photos(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 ``[size, size, 3]`` photos (what a decoded JPEG is): smooth colour fields plus
    noise, so that models with data-dependent postprocessing see some structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    photos = []
    for _ in range(n):
        base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + c) for c in range(3)], axis=-1)
        photo = 127 + 80 * base + rng.normal(0, 20, size=(size, size, 3)) + 40 * (yy[..., None] > 0.5)
        photos.append(np.clip(photo, 0, 255).astype(np.uint8))
    return photos


def preprocess(photos: list[np.ndarray], device: torch.device) -> list[Tensor]:
    """uint8 ``[H, W, 3]`` photos -> float32 ``[3, H, W]`` in ``[0, 1]`` on ``device``."""
    # The uint8 copy is what crosses the bus: a quarter of the float32 bytes.
    return [torch.from_numpy(p).to(device).permute(2, 0, 1).float().div_(255.0) for p in photos]


class _PeakMemory:
    """Peak memory of the timed region: CUDA allocator peak, or the process's resident-set peak."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.kind = "cuda_max_allocated"
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            return
        # Linux lets a process reset its own VmHWM; elsewhere the lifetime peak is all there is.
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.kind = "rss_peak"
        except OSError:
            self.kind = "rss_peak_process_lifetime"

    def read_mb(self) -> float:
        if self.dev.type == "cuda":
            return torch.cuda.max_memory_allocated(self.dev) / 2**20
        if self.kind == "rss_peak":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _one_iteration(adapter: Adapter, photos: list[np.ndarray], dev: torch.device,
                   amp: str) -> tuple[float, float, float, int]:
    """Seconds of (preprocess, model, postprocess) for one batch, and the instances predicted."""
    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    dtype = AMP_DTYPES[amp]
    autocast = torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    sync()
    t0 = time.perf_counter()
    images = preprocess(photos, dev)
    sync()
    t1 = time.perf_counter()
    with autocast:
        raw = adapter.run_model(images)
        sync()
        t2 = time.perf_counter()
        preds = adapter.postprocess(raw, [(p.shape[0], p.shape[1]) for p in photos])
        sync()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, sum(len(p) for p in preds)


def measure_latency(adapter: Adapter, *, device: str = "cpu", size: int = 512, batch_size: int = 1,
                    iters: int = 20, warmup: int = 3, amp: str = "none",
                    threads: int | None = None) -> dict[str, Any]:
    """Time ``adapter`` on square ``size`` x ``size`` photos with the protocol above.

    The adapter is left on ``device`` in eval mode; torch's CPU thread count is restored after.
    Returns a JSON-ready dict: ``images_per_s``, ``ms_median``, ``ms_p90``, ``ms_mean``,
    ``preprocess_ms``, ``model_ms``, ``postprocess_ms`` (medians per image), ``peak_mem_mb``,
    ``peak_mem_kind``, ``device``, ``device_name``, ``threads``, ``size``, ``batch_size``,
    ``iters``, ``warmup``, ``amp``, ``params``, ``backbone``, ``adapter``, ``runtime`` (``torch``,
    or the runtime of an exported network, :mod:`zoo.runtimes`), ``instances_per_image``.
    """
    if amp not in AMP_DTYPES:
        raise UserError(f"unknown amp {amp!r}; choose one of {', '.join(AMP_DTYPES)}")
    if min(size, batch_size, iters) < 1 or warmup < 0:
        raise UserError("size, batch_size and iters must be >= 1, warmup >= 0")
    dev = resolve_device(device)
    if amp != "none" and dev.type != "cuda":
        raise UserError(f"amp={amp} is timed on CUDA only; use --amp none on {dev.type}")
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads or default_threads())
    photos = make_photos(batch_size, size)
    adapter.eval().to(dev)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                _one_iteration(adapter, photos, dev, amp)
            peak = _PeakMemory(dev)
            runs = np.array([_one_iteration(adapter, photos, dev, amp) for _ in range(iters)])
            peak_mb = peak.read_mb()
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    return latency_record(adapter, runs, dev=dev, size=size, batch_size=batch_size, warmup=warmup, amp=amp,
                          threads=used_threads, peak_mb=peak_mb, peak_kind=peak.kind)


def latency_record(adapter: Adapter, runs: np.ndarray, *, dev: torch.device, size: int, batch_size: int,
                   warmup: int, amp: str, threads: int, peak_mb: float, peak_kind: str) -> dict[str, Any]:
    """The JSON-ready record of one model from ``runs`` ``[iters, 4]``: seconds of (preprocess,
    model, postprocess) per batch and the instances predicted (see :func:`measure_latency`)."""
    per_image_ms = runs[:, :3] * 1000.0 / batch_size
    total_ms = per_image_ms.sum(axis=1)
    return {
        "adapter": adapter.name, "backbone": backbone_of(adapter), "runtime": getattr(adapter, "runtime", "torch"),
        "device": dev.type, "device_name": device_name(dev), "threads": threads,
        "size": size, "batch_size": batch_size, "iters": len(runs), "warmup": warmup, "amp": amp,
        "params": sum(p.numel() for p in adapter.parameters()),
        "images_per_s": float(batch_size * len(runs) / runs[:, :3].sum()),
        "ms_median": float(np.median(total_ms)), "ms_p90": float(np.percentile(total_ms, 90)),
        "ms_mean": float(total_ms.mean()),
        "preprocess_ms": float(np.median(per_image_ms[:, 0])), "model_ms": float(np.median(per_image_ms[:, 1])),
        "postprocess_ms": float(np.median(per_image_ms[:, 2])),
        "peak_mem_mb": round(float(peak_mb), 1), "peak_mem_kind": peak_kind,
        "instances_per_image": float(runs[:, 3].mean() / batch_size), "torch": torch.__version__,
    }


# ---------------------------------------------------------------- several models, interleaved
def interleaved_schedule(names: Sequence[str], rounds: int, block: int) -> list[str]:
    """The order models are timed in: ``rounds`` rounds, each running every model for ``block``
    iterations; round ``r`` starts at model ``r mod n`` (for two models: A B, B A, A B, ...), so
    no model always runs first, or always right after the same other model."""
    n = len(names)
    return [names[(r + k) % n] for r in range(rounds) for k in range(n) for _ in range(block)]


def quantile_interval(samples: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the ``q`` quantile of ``samples`` ``[n]``, from order statistics.

    ``[x_(l), x_(u)]`` (1-based, sorted) with ``l``, ``u`` the ``(1 -+ confidence) / 2`` quantiles
    of Binomial(n, q) (``u`` plus one): coverage is at least ``confidence`` for any continuous
    distribution once n allows; with few samples a bound is clipped to the sample min or max.
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, dtype=float))
    alpha = 1.0 - confidence
    low = int(binom.ppf(alpha / 2, len(x), q))
    high = int(binom.ppf(1 - alpha / 2, len(x), q))
    return float(x[max(low - 1, 0)]), float(x[min(high, len(x) - 1)])


def fit_photos(photos: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """uint8 ``[H, W, 3]`` photos resized (bilinear, aspect kept) so the longer side is ``size``."""
    from PIL import Image

    out = []
    for p in photos:
        h, w = p.shape[:2]
        scale = size / max(h, w)
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        out.append(p if hw == (h, w) else np.array(Image.fromarray(p).resize(hw[::-1], Image.BILINEAR)))
    return out


def dataset_photos(dataset: Any, indices: Sequence[int], n: int = 8) -> list[np.ndarray]:
    """``n`` of ``indices`` (spread evenly) as uint8 ``[H, W, 3]`` photos; ``dataset[i][0]`` is a
    uint8 ``[3, H, W]`` image (a zoo dataset, e.g. the comparison's validation images)."""
    picks = np.linspace(0, len(indices) - 1, num=min(n, len(indices))).round().astype(int)
    return [dataset[indices[i]][0].as_subclass(Tensor).permute(1, 2, 0).contiguous().numpy()
            for i in dict.fromkeys(picks.tolist())]


def _timed_block(adapter: Adapter, batches: Sequence[list[np.ndarray]], dev: torch.device, amp: str,
                 origin: float) -> tuple[list[tuple[float, ...]], float]:
    """Run ``batches`` through the protocol; rows ``(pre, model, post s, instances, start s)``, and
    the model's peak memory in MB (CUDA: its weights plus its working memory; CPU: process RSS)."""
    peak = _PeakMemory(dev)
    base = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
    rows = []
    for photos in batches:
        start = time.perf_counter() - origin
        rows.append((*_one_iteration(adapter, photos, dev, amp), start))
    peak_mb = peak.read_mb()
    if dev.type == "cuda":  # other models' weights are resident too: count only this one's
        own = sum(t.numel() * t.element_size() for t in (*adapter.parameters(), *adapter.buffers()))
        peak_mb += (own - base) / 2**20
    return rows, peak_mb


def _run_interleaved(adapters: dict[str, Adapter], batches: list[list[np.ndarray]], block: int, warmup: int,
                     dev: torch.device, amp: str) -> tuple[dict[str, list[tuple[float, ...]]], dict[str, float]]:
    """Warm-up, then the rounds of :func:`interleaved_schedule`; each model's rows (see
    :func:`_timed_block`) and peak memory (MB)."""
    names = list(adapters)
    rows: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    peaks = dict.fromkeys(names, 0.0)
    with torch.inference_mode():
        for name in names:
            adapters[name].eval().to(dev)
        for name in interleaved_schedule(names, warmup, 1):
            _one_iteration(adapters[name], batches[0], dev, amp)
        origin = time.perf_counter()
        for r in range(len(batches) // block):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                got, peak_mb = _timed_block(adapters[name], batches[r * block:(r + 1) * block], dev, amp, origin)
                rows[name] += got
                peaks[name] = max(peaks[name], peak_mb)
    return rows, peaks


def time_interleaved(adapters: dict[str, Adapter], photos: Sequence[np.ndarray], *, size: int,
                     device: str = "cpu", iters: int = 20, warmup: int = 3, block: int = 1, batch_size: int = 1,
                     amp: str = "none", threads: int | None = None,
                     confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Time several models like for like: interleaved, on the same real photos, one input size.

    Each photo (uint8 ``[H, W, 3]``, e.g. :func:`dataset_photos` of the validation images) is first
    resized so its longer side is ``size`` px (outside the timed region). Every model then runs
    the protocol above (phases ``preprocess`` / ``model`` = ``run_model`` / ``postprocess``) in
    round-robin blocks of ``block`` iterations (:func:`interleaved_schedule`), so load drift on a
    shared machine falls on all models alike; timed iteration ``i`` of every model sees the same
    batch (photos ``i*B .. i*B+B-1``, cycling). ``warmup`` iterations per model run first, also
    interleaved. The phases mean the same for every adapter: ``run_model`` stops at dense
    per-candidate outputs, and score filtering, NMS, per-detection mask assembly (Mask R-CNN's
    mask head on the kept boxes, YOLACT's prototype combination, the semantic family's connected
    components) and pasting at the photo's size are ``postprocess``. Mask R-CNN's proposal NMS
    is part of its network (the second stage runs on it); the headline is the total per image.

    Returns, per name, :func:`measure_latency`'s keys (``iters`` rounded up to whole blocks;
    ``peak_mem_kind`` ``cuda_model_weights_plus_working`` or ``rss_peak_all_models_loaded``) plus
    ``protocol`` ("interleaved"), ``order`` (the names, in schedule order), ``block``, ``photos``,
    ``confidence``, ``ms_median_ci`` and ``ms_p90_ci`` (``[low, high]`` ms per image,
    :func:`quantile_interval`), ``samples_ms`` (per timed iteration ``[pre, model, post]`` ms per
    image; each row sums to that iteration's total) and ``started_s`` (its start, seconds from the
    first iteration of the run).
    """
    if amp not in AMP_DTYPES:
        raise UserError(f"unknown amp {amp!r}; choose one of {', '.join(AMP_DTYPES)}")
    if not adapters or not photos or min(size, batch_size, iters, block) < 1 or warmup < 0:
        raise UserError("give models and photos; size, batch_size, iters and block >= 1, warmup >= 0")
    dev = resolve_device(device)
    if amp != "none" and dev.type != "cuda":
        raise UserError(f"amp={amp} is timed on CUDA only; use amp none on {dev.type}")
    fitted = fit_photos(photos, size)
    names = list(adapters)
    rounds = -(-iters // block)
    n_batches = rounds * block
    batches = [[fitted[(i * batch_size + j) % len(fitted)] for j in range(batch_size)] for i in range(n_batches)]
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads or default_threads())
    try:
        rows, peaks = _run_interleaved(adapters, batches, block, warmup, dev, amp)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    kind = "cuda_model_weights_plus_working" if dev.type == "cuda" else "rss_peak_all_models_loaded"
    out = {}
    for name in names:
        runs = np.array(rows[name])
        rec = latency_record(adapters[name], runs[:, :4], dev=dev, size=size, batch_size=batch_size, warmup=warmup,
                             amp=amp, threads=used_threads, peak_mb=peaks[name], peak_kind=kind)
        samples = runs[:, :3] * 1000.0 / batch_size
        total = samples.sum(axis=1)
        out[name] = {**rec, "protocol": "interleaved", "order": names, "block": block, "photos": len(fitted),
                     "confidence": confidence, "ms_median_ci": list(quantile_interval(total, 0.5, confidence)),
                     "ms_p90_ci": list(quantile_interval(total, 0.9, confidence)),
                     "samples_ms": samples.round(4).tolist(), "started_s": runs[:, 4].round(6).tolist()}
    return out
