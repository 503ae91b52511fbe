"""`zoo compare`: train (or load) the compared adapters (``compare.models``) on one split, score
them with the one evaluator, time them with the one latency protocol, and write the comparison
report.

The steps, each shown on the console as it runs:

1. **plan**: load each adapter's preset config; every run gets the same data section and seed
   (taken from the first adapter's resolved config), so all train on the same split at the same
   input size;
2. **train** each into ``OUT/runs/<name>`` (a finished run with the same config is reused, an
   interrupted one is resumed), or take the ``--runs`` folders as they are;
3. **evaluate** each on the same validation images (those no compared run trained on) with
   :func:`zoo.metrics.evaluate.evaluate_adapter`, and **time** it with
   :func:`zoo.latency.measure_latency` at its input size; both write into ``OUT/models/<name>``;
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

from zoo.config import TrainConfig, apply_override, from_dict, to_dict
from zoo.errors import UserError
from zoo.progress import progress_bar
from zoo.report.collect import ModelResult, collect_model
from zoo.report.content import Context
from zoo.report.write import ReportSettings, write_report

VERSIONED = ("torch", "torchvision", "segmentation-models-pytorch", "timm", "zoo", "faster-coco-eval",
             "pycocotools", "numpy", "matplotlib")


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """Options of the comparison itself (``--set compare.KEY=VALUE``); the rest go to every run."""

    # The adapters trained when none are named: the three families. Registering another adapter
    # does not add it here, so `make demo` and its time budget stay what they are.
    models: tuple[str, ...] = ("maskrcnn", "unet", "yolact")
    epochs: int | None = None  # epochs of every stage of every run (None: each preset's own)
    # Wall-clock budget of the whole comparison in minutes; a model whose training would eat into
    # the next models' share (or into the time scoring and the report need) stops early, and the
    # report says so. None: 15 with the cpu preset, no limit with gpu; 0: no limit.
    budget_minutes: float | None = None
    resamples: int = 200
    confidence: float = 0.95
    gallery: int = 4
    gallery_score: float = 0.5
    latency_iters: int = 20
    latency_warmup: int = 3
    eval_batch_size: int = 2

    def budget_s(self, preset: str) -> float | None:
        minutes = self.budget_minutes if self.budget_minutes is not None else (15.0 if preset == "cpu" else 0.0)
        return minutes * 60.0 if minutes > 0 else None

    def report(self) -> ReportSettings:
        return ReportSettings(resamples=self.resamples, confidence=self.confidence, gallery=self.gallery,
                              gallery_score=self.gallery_score)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], CompareSettings]:
    """Separate ``compare.*`` overrides (parsed strictly) from the ones for every training run."""
    own: dict[str, Any] = {}
    rest = []
    for item in overrides:
        if item.strip().startswith("compare."):
            apply_override(own, item.strip())
        else:
            rest.append(item)
    return rest, from_dict(CompareSettings, own.get("compare", {}), "compare")


# ---------------------------------------------------------------- plan and train
def plan_runs(names: Sequence[str], *, data: str | None, preset: str, overrides: Sequence[str],
              epochs: int | None = None) -> tuple[list[TrainConfig], list[str]]:
    """Resolved configs with one shared data section and seed; notes say what was forced."""
    from zoo.train.api import load_train_config

    extra = [f"data.source={json.dumps(data)}"] if data is not None else []
    cfgs = [load_train_config(n, preset=preset, overrides=list(overrides) + extra) for n in names]
    if epochs is not None:
        cfgs = [dataclasses.replace(c, stages=tuple(dataclasses.replace(s, epochs=epochs) for s in c.stages))
                for c in cfgs]
    ref, notes = cfgs[0], []
    for i, cfg in enumerate(cfgs[1:], start=1):
        changed = [f.name for f in dataclasses.fields(ref.data)
                   if getattr(cfg.data, f.name) != getattr(ref.data, f.name)]
        if changed or cfg.seed != ref.seed:
            notes.append(f"{cfg.adapter}: data section and seed set to {ref.adapter}'s "
                         f"(differed in {', '.join(changed + (['seed'] if cfg.seed != ref.seed else []))})")
        cfgs[i] = dataclasses.replace(cfg, data=ref.data, seed=ref.seed)
    size = int(ref.data.max_size)
    for i, cfg in enumerate(cfgs):
        cfgs[i], forced = with_input_size(cfg, size)
        if forced:
            notes.append(f"{cfg.adapter}: network input set to the shared {size} px ({', '.join(forced)})")
    return cfgs, notes


def with_input_size(cfg: TrainConfig, size: int) -> tuple[TrainConfig, list[str]]:
    """``cfg`` with every model field of its adapter's ``input_size_fields`` set to ``size``, and
    the fields that changed (as ``model.NAME was OLD``)."""
    from zoo.adapter import get_adapter

    fields = get_adapter(cfg.adapter).input_size_fields
    changed = [f"model.{f} was {getattr(cfg.model, f)}" for f in fields if getattr(cfg.model, f) != size]
    model = dataclasses.replace(cfg.model, **{f: size for f in fields})
    return dataclasses.replace(cfg, model=model), changed


def _same_config(cfg: TrainConfig, run_dir: Path) -> bool:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return False
    # Round-trip through YAML so tuples and lists compare equal.
    return yaml.safe_load(path.read_text()) == yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def train_or_reuse(cfg: TrainConfig, run_dir: Path, console: Console, deadline: float | None = None) -> Path:
    """Train ``cfg`` into ``run_dir``; reuse a finished run of the same config, resume a cut one.

    ``deadline`` (a ``time.perf_counter()`` value) stops training cleanly after the step that
    passes it; the run keeps its checkpoints and its summary says ``stopped by request``.
    """
    from zoo.train.api import train

    same = _same_config(cfg, run_dir)
    summary = run_dir / "summary.json"
    if same and summary.is_file() and json.loads(summary.read_text()).get("stopped_reason") != "interrupted":
        console.print(f"  reusing the finished run in {run_dir}")
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


def common_validation(run_dirs: Sequence[Path]) -> tuple[list[int], dict[str, Any]]:
    """Validation indices shared by every run (so none of them trained on these) and the split file
    of the first run. Runs trained on differently read data cannot be compared image by image."""
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
    shared = set(splits[0]["val"]).intersection(*(s["val"] for s in splits[1:]))
    val = [i for i in splits[0]["val"] if i in shared]
    if not val:
        raise UserError("the runs share no validation image; they were split differently")
    return val, splits[0]


def evaluate_and_time(name: str, run_dir: Path, eval_dir: Path, indices: list[int] | None, data: str | None,
                      settings: CompareSettings, console: Console) -> Any:
    """Score and time one run; writes the evaluator's files and ``bench.json`` into ``eval_dir``.

    Returns the run's dataset (the gallery draws its images from it)."""
    from zoo.latency import measure_latency
    from zoo.metrics.cli_eval import resolution_label
    from zoo.metrics.evaluate import evaluate_adapter
    from zoo.device import resolve_device
    from zoo.train.run import load_run

    with console.status(f"[bold]{name}[/]: loading {run_dir}"):
        run = load_run(run_dir, data=data)
    idx = list(range(len(run.dataset))) if indices is None else indices
    device = str(resolve_device(run.cfg.device))
    with console.status(f"[bold]{name}[/]: scoring {len(idx)} validation images on {device}"):
        metrics = evaluate_adapter(run.adapter, run.dataset, idx, device=device, out_dir=eval_dir, plots=True,
                                   batch_size=settings.eval_batch_size)
    small = metrics.get("at_input_size", {}).get("segm")  # the same predictions scored at the input size
    console.print(f"  {name}: mask AP {metrics['segm']['AP']:.3f}  AP50 {metrics['segm']['AP50']:.3f}  "
                  f"box AP {metrics['bbox']['AP']:.3f} at the {resolution_label(metrics)}"
                  + (f" (at the input size: mask AP {small['AP']:.3f})" if small else "")
                  + f"  ({metrics['time_s']:.1f} s)")
    size = int(run.cfg.data.max_size)
    with console.status(f"[bold]{name}[/]: timing {settings.latency_iters} iterations at {size} px on {device}"):
        bench = measure_latency(run.adapter, device=device, size=size, iters=settings.latency_iters,
                                warmup=settings.latency_warmup)
    (eval_dir / "bench.json").write_text(json.dumps(bench, indent=1))
    console.print(f"  {name}: {bench['ms_median']:.1f} ms median, {bench['ms_p90']:.1f} ms p90, "
                  f"{bench['images_per_s']:.1f} images/s, {bench['peak_mem_mb']:.0f} MB peak")
    return run.dataset


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
def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")


