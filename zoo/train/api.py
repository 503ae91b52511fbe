"""Entry points of training: load a config, train it into a run folder, resume it."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from zoo.adapter import build_with_attributes, get_adapter
from zoo.attributes import attribute_space
from zoo.config import (ConfigError, TrainConfig, apply_override, check_ranges, dump_yaml, load_yaml,
                        train_config_from_dict)
from zoo.device import resolve_device
from zoo.errors import UserError
from zoo.train import distributed as D
from zoo.train.checkpoint import load_matching, load_weights_only, remove_orphan_temps
from zoo.train.logger import plot_loss_curves
from zoo.train.loop import StepHook, Trainer
from zoo.train.run import checkpoint_meta
from zoo.train.state import seed_everything


def _presets_folder() -> Path:
    """``$ZOO_CONFIGS``, else the presets shipped as package data (``configs/`` installs as ``zoo.configs``)."""
    if os.environ.get("ZOO_CONFIGS"):
        return Path(os.environ["ZOO_CONFIGS"])
    import zoo.configs

    return Path(zoo.configs.__file__).resolve().parent


CONFIG_DIR = _presets_folder()


def preset_path(adapter: str, preset: str) -> Path:
    """``configs/<adapter>.yaml`` for the cpu preset, ``configs/<adapter>-<preset>.yaml`` otherwise."""
    return CONFIG_DIR / (f"{adapter}.yaml" if preset == "cpu" else f"{adapter}-{preset}.yaml")


def load_train_config(adapter: str, config: Path | str | None = None, preset: str = "cpu",
                      overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The resolved config: the YAML file (or the adapter's preset), then ``key=value`` overrides."""
    cls = get_adapter(adapter)
    path = Path(config) if config is not None else preset_path(adapter, preset)
    if config is None and not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob(f"{adapter}*.yaml"))
        raise ConfigError(f"no preset {preset!r} for {adapter} ({path} is missing); config files: {', '.join(known) or 'none'}")
    data = load_yaml(path)
    if data.get("adapter", adapter) != adapter:
        raise ConfigError(f"{path}: adapter is {data['adapter']!r}, not {adapter!r}")
    data["adapter"] = adapter
    for item in overrides:
        apply_override(data, item)
    return train_config_from_dict(data, cls.config_cls)


def _prepare_run(cfg: TrainConfig, dist: D.DistInfo) -> tuple[Any, dict[str, list[int]]]:
    from zoo.data.dataset import open_dataset
    from zoo.data.split import split_three

    with D.local_leader_first(dist):  # one process per node builds the dataset index, the others map it
        dataset = open_dataset(cfg.data)
    return dataset, split_three(dataset.label_sets(), cfg.data.val_fraction, cfg.data.test_fraction,
                                split_seed(cfg), cfg.data.split)


def split_seed(cfg: TrainConfig) -> int:
    """The seed of the run's split: ``data.split_seed``, or the run's own seed when unset."""
    return cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed


WEIGHT_KEYS = ("backbone_weights", "pretrained")  # loaded in this order: a whole model's weights win


def _load_pretrained(adapter: Any, spec: str, key: str = "pretrained") -> dict[str, list[str]]:
    """Load the weights ``spec`` names (a file, ``torchvision:...`` or ``timm:...``: zoo.weights)
    into ``adapter`` where names and shapes match; returns :func:`load_matching`'s report."""
    from zoo.weights import load_weights

    state = adapter.adapt_pretrained(load_weights(spec, key))
    report = load_matching(adapter, state)
    if not report["loaded"]:
        raise UserError(f"{key}: {spec}: no tensor matches the {adapter.name} model's names and shapes")
    return report


