"""`zoo bench`: one model (an adapter name, a run, a checkpoint or an exported file) timed with
the latency protocol of :mod:`zoo.latency`, at batch 1 and N, fp32 and AMP, on a runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from zoo.adapter import Adapter
from zoo.errors import UserError
from zoo.latency import measure_latency


def load_target(target: str, backbone: str | None = None) -> Adapter:
    """A run folder's (or checkpoint file's) trained adapter, or a freshly built registered
    adapter (default config, ``backbone`` overriding its backbone/encoder field)."""
    import dataclasses

    from zoo.adapter import available_adapters, get_adapter
    from zoo.build import build_adapter

    from zoo.train.checkpoint import is_checkpoint_file

    if Path(target).is_dir() or is_checkpoint_file(target):
        if backbone is not None:
            raise UserError(f"{target}: --backbone applies to adapter names; a run keeps its trained backbone")
        from zoo.train.run import load_run

        return load_run(Path(target)).adapter
    if target not in available_adapters():
        try:
            get_adapter(target)
        except KeyError as err:
            raise UserError(f"{target!r} is not a run folder, and {err.args[0]}") from None
    overrides = None
    if backbone is not None:
        cls = get_adapter(target)
        fields = {f.name for f in dataclasses.fields(cls.config_cls)}
        if cls.backbone_option not in fields:
            raise UserError(f"adapter {target!r} has no backbone option (fields: {', '.join(sorted(fields))})")
        overrides = {cls.backbone_option: backbone}
    return build_adapter(target, overrides)


def bench_settings(batch_size: int, amp: str) -> list[tuple[int, str]]:
    """(batch size, amp) pairs timed by `zoo bench`: batch 1 and N, fp32 and the AMP mode asked for."""
    sizes = [1] if batch_size == 1 else [1, batch_size]
    modes = ["none"] if amp == "none" else ["none", amp]
    return [(b, m) for m in modes for b in sizes]


def print_latency(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("batch", "amp", "img/s", "ms median", "ms p90", "pre ms", "model ms", "post ms", "peak MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["batch_size"]), r["amp"], f"{r['images_per_s']:.2f}", f"{r['ms_median']:.1f}",
                      f"{r['ms_p90']:.1f}", f"{r['preprocess_ms']:.2f}", f"{r['model_ms']:.1f}",
                      f"{r['postprocess_ms']:.1f}", f"{r['peak_mem_mb']:.0f}")
    Console().print(table)


def bench_from_cli(target: str, *, device: str, size: int, batch_size: int, iters: int, warmup: int,
                   amp: str, backbone: str | None, threads: int | None, out: Path | None,
                   runtime: str = "torch") -> dict[str, Any]:
    """`zoo bench`: time TARGET (adapter name, run folder, or a file of `zoo export`) on ``runtime``
    at batch 1 and ``batch_size``, fp32 and ``amp``; print a table; write JSON to ``out``.

    The JSON's top level is the setting asked for (``batch_size``, ``amp``); ``settings`` lists all.
    An exported file runs at the input shape it was exported for (``size`` and batch are its own).
    """
    from zoo import runtimes
    from zoo.config import check_at_least

    check_at_least({"--threads": threads, "--size": size, "--batch-size": batch_size, "--iters": iters}, 1)
    check_at_least({"--warmup": warmup}, 0)

    runtimes.check_runtime(runtime)
    if runtime != "torch" and amp != "none":
        raise UserError(f"--amp {amp} is PyTorch autocast; the {runtime} runtime runs the exported fp32 network")
    from zoo.train.checkpoint import is_checkpoint_file

    if Path(target).is_file() and not is_checkpoint_file(target):  # a checkpoint file is a trained run
        exported = runtimes.load_exported(Path(target), device, threads)
        if runtime not in ("torch", exported.runtime):
            raise UserError(f"{target}: exported as {exported.meta['format']}; time it with --runtime {exported.runtime}")
        b, _, size, _ = exported.meta["input_shape"]
        models = {(b, "none"): exported}
    else:
        adapter, source = runtimes.load_source(target, backbone)
        with tempfile.TemporaryDirectory() as tmp:  # a loaded runtime keeps its network in memory
            models = {(b, m): runtimes.on_runtime(adapter, runtime, Path(tmp), size=size, batch_size=b,
                                                  device=device, threads=threads, source=source)
                      for b, m in bench_settings(batch_size, amp)}
    rows = [measure_latency(a, device=device, size=size, batch_size=b, iters=iters, warmup=warmup,
                            amp=m, threads=threads)
            for (b, m), a in models.items()]
    main = next((r for r in rows if r["batch_size"] == batch_size and r["amp"] == amp), rows[0])
    first = rows[0]
    print_latency(rows, f"{target}: {first['adapter']} ({first['backbone']}) on {first['runtime']}, "
                        f"{first['params'] / 1e6:.2f}M params, {size}x{size} px, {first['device_name']}, "
                        f"{first['threads']} threads")
    result = {**main, "target": target, "settings": rows}
    if out is not None:
        import json

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    return result
