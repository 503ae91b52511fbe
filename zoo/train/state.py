"""What a checkpoint holds besides weights: where the run is, and every RNG state."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Position in the run. Epoch orders are seeded by ``global_epoch``, so resume is exact."""

    stage: int = 0  # index into cfg.stages
    epoch_in_stage: int = 0  # epochs completed in the current stage
    step_in_epoch: int = 0  # optimizer steps completed in the current epoch
    global_step: int = 0
    global_epoch: int = 0  # epochs completed over all stages
    images_seen: int = 0  # training images read by optimizer steps, over all ranks
    best_value: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs without improvement (early stopping)
    train_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, in weights-only-loadable types."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