def train(cfg: TrainConfig, out: Path | str, resume: bool = False, on_step: StepHook | None = None) -> Path:
    """Train ``cfg`` into the run folder ``out`` (``resume``: continue from ``out/checkpoints/last.pt``).

    Under torchrun (WORLD_SIZE > 1) every rank calls this; only rank 0 writes files.
    Returns the run folder.
    """
    out = Path(out)
    check_ranges(cfg)  # also for a config built in code or changed after loading (--epochs)
    # Before the data is opened: a change that cannot apply to the run is refused first.
    resume_from, changes = _resume_plan(out, cfg) if resume else (None, {})
    device = resolve_device(cfg.device)
    dist = D.init_from_env(device)
    if dist.is_main:
        remove_orphan_temps(out / "checkpoints")  # left by a process killed while writing a checkpoint
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if dist.is_main and not resume:  # a missing weights file fails before the data is read
        from zoo.weights import resolve_weights

        for key in WEIGHT_KEYS:
            if getattr(cfg, key):
                resolve_weights(getattr(cfg, key), key)
    seed_everything(cfg.seed)
    dataset, split = _prepare_run(cfg, dist)
    adapter = build_with_attributes(get_adapter(cfg.adapter), cfg.model, len(dataset.categories),
                                    attribute_space(dataset)).to(device)
    trainer = Trainer(cfg, adapter, dataset, split, out, device, dist, on_step)
    trainer.checkpoint_meta = checkpoint_meta(cfg, dataset, split, adapter)
    if resume_from is not None:
        _resume(trainer, out, device, dist, resume_from, changes)
    elif dist.is_main:
        _write_run_header(cfg, out, dataset, split)
        for key in WEIGHT_KEYS:
            if getattr(cfg, key):
                report = _load_pretrained(adapter, getattr(cfg, key), key)
                _note(out, key, {k: (v if k != "loaded" else len(v)) for k, v in report.items()})
    if dist.enabled and not resume and any(getattr(cfg, k) for k in WEIGHT_KEYS):
        _broadcast_weights(adapter)
    summary = trainer.run()
    if dist.is_main:
        _write_summary(out, cfg, summary)
    D.barrier(dist)
    D.shutdown(dist)
    return out


