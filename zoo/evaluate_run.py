"""`zoo eval RUN`: score a trained run's model on its own split or on another dataset.

Loading a run belongs to the harness (:mod:`zoo.train.run`); this module sits beside
:mod:`zoo.compare` and :mod:`zoo.predict`, which load runs too, so that :mod:`zoo.metrics` never
reaches up into training. The metrics.json layout is :mod:`zoo.metrics.cli_eval`'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zoo.errors import UserError
from zoo.metrics.cli_eval import metrics_path, print_metrics, resolution_label


def _run_indices(loaded: Any, split: str, n_images: int) -> list[int]:
    if split == "all":
        return list(range(n_images))
    if split not in loaded.split:
        raise UserError(f"unknown split {split!r}; this run has {', '.join(loaded.split)} and all")
    return [int(i) for i in loaded.split[split]]


def eval_run(run: Path, *, data: str | None, split: str, limit: int | None, out: Path | None,
             backend: str, resolution: str = "original") -> dict[str, Any]:
    """Score the model of ``run`` (a run folder or a checkpoint file) on its own ``split`` (or on
    every image of ``data``, whose categories must be the checkpoint's), at the photos' original
    resolution unless ``resolution="input"`` (see :mod:`zoo.metrics.evaluate`).

    Writes metrics.json, results.json, results_segm.json, gt.json, confusion CSV/PNG and PR curves
    into RUN/eval/, or beside ``out``.
    """
    import torch

    from zoo.metrics.evaluate import evaluate_adapter
    from zoo.train.run import load_run, open_matching_dataset

    loaded = load_run(Path(run))
    if data is None:
        dataset = loaded.dataset  # the run's own, checked to have the checkpoint's categories
        indices = _run_indices(loaded, split, len(dataset))
    else:
        dataset = open_matching_dataset(loaded, dataclasses.replace(loaded.cfg.data, source=data, cache=None,
                                                                    limit=None))
        # The run's split indexes its own dataset; another dataset is scored whole.
        indices = list(range(len(dataset)))
        split = "all"
    if limit is not None:
        indices = indices[:limit]
    if not indices:
        raise UserError(f"{run}: no images to evaluate in split {split!r}")
    # A run folder keeps its evaluation inside; a bare checkpoint file gets a folder beside it.
    base = loaded.path / "eval" if loaded.path.is_dir() else loaded.path.with_name(f"{loaded.path.stem}-eval")
    target = metrics_path(out, base)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = evaluate_adapter(loaded.adapter, dataset, indices, device=device,
                               batch_size=loaded.cfg.batch_size, out_dir=target.parent,
                               plots=True, backend=backend, resolution=resolution)
    metrics.update(run=str(run), split=split, data=data or loaded.cfg.data.source)
    written = target.parent / "metrics.json"
    if written != target:
        written.unlink()
    target.write_text(json.dumps(metrics, indent=1))
    print_metrics(metrics, title=f"{Path(run).name} on {split} ({len(indices)} images, "
                           f"{resolution_label(metrics)})")
    print(f"wrote {target} and results.json beside it")
    return metrics
