"""`zoo compare`: train (or load) the compared adapters (``compare.models``) on one split, score
them with the one evaluator, time them with the one latency protocol, and write the comparison
report.

The steps, each shown on the console as it runs:

1. **plan** (:mod:`zoo.compare_plan`): every run gets the comparison's data section, input size,
   seed, selection rule and images-seen budget, whatever the order the models are named in;
2. **train** each (``compare.seeds`` times) into ``OUT/runs/<name>/seed<S>`` (a completed run
   with the same config is reused, an interrupted or time-cut one is resumed), or take the
   ``--runs`` folders as they are;
3. **evaluate** each on the same test images (held out from training and from selection) with
   :func:`zoo.metrics.evaluate.evaluate_adapter`, then **time** all of them together with
   :func:`zoo.latency.time_interleaved` (round-robin blocks on the scored photos, one input
   size); both write into ``OUT/models/<name>`` (further seeds, scored only, into
   ``OUT/seeds/<name>-seed<S>``, and ``OUT/seeds.json``);
4. **report**: bootstrap intervals, charts, gallery, ``report.md`` or ``report.html``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml
from rich.console import Console

from zoo.compare_plan import CompareSettings, plan_runs, split_overrides, with_input_size
from zoo.compare_train import check_names, safe_name, seed_summary, seed_table_markdown, train_all, variance_note
from zoo.config import TrainConfig, to_dict
from zoo.errors import UserError
from zoo.progress import progress_bar
from zoo.report.collect import ModelResult, collect_model
from zoo.report.content import Context
from zoo.report.write import write_report

VERSIONED = ("torch", "torchvision", "segmentation-models-pytorch", "timm", "zoo", "faster-coco-eval",
             "pycocotools", "numpy", "matplotlib")


__all__ = ["CompareSettings", "compare", "plan_runs", "split_overrides", "train_or_reuse", "with_input_size"]


# ---------------------------------------------------------------- train
def _same_config(cfg: TrainConfig, run_dir: Path) -> bool:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return False
    # Round-trip through YAML so tuples and lists compare equal.
    return yaml.safe_load(path.read_text()) == yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def train_or_reuse(cfg: TrainConfig, run_dir: Path, console: Console, deadline: float | None = None) -> Path:
    """Train ``cfg`` into ``run_dir``; reuse a completed run of the same config, resume a cut one.

    ``deadline`` (a ``time.perf_counter()`` value) stops training cleanly after the step that
    passes it; the run keeps its checkpoints and its summary says ``stopped by request``. Such a
    run did not finish its schedule, so a later call resumes it (with its own deadline) rather
    than reusing it.
    """
    from zoo.train.api import train

    same = _same_config(cfg, run_dir)
    summary = run_dir / "summary.json"
    if same and summary.is_file() and json.loads(summary.read_text()).get("stopped_reason") == "completed":
        console.print(f"  reusing the completed run in {run_dir}")
        return run_dir
    resume = same and (run_dir / "checkpoints" / "last.pt").is_file()
    if resume:
        console.print(f"  resuming the run in {run_dir}")
    elif run_dir.exists():
        # Only folders compare itself created live here; a stale one would mix two runs' logs.
        shutil.rmtree(run_dir)
    stop = None if deadline is None else (lambda step, adapter: time.perf_counter() > deadline)
    train(cfg, run_dir, resume=resume, on_step=stop)
    reason = json.loads(summary.read_text()).get("stopped_reason") if summary.is_file() else "no summary"
    if reason == "interrupted":
        raise UserError(f"training of {cfg.adapter} was interrupted; run the same command again to resume it")
    return run_dir


# ---------------------------------------------------------------- runs, split, evaluation
def run_names(run_dirs: Sequence[Path]) -> list[str]:
    """Adapter names of the runs; a repeated adapter is told apart by its folder name."""
    from zoo.train.run import read_run_config

    adapters = [read_run_config(d).adapter for d in run_dirs]
    return [a if adapters.count(a) == 1 else f"{a} ({Path(d).name})" for a, d in zip(adapters, run_dirs)]


def scored_images(run_dirs: Sequence[Path]) -> tuple[list[int], dict[str, Any], str]:
    """The images every run is scored on, the first run's split file, and which part they are.

    ``"test"``: the test images shared by every run (held out from training and selection).
    Runs split before test splits existed have none; they are scored on their shared validation
    images (``"val"``), which chose their checkpoints. Runs trained on differently read data
    cannot be compared image by image."""
    from zoo.train.run import read_run_config

    first = read_run_config(run_dirs[0])
    for d in run_dirs[1:]:
        data = read_run_config(d).data
        diff = [f.name for f in dataclasses.fields(data) if f.name not in ("workers", "cache")
                and getattr(data, f.name) != getattr(first.data, f.name)]
        if diff:
            raise UserError(f"{d}: trained on other data than {run_dirs[0]} (data.{', data.'.join(diff)} differ); "
                            "compare runs of the same data, or pass --data to score all on one dataset")
    splits = []
    for d in run_dirs:
        path = Path(d) / "split.json"
        if not path.is_file():
            raise UserError(f"{d}: no split.json; cannot tell which images the run did not train on")
        splits.append(json.loads(path.read_text()))
    part = "test" if all(s.get("test") for s in splits) else "val"
    shared = set(splits[0][part]).intersection(*(s[part] for s in splits[1:]))
    indices = [i for i in splits[0][part] if i in shared]
    if not indices:
        raise UserError(f"the runs share no {'test' if part == 'test' else 'validation'} image; "
                        "they were split differently")
    return indices, splits[0], part


def load_runs(run_dirs: dict[str, Path], data: str | None, console: Console) -> dict[str, Any]:
    """Each run's model and dataset (:func:`zoo.train.run.load_run`), loaded once for scoring and timing."""
    from zoo.train.run import load_run

    runs = {}
    for name, run_dir in run_dirs.items():
        with console.status(f"[bold]{name}[/]: loading {run_dir}"):
            runs[name] = load_run(run_dir, data=data)
    return runs