# Seconds kept back from the training budget for scoring, timing and the report: a fixed part
# plus a part per model (measured on 2 idle cores, embedded dataset: scoring 60 images 5-14 s and
# timing 3-6 s per model, bootstrap and figures 10 s; a busy machine needs several times that).
RESERVE_S, RESERVE_PER_MODEL_S = 30.0, 30.0


def training_deadline(start: float, budget_s: float | None, i: int, n: int) -> float | None:
    """When model ``i`` of ``n`` must stop training: an equal share of what is left of the budget
    after the reserve, so a model that finishes early leaves its time to the next ones."""
    if budget_s is None:
        return None
    end = start + budget_s - RESERVE_S - RESERVE_PER_MODEL_S * n
    now = time.perf_counter()
    return now + max(0.0, end - now) / (n - i)


def _budget_note(cfg: TrainConfig, run_dir: Path) -> str | None:
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("stopped_reason") != "stopped by request":
        return None
    return (f"{cfg.adapter}: training stopped by the time budget at step {summary.get('global_step')}, "
            f"after {summary.get('global_epoch')} of {sum(s.epochs for s in cfg.stages)} epochs")


def _train_all(names: Sequence[str], *, data: str | None, preset: str, overrides: list[str], out: Path,
               settings: CompareSettings, start: float, console: Console) -> tuple[list[Path], list[str]]:
    from zoo.adapter import get_adapter

    for name in names:
        try:
            get_adapter(name)
        except KeyError as err:
            raise UserError(str(err.args[0])) from None
    cfgs, notes = plan_runs(names, data=data, preset=preset, overrides=overrides, epochs=settings.epochs)
    budget = settings.budget_s(preset)
    run_dirs = []
    for i, cfg in enumerate(cfgs):
        deadline = training_deadline(start, budget, i, len(cfgs))
        share = f", at most {deadline - time.perf_counter():.0f} s" if deadline is not None else ""
        console.rule(f"[bold]{i + 1}/{len(cfgs)} training {cfg.adapter}[/] ({preset} preset, "
                     f"{cfg.data.max_size} px, seed {cfg.seed}{share})")
        run_dirs.append(train_or_reuse(cfg, out / "runs" / _safe(cfg.adapter), console, deadline))
        note = _budget_note(cfg, run_dirs[-1])
        if note:
            console.print(f"  [yellow]{note}[/]")
            notes.append(note)
    return run_dirs, notes


