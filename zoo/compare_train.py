"""Training the planned runs of `zoo compare`: every seed of every model, each with an equal
wall-clock share (a safety net: the images-seen budget is what makes the runs equal), and the
per-seed metrics that measure training variance (``seeds.json``).

``seeds.json`` (written into the comparison folder)::

    {"seeds": [0, 1],                      # training seeds, one run per model and seed
     "split_seed": 0,                      # the split is the same for every seed
     "scored_on": "test",                  # which images were scored
     "models": {"maskrcnn": {
         "runs": ["runs/maskrcnn/seed0", "runs/maskrcnn/seed1"],
         "segm_AP": [0.061, 0.058], "segm_AP50": [...], "bbox_AP": [...],   # one value per seed
         "mean": {"segm_AP": 0.0595, ...},
         "std": {"segm_AP": 0.0021, ...}}}}  # sample std (n - 1); null with one seed
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from zoo.compare_plan import CompareSettings, planned_images
from zoo.config import TrainConfig
from zoo.errors import UserError

SEED_METRICS: tuple[tuple[str, str, str], ...] = (("segm_AP", "segm", "AP"), ("segm_AP50", "segm", "AP50"),
                                                  ("bbox_AP", "bbox", "AP"))
# Seconds kept back from the wall-clock budget for scoring, timing and the report: a fixed part
# plus a part per run (measured on 2 idle cores, embedded dataset: scoring 60 images 5-14 s and
# timing 3-6 s per model, bootstrap and figures 10 s; a busy machine needs several times that).
RESERVE_S, RESERVE_PER_MODEL_S = 30.0, 30.0


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")


def run_share_s(budget_s: float | None, elapsed_s: float, n_runs: int) -> float | None:
    """Seconds each of ``n_runs`` runs may train: an equal, fixed share of the budget left after
    ``elapsed_s`` (data preparation) and the reserve. Fixed, so no run's time depends on how
    fast the runs before it were."""
    if budget_s is None:
        return None
    return max(0.0, budget_s - elapsed_s - RESERVE_S - RESERVE_PER_MODEL_S * n_runs) / n_runs


def seed_configs(cfg: TrainConfig, seeds: int) -> list[TrainConfig]:
    """``cfg`` with seeds ``cfg.seed .. cfg.seed + seeds - 1``; the split seed stays the first."""
    split_seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.seed
    data = dataclasses.replace(cfg.data, split_seed=split_seed)
    return [dataclasses.replace(cfg, seed=cfg.seed + k, data=data) for k in range(seeds)]


def cut_note(cfg: TrainConfig, run_dir: Path) -> str | None:
    """One line when the wall-clock budget cut the run: which run, and how far it got."""
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("stopped_reason") != "stopped by request":
        return None
    planned = planned_images(cfg)
    seen = summary.get("images_seen")
    share = f" of {planned} planned ({100 * seen / planned:.0f} %)" if planned and seen is not None else ""
    return (f"{cfg.adapter} seed {cfg.seed}: cut by the time budget (compare.budget_minutes) after {seen} "
            f"training images{share}, step {summary.get('global_step')} of {summary.get('planned_steps')}; "
            "its schedule did not finish")


def train_all(cfgs: Sequence[TrainConfig], *, out: Path, preset: str, settings: CompareSettings, start: float,
              console: Console) -> tuple[dict[str, list[Path]], list[str]]:
    """Train every seed of every config; returns the run folders per adapter and the cut notes."""
    from zoo.compare import train_or_reuse
    from zoo.data.dataset import open_dataset

    with console.status("preparing the data"):
        open_dataset(cfgs[0].data)  # the embedded dataset is generated here, outside every run's share
    n_runs = len(cfgs) * settings.seeds
    share = run_share_s(settings.budget_s(preset), time.perf_counter() - start, n_runs)
    runs: dict[str, list[Path]] = {}
    notes = []
    for i, cfg in enumerate(cfgs):
        for seeded in seed_configs(cfg, settings.seeds):
            limit = f", at most {share:.0f} s" if share is not None else ""
            console.rule(f"[bold]{i + 1}/{len(cfgs)} training {cfg.adapter}[/] seed {seeded.seed} ({preset} preset, "
                         f"{cfg.data.max_size} px, {planned_images(seeded) or 'preset'} images{limit})")
            deadline = None if share is None else time.perf_counter() + share
            run = train_or_reuse(seeded, out / "runs" / safe_name(cfg.adapter) / f"seed{seeded.seed}", console,
                                 deadline)
            runs.setdefault(cfg.adapter, []).append(run)
            note = cut_note(seeded, run)
            if note:
                console.print(f"  [yellow]{note}[/]")
                notes.append(note)
    return runs, notes


def seed_summary(metrics: dict[str, list[dict[str, Any]]], runs: dict[str, list[Path]], out: Path,
                 seeds: list[int], split_seed: int, scored_on: str) -> dict[str, Any]:
    """The ``seeds.json`` structure (see the module docstring) from each run's metrics."""
    models = {}
    for name, per_seed in metrics.items():
        entry: dict[str, Any] = {"runs": [Path(r).relative_to(out).as_posix() if Path(r).is_relative_to(out)
                                          else str(r) for r in runs[name]]}
        for key, section, field in SEED_METRICS:
            entry[key] = [float(m[section][field]) for m in per_seed]
        entry["mean"] = {k: statistics.fmean(entry[k]) for k, _, _ in SEED_METRICS}
        entry["std"] = {k: (statistics.stdev(entry[k]) if len(entry[k]) > 1 else None) for k, _, _ in SEED_METRICS}
        models[name] = entry
    return {"seeds": seeds, "split_seed": split_seed, "scored_on": scored_on, "models": models}


def seed_table_markdown(summary: dict[str, Any]) -> str:
    """A Markdown section: mean and sample std of mask AP, AP50 and box AP over the seeds."""
    from zoo.report.document import Table
    from zoo.report.markdown import render_table

    headers = ("model", "seeds", "mask AP mean", "mask AP std", "AP50 mean", "AP50 std", "box AP mean", "box AP std")
    rows = []
    for name, m in summary["models"].items():
        cells = [name, str(len(m["segm_AP"]))]
        for key in ("segm_AP", "segm_AP50", "bbox_AP"):
            std = m["std"][key]
            cells += [f"{m['mean'][key]:.3f}", "n/a" if std is None else f"{std:.3f}"]
        rows.append(tuple(cells))
    table = Table(headers=headers, rows=tuple(rows), align=("l",) + ("r",) * (len(headers) - 1))
    seeds = ", ".join(map(str, summary["seeds"]))
    return (f"## Training-seed variance\n\nEach model trained once per seed ({seeds}) on the same split and "
            f"scored on the same {summary['scored_on']} images; std is the sample standard deviation over "
            f"the seeds (`seeds.json`).\n\n{render_table(table)}\n")


def variance_note(seeds: int) -> str:
    if seeds > 1:
        return (f"training variance: every model trained with {seeds} seeds on the same split; mean and std "
                "over the seeds are in seeds.json and the training-seed table; the other numbers are seed "
                "0's run")
    return ("training variance was not measured (compare.seeds=1): the intervals cover which test images "
            "were drawn, not what another training seed would give")


def check_names(names: Sequence[str]) -> None:
    from zoo.adapter import get_adapter

    for name in names:
        try:
            get_adapter(name)
        except KeyError as err:
            raise UserError(str(err.args[0])) from None
