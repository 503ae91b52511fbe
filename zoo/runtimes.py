"""One model on the runtimes people deploy: PyTorch eager, onnxruntime, TorchScript.

A runtime other than ``torch`` runs the model's network phase from an exported file
(:mod:`zoo.export`) and keeps zoo's PyTorch post-processing, so every runtime goes through the
same latency protocol (:mod:`zoo.latency`) with the same phases, and gives the same predictions.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from zoo.adapter import Adapter
from zoo.errors import UserError
from zoo.export import FORMATS, SUFFIXES, ExportedAdapter, export_network, load_network, read_metadata

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "torchscript")
RUNTIME_FORMAT: dict[str, str] = {"onnxruntime": "onnx", "torchscript": "torchscript"}
FORMAT_RUNTIME: dict[str, str] = {v: k for k, v in RUNTIME_FORMAT.items()}


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


def input_size_of(adapter: Adapter) -> int | None:
    """The side the adapter's network reads (its first set ``input_size_fields`` value), or None."""
    for field in adapter.input_size_fields:
        value = getattr(adapter.cfg, field, None)
        if isinstance(value, int):
            return value
    return None


def at_input_size(adapter: Adapter, size: int) -> Adapter:
    """``adapter`` with every ``input_size_fields`` entry set to ``size`` and the same weights."""
    return with_model_fields(adapter, {f: size for f in adapter.input_size_fields})


def with_model_fields(adapter: Adapter, fields: dict[str, Any]) -> Adapter:
    """``adapter`` rebuilt with these model config ``fields`` and the same weights (itself when
    they already have these values)."""
    if all(getattr(adapter.cfg, f) == v for f, v in fields.items()):
        return adapter
    cfg = dataclasses.replace(adapter.cfg, **fields)
    space = getattr(adapter, "attribute_space", None)
    rebuilt = type(adapter)(cfg, adapter.num_classes, **({"attributes": space} if space is not None else {}))
    rebuilt.load_state_dict(adapter.state_dict())
    return rebuilt.eval()


def size_fields(adapter: Adapter) -> dict[str, Any]:
    """The adapter's input-size config fields and their values (stored with an exported file)."""
    return {f: getattr(adapter.cfg, f) for f in adapter.input_size_fields}


def load_source(target: str, backbone: str | None = None) -> tuple[Adapter, dict[str, Any]]:
    """A trained run (folder or checkpoint) or a freshly built adapter, as ``zoo bench`` takes
    them, and how :func:`adapter_from_source` builds it again: ``{"run": path}``, or
    ``{"adapter": name, "model": config, "num_classes": C, "seed": 0}`` (fresh weights drawn from
    that seed)."""
    from zoo.config import to_dict
    from zoo.bench import load_target

    if Path(target).exists():
        return load_target(target, backbone), {"run": str(Path(target).resolve())}
    torch.manual_seed(0)
    adapter = load_target(target, backbone)
    return adapter, {"adapter": adapter.name, "model": to_dict(adapter.cfg), "num_classes": adapter.num_classes,
                     "seed": 0}


def adapter_from_source(source: dict[str, Any]) -> Adapter:
    """The PyTorch adapter an exported file was made from (its post-processing and weights)."""
    if "run" in source:
        from zoo.bench import load_target

        if not Path(source["run"]).exists():
            raise UserError(f"the exported file was made from run {source['run']}, which is not there; "
                            f"export it again from its run folder")
        return load_target(source["run"])
    from zoo.adapter import get_adapter
    from zoo.config import from_dict

    cls = get_adapter(source["adapter"])
    torch.manual_seed(int(source.get("seed", 0)))
    return cls(from_dict(cls.config_cls, source["model"], "model"), int(source["num_classes"])).eval()


def load_exported(path: Path, device: str = "cpu", threads: int | None = None) -> ExportedAdapter:
    """An exported file with its post-processing, ready for the latency protocol or ``predict``."""
    meta = read_metadata(path)
    adapter = with_model_fields(adapter_from_source(meta["source"]), meta["source"].get("size_fields", {}))
    return ExportedAdapter(adapter, load_network(Path(path), meta, device, threads), meta)


def on_runtime(adapter: Adapter, runtime: str, workdir: Path, *, size: int, batch_size: int = 1,
               device: str = "cpu", threads: int | None = None,
               source: dict[str, Any] | None = None) -> Adapter:
    """``adapter`` as it runs on ``runtime`` for ``[batch_size, 3, size, size]`` photos: itself
    for ``torch``, else its network (as configured: photos are resized to its own input size as
    in PyTorch) exported into ``workdir`` and run there."""
    if check_runtime(runtime) == "torch":
        return adapter
    fmt = RUNTIME_FORMAT[runtime]
    path = Path(workdir) / f"{adapter.name}-{size}px-b{batch_size}{SUFFIXES[fmt]}"
    source = {**(source or {}), "size_fields": size_fields(adapter)}
    meta = export_network(adapter, fmt, path, size=size, batch_size=batch_size, source=source)
    return ExportedAdapter(adapter, load_network(path, meta, device, threads), meta)