def evaluate_run(name: str, run: Any, eval_dir: Path, indices: list[int] | None, settings: CompareSettings,
                 console: Console) -> None:
    """Score one loaded run (:func:`load_runs`); writes the evaluator's files into ``eval_dir``."""
    from zoo.device import resolve_device
    from zoo.metrics.cli_eval import resolution_label
    from zoo.metrics.evaluate import evaluate_adapter

    idx = list(range(len(run.dataset))) if indices is None else indices
    device = str(resolve_device(run.cfg.device))
    with console.status(f"[bold]{name}[/]: scoring {len(idx)} images on {device}"):
        metrics = evaluate_adapter(run.adapter, run.dataset, idx, device=device, out_dir=eval_dir, plots=True,
                                   batch_size=settings.eval_batch_size)
    small = metrics.get("at_input_size", {}).get("segm")  # the same predictions scored at the input size
    console.print(f"  {name}: mask AP {metrics['segm']['AP']:.3f}  AP50 {metrics['segm']['AP50']:.3f}  "
                  f"box AP {metrics['bbox']['AP']:.3f} at the {resolution_label(metrics)}"
                  + (f" (at the input size: mask AP {small['AP']:.3f})" if small else "")
                  + f"  ({metrics['time_s']:.1f} s)")


def time_models(runs: dict[str, Any], eval_dirs: dict[str, Path], indices: list[int], settings: CompareSettings,
                console: Console, photos: int = 8) -> dict[str, dict[str, Any]]:
    """Time every loaded run (:func:`load_runs`) like for like with
    :func:`zoo.latency.time_interleaved`: interleaved, on ``photos`` of the scored images
    (``indices``) at the first run's input size; writes each model's ``bench.json`` into its
    ``eval_dirs`` entry."""
    from zoo.device import resolve_device
    from zoo.latency import dataset_photos, time_interleaved

    first = next(iter(runs.values()))
    size, device = int(first.cfg.data.max_size), str(resolve_device(first.cfg.device))
    picked = dataset_photos(first.dataset, indices, photos)
    with console.status(f"timing {', '.join(runs)} interleaved, {settings.latency_iters} iterations at {size} px"):
        benches = time_interleaved({n: r.adapter for n, r in runs.items()}, picked,
                                   size=size, device=device, iters=settings.latency_iters,
                                   warmup=settings.latency_warmup)
    if set(settings.runtimes) != {"torch"}:  # compare.runtimes: every model on every runtime, timed together
        from zoo.runtimes import add_runtime_latency

        with console.status(f"exporting and timing on {', '.join(settings.runtimes)}"):
            add_runtime_latency(benches, {n: r.adapter for n, r in runs.items()}, picked, settings.runtimes,
                                size=size, device=device, iters=settings.latency_iters, warmup=settings.latency_warmup)
    for name, bench in benches.items():
        (eval_dirs[name] / "bench.json").write_text(json.dumps(bench, indent=1))
        low, high = bench["ms_median_ci"]
        console.print(f"  {name}: {bench['ms_median']:.1f} ms median [{low:.1f}, {high:.1f}], "
                      f"{bench['ms_p90']:.1f} ms p90, {bench['images_per_s']:.1f} images/s")
    return benches


