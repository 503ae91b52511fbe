"""What ``--resume`` may change in a run's plan, and the run's config history.

A resumed run continues from ``checkpoints/last.pt`` with the config it is given, so a finished
run can be extended: more epochs for the stage it ended in (``--epochs``), or stages added after
it. What the weights, the optimizer state or the split already depend on cannot change (the model,
the data, the seed, the batch, the optimizer, the stages already trained); such a change is
refused with the key that differs. Accepted changes are appended to ``config_history.json`` and
``config.yaml`` becomes the new plan.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from zoo.config import TrainConfig, to_dict
from zoo.errors import UserError

# Prefixes of the keys a resumed run keeps, and why.
FIXED = {
    "model": "the weights have this model's shape",
    "data": "the split and the sample order come from the data",
    "seed": "the split and the sample order come from the seed",
    "batch_size": "the position in the epoch is counted in batches",
    "steps_per_epoch": "the position in the epoch is counted in steps",
    "optim": "the optimizer's saved state carries its settings",
    "pretrained": "weights are loaded when a run starts",
    "backbone_weights": "weights are loaded when a run starts",
    "best_metric": "best.pt was chosen by it",
}
CHANGEABLE_DATA = ("data.workers",)  # how the data is read, not which


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"stages.0.epochs": 2, ...}``: a nested dict/list as dotted keys."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def plan_changes(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every key that differs (absent: None)."""
    a, b = flat(to_dict(old)), flat(to_dict(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=_key_order) if a.get(k) != b.get(k)}


def _key_order(key: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def check_resumable(old: TrainConfig, new: TrainConfig, state: dict[str, Any], run: Path) -> dict[str, tuple[Any, Any]]:
    """The changes from ``old`` (the run's config) to ``new`` when a run at ``state`` (a
    checkpoint's TrainState dict) can continue with them; else :class:`UserError` naming the key."""
    if new.adapter != old.adapter:
        raise UserError(f"{run}: this run is a {old.adapter} run; continue it with "
                        f"`zoo train {old.adapter} --out {run} --resume`")
    changes = plan_changes(old, new)
    for key, (before, after) in changes.items():
        head = key.split(".")[0]
        if head in FIXED and key not in CHANGEABLE_DATA:
            raise UserError(f"{run}: --resume cannot change {key} ({before!r} -> {after!r}): {FIXED[head]}; "
                            f"train a new run (another --out) instead")
    _check_stages(old, new, state, run)
    return changes


def _check_stages(old: TrainConfig, new: TrainConfig, state: dict[str, Any], run: Path) -> None:
    """Stages already trained stay as they were; the current one may only change its epochs
    (not below those done); later and added stages are free."""
    current, done = int(state["stage"]), int(state["epoch_in_stage"])
    if len(new.stages) <= current:
        raise UserError(f"{run}: --resume cannot remove stage {current + 1} ({old.stages[current].name!r}): "
                        f"the run is in it")
    for i in range(current):
        if old.stages[i] != new.stages[i]:
            raise UserError(f"{run}: --resume cannot change stage {i + 1} ({old.stages[i].name!r}): "
                            f"it is already trained")
    was, now = old.stages[current], new.stages[current]
    for name in ("name", "lr", "layers", "augment", "steps"):
        if getattr(was, name) != getattr(now, name):
            raise UserError(f"{run}: --resume cannot change stages.{current}.{name} of the stage the run is in "
                            f"({getattr(was, name)!r} -> {getattr(now, name)!r}); add a stage instead")
    if now.epochs != was.epochs and was.steps is not None:
        raise UserError(f"{run}: stage {was.name!r} spreads a fixed {was.steps} steps over its epochs, so more "
                        f"epochs would not train more; add a stage instead")
    if now.epochs < done:
        raise UserError(f"{run}: stages.{current}.epochs={now.epochs}, but {done} epochs of stage "
                        f"{was.name!r} are already trained")


def record_changes(run: Path, changes: dict[str, tuple[Any, Any]], state: dict[str, Any]) -> None:
    """Append ``changes`` (made at ``state``) to ``run/config_history.json``."""
    path = run / "config_history.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append({"resumed_at_step": int(state["global_step"]), "epochs_done": int(state["global_epoch"]),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "changes": {k: {"from": a, "to": b} for k, (a, b) in changes.items()}})
    path.write_text(json.dumps(history, indent=1))
