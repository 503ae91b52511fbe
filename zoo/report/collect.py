"""Gather what one compared model left on disk: its run folder and its evaluation folder.

A run folder (written by the training harness) holds ``config.yaml``, ``summary.json`` and
``metrics.csv``. The evaluation folder (written by ``zoo compare``) holds the evaluator's
``metrics.json`` (scored at the original resolution, with the input-size numbers beside them
when the photos were resized), ``results.json``, ``gt.json`` and plots, and the latency
protocol's ``bench.json``. The report reads only these files, so its numbers are the files' numbers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools import mask as mask_utils

from zoo.adapter import Adapter, get_adapter
from zoo.errors import UserError
from zoo.report.charts import Curve

DERIVED_MARK = "†"  # after a model's name: its instances are derived from a semantic map
from zoo.report.document import Table


def read_json(path: Path) -> Any:
    """A JSON file, or a one-line error naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None


@dataclass
class ModelResult:
    """Everything the report shows about one model (all read from files)."""

    name: str
    run_dir: Path
    eval_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, Any]
    bench: dict[str, Any]
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def adapter(self) -> str:
        return str(self.config.get("adapter", self.name))

    def _declared(self) -> type[Adapter] | None:
        """The adapter class the run names, whose declared fields the report reads (None: unknown)."""
        try:
            return get_adapter(self.adapter)
        except KeyError:
            return None

    @property
    def instance_native(self) -> bool:
        """The adapter's declared ``instance_native``: False when its instances are derived from a
        semantic map (connected components), not predicted as instances (unknown adapter: True)."""
        cls = self._declared()
        return True if cls is None else bool(cls.instance_native)

    @property
    def label(self) -> str:
        """The name as every table shows it: marked with :data:`DERIVED_MARK` when derived."""
        return self.name if self.instance_native else f"{self.name} {DERIVED_MARK}"

    @property
    def backbone(self) -> str:
        """The latency protocol's record of it, else the model field the adapter declares as
        ``backbone_option``."""
        if self.bench.get("backbone"):
            return str(self.bench["backbone"])
        cls, model = self._declared(), self.config.get("model") or {}
        option = cls.backbone_option if cls is not None else None
        return str(model[option]) if option and model.get(option) else "-"

    @property
    def input_size(self) -> int:
        """Longest image side given to ``predict`` (the data section's ``max_size``)."""
        return int((self.config.get("data") or {}).get("max_size", 0))

    @property
    def network_size(self) -> int | None:
        """The side the network resizes to internally: the largest of the model fields the adapter
        declares as ``input_size_fields``, when its config sets one."""
        cls, model = self._declared(), self.config.get("model") or {}
        sizes = [model[f] for f in (cls.input_size_fields if cls is not None else ()) if isinstance(model.get(f), int)]
        return max(sizes) if sizes else None

    @property
    def train_time_s(self) -> float | None:
        value = self.summary.get("train_time_s")
        return float(value) if value is not None else None

    def loss_curves(self) -> list[Curve]:
        """Training loss per logged step and validation loss per epoch, from ``metrics.csv``."""
        train = [(int(r["step"]), float(r["loss"])) for r in self.history if r.get("kind") == "step" and r.get("loss")]
        val = [(int(r["step"]), float(r["val_loss"])) for r in self.history
               if r.get("kind") == "epoch" and r.get("val_loss")]
        curves = []
        if train:
            curves.append(Curve("train (per step)", *map(np.asarray, zip(*train))))
        if val:
            curves.append(Curve("validation (per epoch)", *map(np.asarray, zip(*val)), dashed=True))
        return curves


def read_history(path: Path) -> list[dict[str, str]]:
    """Rows of a run's ``metrics.csv`` (empty when the run has none yet)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def collect_model(name: str, run_dir: Path, eval_dir: Path) -> ModelResult:
    """Read one model's files; a missing evaluation or latency file is a one-line error."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    config = yaml.safe_load(config_path.read_text()) or {}
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.is_file() else {}
    return ModelResult(name=name, run_dir=run_dir, eval_dir=eval_dir, config=config, summary=summary,
                       metrics=read_json(eval_dir / "metrics.json"), bench=read_json(eval_dir / "bench.json"),
                       history=read_history(run_dir / "metrics.csv"))


def decode_instances(anns: list[dict[str, Any]]) -> np.ndarray:
    """Bool masks ``[N, H, W]`` of COCO annotations/results with compressed-RLE segmentations."""
    if not anns:
        return np.zeros((0, 0, 0), dtype=bool)
    rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode("ascii")}
            if isinstance(a["segmentation"]["counts"], str) else a["segmentation"] for a in anns]
    return np.asarray(mask_utils.decode(rles), dtype=bool).transpose(2, 0, 1)


def resolution_of(metrics: dict[str, Any]) -> str:
    """Where a model's numbers were scored, as a phrase (from ``metrics.json``), e.g. ``at the
    original resolution`` or ``at the input size (128 px)``."""
    from zoo.metrics.cli_eval import resolution_label

    scored_at = (metrics.get("resolution") or {}).get("scored_at")
    return f"at the {resolution_label(metrics)}" if scored_at in ("original", "input") else f"({resolution_label(metrics)})"


def resolution_table(results: list[ModelResult]) -> Table | None:
    """Mask AP at the original resolution beside the same predictions scored at the input size,
    and how much the input size over- or understates it; ``None`` when no model's photos were
    resized (then the two are the same numbers)."""
    rows = []
    for r in results:
        small = (r.metrics.get("at_input_size") or {}).get("segm")
        if small is None:
            continue
        full = r.metrics["segm"]
        diff = small["AP"] - full["AP"]
        word = "overstates" if diff > 0 else "understates" if diff < 0 else "matches"
        rows.append((r.label, f"{full['AP']:.3f}", f"{small['AP']:.3f}", f"{diff:+.3f} ({word})",
                     f"{full['APs']:.3f} / {full['APm']:.3f} / {full['APl']:.3f}",
                     f"{small['APs']:.3f} / {small['APm']:.3f} / {small['APl']:.3f}",
                     str((r.metrics.get("resolution") or {}).get("input_max_size", "-"))))
    if not rows:
        return None
    return Table(("model", "mask AP (original)", "mask AP (input size)", "input size - original",
                  "APs / APm / APl (original)", "APs / APm / APl (input size)", "input (px)"), tuple(rows),
                 ("l", "r", "r", "r", "r", "r", "r"))
