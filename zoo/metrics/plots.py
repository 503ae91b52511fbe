"""Evaluation figures: precision-recall curves and the confusion matrix (PNG, matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

# Index of IoU 0.50 and 0.75 in COCOeval's iouThrs (0.50:0.05:0.95).
IOU_INDEX = {0.5: 0, 0.75: 5}
RECALL = np.linspace(0.0, 1.0, 101)
MAX_PANELS = 48  # per-category grid: the most frequent categories, 8 columns


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def category_curve(precision: np.ndarray, k: int, iou: float) -> np.ndarray | None:
    """Precision ``[101]`` of category index ``k`` at ``iou`` (area all, maxDets 100); None if no GT."""
    p = precision[IOU_INDEX[iou], :, k, 0, -1]
    return None if (p <= -1).all() else np.clip(p, 0.0, 1.0)


def overall_curve(precision: np.ndarray, iou: float) -> np.ndarray | None:
    """Mean precision ``[101]`` over categories with ground truth (the curve whose area is AP)."""
    p = precision[IOU_INDEX[iou], :, :, 0, -1]
    valid = (p > -1).any(axis=0)
    return p[:, valid].mean(axis=1) if valid.any() else None


def plot_pr_curves(precision: np.ndarray, names: Sequence[str], n_gt: Sequence[int], out_dir: Path,
                   title: str = "mask") -> list[Path]:
    """Write ``pr_curves.png`` (overall) and ``pr_per_category.png`` (grid of small plots).

    Args:
        precision: COCOeval ``eval["precision"]`` ``[10, 101, K, 4, 3]``.
        names, n_gt: name and ground-truth count of each of the K categories.
        out_dir: folder to write into.
    """
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for iou in IOU_INDEX:
        curve = overall_curve(precision, iou)
        if curve is not None:
            ax.plot(RECALL, curve, label=f"IoU {iou:.2f}  AP {curve.mean():.3f}")
    _style_pr_axes(ax, f"{title}: all categories")
    ax.legend(loc="lower left")
    overall = out_dir / "pr_curves.png"
    fig.savefig(overall, dpi=120, bbox_inches="tight")
    plt.close(fig)

    shown = [k for k in np.argsort(-np.asarray(n_gt), kind="stable") if n_gt[k] > 0][:MAX_PANELS]
    cols = 8 if len(shown) > 16 else 4
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.0 * rows), squeeze=False,
                             sharex=True, sharey=True)
    for ax, k in zip(axes.flat, shown):
        ap50 = 0.0
        for iou, style in zip(IOU_INDEX, ("-", "--")):
            curve = category_curve(precision, k, iou)
            if curve is not None:
                ax.plot(RECALL, curve, style, lw=1.2)
                ap50 = curve.mean() if iou == 0.5 else ap50
        ax.set_title(f"{names[k][:20]} n={n_gt[k]} AP50 {ap50:.2f}", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    hidden = sum(1 for n in n_gt if n > 0) - len(shown)
    note = f"; {hidden} rarer categories not shown" if hidden > 0 else ""
    fig.suptitle(f"{title} precision-recall per category (solid IoU .50, dashed IoU .75){note}", fontsize=9)
    fig.tight_layout()
    per_cat = out_dir / "pr_per_category.png"
    fig.savefig(per_cat, dpi=110)
    plt.close(fig)
    return [overall, per_cat]


def _style_pr_axes(ax, title: str) -> None:
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)


def plot_confusion(matrix: Tensor, names: Sequence[str], path: Path) -> Path:
    """Confusion matrix PNG: colour = share of the ground-truth row, cells show counts.

    Categories with neither ground truth nor predictions are left out so 46 classes stay legible.
    """
    plt = _pyplot()
    m = matrix.numpy()
    labels = ["background", *names]
    keep = [0] + [i for i in range(1, len(labels)) if m[i].sum() or m[:, i].sum()]
    m = m[np.ix_(keep, keep)]
    shown = [labels[i][:20] for i in keep]
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.32 * len(keep) + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fontsize = 7 if len(keep) <= 25 else 5
    for r, c in zip(*np.nonzero(m)):
        ax.text(c, r, str(m[r, c]), ha="center", va="center", fontsize=fontsize,
                color="white" if share[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(keep)), shown, rotation=90, fontsize=fontsize + 1)
    ax.set_yticks(range(len(keep)), shown, fontsize=fontsize + 1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    hidden = len(labels) - len(keep)
    ax.set_title("instances matched by mask IoU" + (f" ({hidden} empty categories hidden)" if hidden else ""))
    fig.colorbar(im, ax=ax, fraction=0.03, label="share of ground-truth row")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