# ---------------------------------------------------------------- what was compared
def describe_dataset(cfg: TrainConfig, dataset: Any) -> str:
    d = cfg.data
    if d.source is None and d.cache is None:
        where = f"embedded synthetic dataset ({d.synth_n} images of {d.synth_size} px)"
    else:
        where = f"`{d.cache or d.source}`"
    limit = f", first {d.limit}" if d.limit is not None else ""
    return (f"{where}: {len(dataset)} images used{limit}, {len(dataset.categories)} categories, read at "
            f"{d.max_size} px ({d.resize})")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def command_line() -> str:
    """The command as the user typed it (``zoo ...``), arguments shell-quoted."""
    return "zoo " + shlex.join(sys.argv[1:])


def build_context(run_dirs: Sequence[Path], dataset: Any, split: dict[str, Any], n_val: int,
                  results: Sequence[ModelResult], preset: str, notes: list[str]) -> Context:
    from zoo.train.run import read_run_config

    cfg = read_run_config(run_dirs[0])
    bench = results[0].bench
    device = f"{bench.get('device')} ({bench.get('device_name')}, {bench.get('threads')} threads)"
    return Context(dataset=describe_dataset(cfg, dataset), n_images=len(dataset), n_train=len(split.get("train", [])),
                   n_val=n_val, seed=int(split.get("seed", cfg.seed)), split=str(split.get("method", cfg.data.split)),
                   device=device, command=command_line(), preset=preset, versions=versions(), notes=notes)


# ---------------------------------------------------------------- the command
def compare(names: Sequence[str], *, data: str | None, runs: Sequence[Path], preset: str, report: str,
            out: Path, overrides: Sequence[str], size: int | None = None) -> Path:
    """Run the whole comparison (see the module docstring); returns the report's path.

    ``size``: the side (px) every network reads (default: the preset's, :data:`PRESET_SIZE`)."""
    console = Console(stderr=True)
    start = time.perf_counter()
    run_overrides, settings = split_overrides(overrides)
    if report not in ("md", "html"):
        raise UserError(f"--report {report!r}: choose md or html")
    if runs and names:
        raise UserError("give adapter names (to train them) or --runs (to compare finished runs), not both")
    out = Path(out)
    seed_runs: dict[str, list[Path]] = {}
    if runs:
        run_dirs, notes = [Path(r) for r in runs], []
        if run_overrides or size is not None:
            raise UserError("--set and --size only apply to runs compare trains; finished --runs keep their config")
    else:
        check_names(list(names) or list(settings.models))
        cfgs, notes = plan_runs(list(names) or list(settings.models), data=data, preset=preset,
                                overrides=run_overrides, size=size, settings=settings)
        seed_runs, cut = train_all(cfgs, out=out, preset=preset, settings=settings, start=start, console=console)
        notes += cut + [variance_note(settings.seeds)]
        run_dirs = [dirs[0] for dirs in seed_runs.values()]
    model_names = run_names(run_dirs)
    indices, split, part = _scored(run_dirs, runs, data, notes)
    console.rule(f"[bold]scoring and timing every model on the same {part} images[/]")
    trained_s = time.perf_counter() - start
    eval_dirs = {n: out / "models" / safe_name(n) for n in model_names}
    loaded = load_runs(dict(zip(model_names, run_dirs)), data, console)  # each loaded once
    for name, run in loaded.items():
        evaluate_run(name, run, eval_dirs[name], indices, settings, console)
    datasets = [run.dataset for run in loaded.values()]
    # Timed after scoring, all models together and interleaved, on the scored photos.
    time_models(loaded, eval_dirs, list(range(len(datasets[0]))) if indices is None else indices, settings, console)
    del loaded
    results = [collect_model(n, d, out / "models" / safe_name(n)) for n, d in zip(model_names, run_dirs)]
    seeds = _score_seeds(seed_runs, model_names, indices, data, settings, out, console, part) if seed_runs else None
    ctx = build_context(run_dirs, datasets[0], split, len(indices) if indices is not None else len(datasets[0]),
                        results, preset, notes)
    ctx.scored = part
    ctx.seeds = seeds if seeds is not None and settings.seeds > 1 else None
    ctx.timings = {"training" if not runs else "loading runs": trained_s,
                   "scoring and timing": time.perf_counter() - start - trained_s}
    path = _report(results, ctx, out, report, datasets[0], settings, console)
    if seeds is not None and settings.seeds > 1 and report == "md":
        path.write_text(path.read_text() + "\n" + seed_table_markdown(seeds))
    print_summary(results, console)
    console.print(f"report: [bold]{path}[/]  ({time.perf_counter() - start:.0f} s in all)")
    return path