def compare(names: Sequence[str], *, data: str | None, runs: Sequence[Path], preset: str, report: str,
            out: Path, overrides: Sequence[str]) -> Path:
    """Run the whole comparison (see the module docstring); returns the report's path."""
    console = Console(stderr=True)
    start = time.perf_counter()
    run_overrides, settings = split_overrides(overrides)
    if report not in ("md", "html"):
        raise UserError(f"--report {report!r}: choose md or html")
    if runs and names:
        raise UserError("give adapter names (to train them) or --runs (to compare finished runs), not both")
    out = Path(out)
    notes: list[str] = []
    if runs:
        run_dirs = [Path(r) for r in runs]
        if run_overrides:
            raise UserError("--set only applies to runs compare trains; finished --runs keep their config")
    else:
        run_dirs, notes = _train_all(list(names) or list(settings.models), data=data, preset=preset,
                                     overrides=run_overrides, out=out, settings=settings, start=start,
                                     console=console)
    model_names = run_names(run_dirs)
    if runs and data is not None:
        val, split = None, {}
        notes.append(f"scored on every image of --data {data} (the runs' own splits do not apply)")
    else:
        val, split = common_validation(run_dirs)
    console.rule("[bold]scoring and timing every model on the same validation images[/]")
    trained_s = time.perf_counter() - start
    datasets = [evaluate_and_time(n, d, out / "models" / _safe(n), val, data, settings, console)
                for n, d in zip(model_names, run_dirs)]
    results = [collect_model(n, d, out / "models" / _safe(n)) for n, d in zip(model_names, run_dirs)]
    ctx = build_context(run_dirs, datasets[0], split, len(val) if val is not None else len(datasets[0]),
                        results, preset, notes)
    ctx.timings = {"training" if not runs else "loading runs": trained_s,
                   "scoring and timing": time.perf_counter() - start - trained_s}
    path = _report(results, ctx, out, report, datasets[0], settings, console)
    print_summary(results, console)
    console.print(f"report: [bold]{path}[/]  ({time.perf_counter() - start:.0f} s in all)")
    return path


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
    from rich.table import Table

    table = Table(title="comparison")
    for col in ("model", "mask AP", "AP50", "box AP", "latency (ms)", "images/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r.name, f"{r.metrics['segm']['AP']:.3f}", f"{r.metrics['segm']['AP50']:.3f}",
                      f"{r.metrics['bbox']['AP']:.3f}", f"{r.bench['ms_median']:.1f}", f"{r.bench['images_per_s']:.1f}")
    console.print(table)


def compare_from_cli(adapters: Sequence[str], *, data: str | None, runs: Sequence[Path], preset: str,
                     report: str, out: Path, overrides: Sequence[str]) -> Path:
    """`zoo compare`: see :func:`compare`."""
    return compare(adapters, data=data, runs=runs, preset=preset, report=report, out=out, overrides=overrides)