# ---------------------------------------------------------------- `zoo export`
def export_from_cli(target: str, *, fmt: str, out: Path, size: int | None, batch_size: int,
                    opset: int | None) -> dict[str, Any]:
    """`zoo export`: TARGET (run folder or adapter name)'s network to ``out``; prints the check."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if (out.suffix == ".onnx") != (fmt == "onnx"):
        raise UserError(f"--out {out}: name the {fmt} file *{SUFFIXES[fmt]}"
                        + (" (or any suffix but .onnx)" if fmt != "onnx" else "")
                        + "; zoo bench tells the formats apart by it")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as {out / ('model' + SUFFIXES[fmt])}")
    adapter, source = load_source(target)
    size = size or input_size_of(adapter)
    if size is None:
        raise UserError(f"{target}: the model reads any input size; give --size")
    sized = at_input_size(adapter, size)
    meta = export_network(sized, fmt, out, size=size, batch_size=batch_size, opset=opset,
                          source={**source, "size_fields": size_fields(sized)})
    shape = "x".join(map(str, meta["input_shape"]))
    print(f"wrote {out} ({meta['exporter']}, input images {shape}, "
          f"{len(meta['outputs'])} outputs); max |exported - PyTorch| on check photos: "
          f"{meta['check']['max_abs_diff']:.2e}")
    print(f"time it: zoo bench {out} --runtime {FORMAT_RUNTIME[fmt]}")
    return meta


# ---------------------------------------------------------------- several runtimes, interleaved
def square_photos(photos: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Centre square crops of uint8 ``[H, W, 3]`` photos: an exported network has a fixed input
    shape, so the runtimes are timed on square photos (all of them on the same pixels)."""
    out = []
    for p in photos:
        h, w = p.shape[:2]
        s = min(h, w)
        out.append(np.ascontiguousarray(p[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]))
    return out


def time_runtimes(adapters: dict[str, Adapter], photos: Sequence[np.ndarray], runtimes: Sequence[str], *,
                  size: int, device: str = "cpu", iters: int = 20, warmup: int = 3,
                  threads: int | None = None, workdir: Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every model on every runtime, timed together with :func:`zoo.latency.time_interleaved`
    (one schedule over all model x runtime pairs) on square crops of ``photos`` at ``size``.

    Returns ``{model: {runtime: record}}`` (records as ``time_interleaved``'s, with ``runtime``).
    """
    from zoo.latency import time_interleaved

    for r in runtimes:
        check_runtime(r)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        pairs = {f"{name}@{r}": on_runtime(a, r, Path(tmp), size=size, device=device, threads=threads)
                 for name, a in adapters.items() for r in runtimes}
        timed = time_interleaved(pairs, square_photos(photos), size=size, device=device, iters=iters,
                                 warmup=warmup, threads=threads)
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in adapters}
    for key, rec in timed.items():
        name, runtime = key.rsplit("@", 1)
        out[name][runtime] = rec
    return out


# ---------------------------------------------------------------- in a comparison
SUMMARY_KEYS = ("runtime", "ms_median", "ms_median_ci", "ms_p90", "ms_p90_ci", "preprocess_ms", "model_ms",
                "postprocess_ms", "images_per_s", "peak_mem_mb", "instances_per_image", "iters", "photos", "size",
                "order", "threads", "device")


def add_runtime_latency(benches: dict[str, dict[str, Any]], adapters: dict[str, Adapter],
                        photos: Sequence[np.ndarray], runtimes: Sequence[str], *, size: int, device: str,
                        iters: int, warmup: int) -> None:
    """`zoo compare` with ``compare.runtimes``: every model on every runtime, timed together
    (:func:`time_runtimes`); each model's record in ``benches`` gets ``runtimes``: ``{runtime:
    summary}`` (the latency keys of :data:`SUMMARY_KEYS`)."""
    timed = time_runtimes(adapters, photos, runtimes, size=size, device=device, iters=iters, warmup=warmup)
    for name, by_runtime in timed.items():
        benches[name]["runtimes"] = {r: {k: rec.get(k) for k in SUMMARY_KEYS} for r, rec in by_runtime.items()}


def runtimes_of(benches: Sequence[dict[str, Any]]) -> list[str]:
    """The runtimes the models of a comparison were timed on (``bench.json``'s ``runtimes``), in order."""
    return list(dict.fromkeys(r for b in benches for r in b.get("runtimes", {})))


def runtime_points(labels: Sequence[str], benches: Sequence[dict[str, Any]],
                   ap: Sequence[float]) -> tuple[list[str], list[float], list[float], list[int]]:
    """Points of the accuracy/latency chart, one per model and runtime: labels ``model`` (the
    main, PyTorch timing) and ``model (runtime)`` for each other runtime it was timed on; their
    median latency (ms), accuracy, and the index of the model each point belongs to."""
    points = []
    for i, (label, bench) in enumerate(zip(labels, benches)):
        points.append((label, float(bench["ms_median"]), ap[i], i))
        points += [(f"{label} ({runtime})", float(rec["ms_median"]), ap[i], i)
                   for runtime, rec in bench.get("runtimes", {}).items() if runtime != "torch" and rec.get("ms_median")]
    names, ms, acc, owner = (list(column) for column in zip(*points)) if points else ([], [], [], [])
    return names, ms, acc, owner


def runtimes_note(benches: Sequence[dict[str, Any]]) -> list[str]:
    """The report's sentence on the per-runtime columns (none when no other runtime was timed)."""
    runtimes = runtimes_of(benches)
    if not runtimes:
        return []
    first = next(b["runtimes"] for b in benches if b.get("runtimes"))
    rec = next(iter(first.values()))
    return [f"The 'median on ...' columns: every model on each of {', '.join(runtimes)}, timed together in one "
            f"interleaved schedule ({rec.get('iters')} iterations each, {rec.get('photos')} photos cropped to "
            f"squares and resized to {rec.get('size')} px, {rec.get('threads')} threads). The network phase "
            f"(run_model) runs as exported (onnxruntime: ONNX from torch.onnx.export; torchscript: torch.jit.trace); "
            f"pre- and post-processing are the same PyTorch code on every runtime."]