def _resume_plan(out: Path, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """``out/checkpoints/last.pt`` and the changes from the run's config to ``cfg``, when the
    run can continue with them (:func:`zoo.train.resume.check_resumable`)."""
    from zoo.train.resume import check_resumable
    from zoo.train.run import read_run_config

    last = out / "checkpoints" / "last.pt"
    if not last.is_file():
        raise UserError(f"{out}: nothing to resume (no checkpoints/last.pt)")
    ckpt = load_weights_only(last)
    return ckpt, check_resumable(read_run_config(out), cfg, ckpt["state"], out)


def _resume(trainer: Trainer, out: Path, device: torch.device, dist: D.DistInfo, ckpt: dict[str, Any],
            changes: dict[str, tuple[Any, Any]]) -> None:
    """Load ``ckpt`` (the run's last.pt) into ``trainer``; rank 0 records the plan's changes in
    config_history.json and config.yaml, and says where the run continues."""
    trainer.resume_from(ckpt)
    trainer.adapter.to(device)
    if dist.is_main:
        from rich.console import Console

        from zoo.train.resume import record_changes

        st = trainer.state
        console = Console(stderr=True, soft_wrap=True)  # soft_wrap: paths stay on one line in logs
        if changes:
            record_changes(out, changes, ckpt["state"])
            dump_yaml(trainer.cfg, out / "config.yaml")
            plan = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
            console.print(f"resumed with a changed plan: {plan}")
        console.print(f"resumed at step {st.global_step} (stage {st.stage + 1}, {st.step_in_epoch} steps into its "
                      f"epoch) from {out / 'checkpoints' / 'last.pt'}")


def _broadcast_weights(adapter: torch.nn.Module) -> None:
    # Rank 0 loaded the pretrained file; DDP also broadcasts at wrap time, this keeps buffers in step.
    for tensor in adapter.state_dict().values():
        torch.distributed.broadcast(tensor, src=0)


def _write_run_header(cfg: TrainConfig, out: Path, dataset: Any, split: dict[str, list[int]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml")
    ids = dataset.image_ids
    # train: what optimizer steps read; val: what selection reads; test: scored only, never read here.
    (out / "split.json").write_text(json.dumps({
        "method": cfg.data.split, "seed": split_seed(cfg), "val_fraction": cfg.data.val_fraction,
        "test_fraction": cfg.data.test_fraction, "train": split["train"], "val": split["val"],
        "test": split["test"], "val_image_ids": [ids[i] for i in split["val"]],
        "test_image_ids": [ids[i] for i in split["test"]],
    }))


def _note(out: Path, key: str, value: Any) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"{key}: {value}")
    notes = out / "notes.json"
    data = json.loads(notes.read_text()) if notes.exists() else {}
    data[key] = value
    notes.write_text(json.dumps(data, indent=1))


def _write_summary(out: Path, cfg: TrainConfig, summary: dict[str, Any]) -> None:
    from zoo.train.logger import read_metrics

    rows = read_metrics(out / "metrics.csv") if (out / "metrics.csv").exists() else []
    steps = [r for r in rows if r["kind"] == "step"]
    summary = dict(summary, adapter=cfg.adapter, best_metric=cfg.best_metric,
                   final_loss=float(steps[-1]["loss"]) if steps else None,
                   epochs=summary["global_epoch"], finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if steps:
        plot_loss_curves(out / "metrics.csv", out / "loss.png")


def cli_overrides(*, data: str | None, epochs: int | None, steps_per_epoch: int | None,
                  batch_size: int | None, device: str | None, limit: int | None) -> list[str]:
    """The named `zoo train` flags as ``key=value`` overrides (applied before ``--set``)."""
    items = []
    for key, value in (("data.source", data), ("steps_per_epoch", steps_per_epoch), ("batch_size", batch_size),
                       ("device", device), ("data.limit", limit)):
        if value is not None:
            items.append(f"{key}={json.dumps(value)}")
    return items


def train_from_cli(adapter: str, *, data: str | None, config: Path | None, preset: str, epochs: int | None,
                   steps_per_epoch: int | None, batch_size: int | None, device: str | None, limit: int | None,
                   out: Path | None, resume: bool, overrides: list[str]) -> Path:
    """`zoo train`: resolve the config (on --resume: the run's own, with the flags and --set
    applied, so a finished run can be extended) and train."""
    flags = cli_overrides(data=data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          batch_size=batch_size, device=device, limit=limit) + list(overrides)
    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN_FOLDER")
        cfg = _resumed_config(adapter, out, flags)
    else:
        cfg = load_train_config(adapter, config, preset, flags)
        out = out or Path("runs") / f"{adapter}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (out / "checkpoints" / "last.pt").exists():
            raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if epochs is not None:
        cfg = dataclasses.replace(cfg, stages=tuple(dataclasses.replace(s, epochs=epochs) for s in cfg.stages))
    run = train(cfg, out, resume=resume)
    from rich.console import Console

    Console(stderr=True).print(f"run folder: {run}")
    return run


def _resumed_config(adapter: str, out: Path, overrides: list[str]) -> TrainConfig:
    """The run's config.yaml with ``overrides`` applied; the run must be one of ``adapter``."""
    if not (out / "checkpoints" / "last.pt").is_file():
        raise UserError(f"{out}: nothing to resume (no checkpoints/last.pt)")
    data = load_yaml(out / "config.yaml")
    if data.get("adapter") != adapter:
        raise UserError(f"{out}: this run is a {data.get('adapter')} run, not {adapter}; continue it with "
                        f"`zoo train {data.get('adapter')} --out {out} --resume`")
    for item in overrides:
        apply_override(data, item)
    return train_config_from_dict(data, get_adapter(adapter).config_cls, f"{out / 'config.yaml'}:")


def interrupted_note(run: Path, adapter: str) -> str | None:
    """For a run stopped by Ctrl-C, one line saying where it stopped and how to continue; else None."""
    path = run / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if summary.get("stopped_reason") != "interrupted":
        return None
    return (f"interrupted at step {summary.get('global_step')}; continue with: "
            f"zoo train {adapter} --out {run} --resume")