def _scored(run_dirs: Sequence[Path], runs: Sequence[Path], data: str | None,
            notes: list[str]) -> tuple[list[int] | None, dict[str, Any], str]:
    """Which images are scored (None: all of --data), the split file, and a name for them; notes why."""
    if runs and data is not None:
        notes.append(f"scored on every image of --data {data} (the runs' own splits do not apply)")
        return None, {}, "--data"
    indices, split, part = scored_images(run_dirs)
    if part == "test":
        notes.append(f"scored on {len(indices)} test images, held out from training ({len(split['train'])} "
                     f"images) and from selection ({len(split['val'])} validation images)")
    else:
        notes.append(f"scored on {len(indices)} validation images: the runs have no test split, so the "
                     "images that chose their checkpoints are also the ones scored")
    return indices, split, part


def _score_seeds(seed_runs: dict[str, list[Path]], model_names: Sequence[str], indices: list[int] | None,
                 data: str | None, settings: CompareSettings, out: Path, console: Console, part: str
                 ) -> dict[str, Any]:
    """Score every further seed's run (seed 0's was scored for the report); write ``seeds.json``."""
    metrics: dict[str, list[dict[str, Any]]] = {}
    for name, dirs in zip(model_names, seed_runs.values()):
        metrics[name] = [json.loads((out / "models" / safe_name(name) / "metrics.json").read_text())]
        for run in dirs[1:]:
            eval_dir = out / "seeds" / f"{safe_name(name)}-{run.name}"
            eval_dir.mkdir(parents=True, exist_ok=True)
            label = f"{name} {run.name}"
            evaluate_run(label, load_runs({label: run}, data, console)[label], eval_dir, indices, settings, console)
            metrics[name].append(json.loads((eval_dir / "metrics.json").read_text()))
    from zoo.train.run import read_run_config

    seeds = [read_run_config(r).seed for r in next(iter(seed_runs.values()))]
    first = read_run_config(next(iter(seed_runs.values()))[0])
    summary = seed_summary(metrics, dict(zip(model_names, seed_runs.values())), out, seeds,
                           int(first.data.split_seed if first.data.split_seed is not None else first.seed), part)
    (out / "seeds.json").write_text(json.dumps(summary, indent=1))
    return summary


def _report(results: Sequence[ModelResult], ctx: Context, out: Path, fmt: str, dataset: Any,
            settings: CompareSettings, console: Console) -> Path:
    """Write the report with a progress bar over the bootstrap resamples."""
    console.rule("[bold]report[/]")
    with progress_bar(console=console, disable=settings.resamples <= 0) as bar:
        task = bar.add_task(f"bootstrap: {settings.resamples} resamples x {len(results)} models",
                            total=settings.resamples)
        return write_report(results, ctx, out, fmt, dataset, settings.report(),
                            progress=lambda done, total: bar.update(task, completed=done),
                            on_phase=lambda phase: bar.console.print(f"  {phase}"))


def print_summary(results: Sequence[ModelResult], console: Console) -> None:
    """The comparison as a console table; AP (IoU+F1) joins it when the ground truth has attributes."""
    from rich.table import Table

    from zoo.report.attributes import data_has_attributes, scored_attributes

    with_attributes = data_has_attributes(results)
    table = Table(title="comparison")
    columns = ("model", "mask AP", "AP50", "box AP", *(("AP (IoU+F1)",) if with_attributes else ()),
               "latency (ms)", "images/s")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        attrs = scored_attributes(r) if with_attributes else None
        extra = ((f"{attrs['iou_f1']['AP']:.3f}" if attrs else "-"),) if with_attributes else ()
        table.add_row(r.name, f"{r.metrics['segm']['AP']:.3f}", f"{r.metrics['segm']['AP50']:.3f}",
                      f"{r.metrics['bbox']['AP']:.3f}", *extra, f"{r.bench['ms_median']:.1f}",
                      f"{r.bench['images_per_s']:.1f}")
    console.print(table)


def compare_from_cli(adapters: Sequence[str], *, data: str | None, runs: Sequence[Path], preset: str,
                     report: str, out: Path, overrides: Sequence[str], size: int | None = None) -> Path:
    """`zoo compare`: see :func:`compare`."""
    return compare(adapters, data=data, runs=runs, preset=preset, report=report, out=out, overrides=overrides,
                   size=size)
