"""Open a finished (or interrupted) run folder: its config, dataset, split and weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.adapter import Adapter, build_with_attributes, get_adapter
from zoo.attributes import space_from_state
from zoo.config import TrainConfig, load_yaml, train_config_from_dict
from zoo.errors import UserError
from zoo.train.checkpoint import model_state_from_file


@dataclass
class LoadedRun:
    path: Path
    cfg: TrainConfig
    adapter: Adapter
    dataset: Any
    split: dict[str, list[int]]  # train, val and test indices (test empty for two-way runs)
    checkpoint: Path


def read_run_config(run_dir: Path | str) -> TrainConfig:
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    data = load_yaml(cfg_path)
    return train_config_from_dict(data, get_adapter(str(data.get("adapter"))).config_cls, f"{cfg_path}:")


def load_run(run_dir: Path | str, which: str = "best", data: str | None = None) -> LoadedRun:
    """The run's adapter with its ``best`` (falling back to ``last``) weights, on the CPU.

    ``data`` replaces the run's dataset source (to evaluate on another dataset).
    """
    import dataclasses

    from zoo.data.dataset import open_dataset

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=data, cache=None))
    ckpt = run_dir / "checkpoints" / f"{which}.pt"
    if not ckpt.is_file():
        ckpt = run_dir / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise UserError(f"{run_dir}: no checkpoint in checkpoints/")
    dataset = open_dataset(cfg.data)
    state = model_state_from_file(ckpt)
    space = space_from_state(state, dataset.source.attributes)  # the attributes the weights predict
    adapter = build_with_attributes(get_adapter(cfg.adapter), cfg.model, len(dataset.categories), space)
    adapter.load_state_dict(state)
    adapter.eval()
    split_path = run_dir / "split.json"
    split = json.loads(split_path.read_text()) if split_path.exists() else {"train": [], "val": list(range(len(dataset)))}
    # Runs split before test splits existed have no "test": they hold train and val only.
    return LoadedRun(run_dir, cfg, adapter, dataset,
                     {"train": split["train"], "val": split["val"], "test": split.get("test", [])}, ckpt)
