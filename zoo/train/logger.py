"""Run logs: metrics.csv (step and epoch rows), optional TensorBoard, the loss-curve PNG."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

BASE_FIELDS = ["kind", "stage", "epoch", "step", "lr", "loss"]
EPOCH_FIELDS = ["images_per_s", "val_loss", "segm_AP", "segm_AP50", "bbox_AP", "attr_threshold", "attr_F1", "time_s"]


def loss_column(name: str) -> str:
    """The metrics.csv column of the named loss: ``loss_mask`` stays, ``mask`` becomes ``loss_mask``."""
    return name if name.startswith("loss_") else f"loss_{name}"


class MetricsLog:
    """Appends rows to ``metrics.csv``; on resume, rows past the checkpoint's step are dropped."""

    def __init__(self, path: Path, loss_names: list[str], resume_step: int | None, tensorboard: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fields = BASE_FIELDS + [loss_column(n) for n in loss_names] + EPOCH_FIELDS
        if resume_step is not None and path.exists():
            with path.open(newline="") as fh:
                self.fields = next(csv.reader(fh), self.fields)  # keep the run's own columns
        if resume_step is not None and path.exists():
            self._truncate_after(resume_step)
        if not path.exists():
            with path.open("w", newline="") as fh:
                csv.DictWriter(fh, self.fields).writeheader()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from zoo.errors import UserError

                raise UserError("tensorboard: true needs the tensorboard package: pip install 'zoo[tensorboard]'") from None

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        with self.path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("kind", "stage", "epoch", "step") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{row['kind']}/{key}", value, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def plot_loss_curves(csv_path: Path, png_path: Path) -> None:
    """Training loss per step and validation loss per epoch, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    steps = [(int(r["step"]), float(r["loss"])) for r in rows if r["kind"] == "step" and r["loss"]]
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["kind"] == "epoch" and r["val_loss"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    if steps:
        ax.plot(*zip(*steps), label="train loss (per step)", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss (per epoch)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (sum of parts)")
    ax.set_title(f"loss curves: {csv_path.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
