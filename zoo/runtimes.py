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
    from zoo.latency import load_target

    if Path(target).exists():
        return load_target(target, backbone), {"run": str(Path(target).resolve())}
    torch.manual_seed(0)
    adapter = load_target(target, backbone)
    return adapter, {"adapter": adapter.name, "model": to_dict(adapter.cfg), "num_classes": adapter.num_classes,
                     "seed": 0}


def adapter_from_source(source: dict[str, Any]) -> Adapter:
    """The PyTorch adapter an exported file was made from (its post-processing and weights)."""
    if "run" in source:
        from zoo.latency import load_target

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
