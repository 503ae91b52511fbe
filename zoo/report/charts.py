"""The comparison report's charts (matplotlib, object API: no global pyplot state).

Every chart takes plain numbers or arrays and writes one PNG. Each model keeps one colour across
all charts (:func:`model_colors`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from zoo.report.pareto import pareto_front

GT_COLOR = "#1fbf2f"  # ground-truth outlines (the source study's green)
PRED_COLOR = "#e8261b"  # prediction outlines (the source study's red)
DPI = 110


def model_colors(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One tab10 colour per model, in the given order."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def ap_vs_latency(names: Sequence[str], latency_ms: Sequence[float], ap: Sequence[float], path: Path, *,
                  ci: Sequence[tuple[float, float]] | None = None,
                  xlabel: str = "latency per image, median (ms)", ylabel: str = "mask AP") -> Path:
    """Scatter of accuracy against latency, the Pareto front as a step line, CIs as error bars.

    Args:
        names: model names (point labels).
        latency_ms: median latency per model; lower is better.
        ap: accuracy per model (mask AP in [0, 1]).
        ci: optional (low, high) interval of ``ap`` per model, drawn as vertical error bars.
    """
    if not names or min(latency_ms) <= 0:
        raise ValueError("ap_vs_latency needs at least one model and positive latencies")
    colors = model_colors(names)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    front = pareto_front(latency_ms, ap)
    if len(front) > 1:
        xs = [latency_ms[i] for i in front]
        ys = [ap[i] for i in front]
        ax.step(xs, ys, where="post", color="0.45", linestyle="--", linewidth=1.2, label="Pareto front")
    elif front:
        ax.plot([], [], color="0.45", linestyle="--", label="Pareto front")
    for i, name in enumerate(names):
        yerr = None
        if ci is not None and all(math.isfinite(v) for v in ci[i]):
            yerr = [[max(0.0, ap[i] - ci[i][0])], [max(0.0, ci[i][1] - ap[i])]]
        marker = "*" if i in front else "o"
        ax.errorbar([latency_ms[i]], [ap[i]], yerr=yerr, fmt=marker, markersize=12 if marker == "*" else 8,
                    color=colors[name], capsize=4, label=name)
        ax.annotate(name, (latency_ms[i], ap[i]), textcoords="offset points", xytext=(7, 6), fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy vs latency (up and left is better; * = on the Pareto front)", fontsize=10)
    ax.set_xlim(left=0, right=max(latency_ms) * 1.25)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def ap_axis_limit(values: Sequence[float], steps: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)) -> float:
    """The smallest of ``steps`` that holds every value with a margin: APs of 0.01-0.2 get an axis
    on which they can be told apart, instead of slivers on a 0-1 axis."""
    top = max((v for v in values if math.isfinite(v)), default=0.0)
    return next((s for s in steps if top * 1.1 <= s), steps[-1])


def per_category_ap(per_category: dict[str, dict[str, float]], path: Path, *,
                    xlabel: str = "mask AP") -> Path:
    """Horizontal grouped bars: one row per category, one bar per model.

    Args:
        per_category: model -> {category name: AP in [0, 1]}; NaN or negative (no ground truth
            in the validation split) is drawn as no bar. Categories appear in first-seen order.
    """
    names = list(per_category)
    drawn: list[float] = []
    cats: list[str] = []
    for scores in per_category.values():
        cats += [c for c in scores if c not in cats]
    colors = model_colors(names)
    height = 0.8 / max(1, len(names))
    fig = Figure(figsize=(7.0, 1.2 + 0.22 * len(cats) * max(1, len(names)) ** 0.5), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(cats))
    for k, name in enumerate(names):
        vals = [per_category[name].get(c, float("nan")) for c in cats]
        vals = [v if (v is not None and math.isfinite(v) and v >= 0) else 0.0 for v in vals]
        drawn += vals
        ax.barh(y + (k - (len(names) - 1) / 2) * height, vals, height=height, color=colors[name], label=name)
    ax.set_yticks(y, labels=cats, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("category")
    ax.set_xlim(0, ap_axis_limit(drawn))
    ax.set_title("Per-category mask AP on the validation split", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


@dataclass
class Curve:
    """One loss curve: ``x`` (step or epoch) and ``y`` (loss) of equal length."""

    label: str
    x: np.ndarray
    y: np.ndarray
    dashed: bool = False


def wants_log_scale(values: Sequence[float], span: float = 10.0) -> bool:
    """True when positive values span more than ``span`` times: a first steep drop would flatten
    the rest of a linear plot (a one-stage detector starts at 100x its later loss)."""
    finite = [v for v in values if np.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > span


def loss_curves(curves: dict[str, list[Curve]], path: Path, *, xlabel: str = "optimizer step") -> Path:
    """One panel per model (loss scales differ between architectures), curves inside it."""
    names = list(curves)
    cols = max(1, len(names))
    fig = Figure(figsize=(4.2 * cols, 3.4), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, name in zip(axes, names):
        for curve in curves[name]:
            ax.plot(curve.x, curve.y, marker="o" if len(curve.x) < 30 else None, markersize=3,
                    linestyle="--" if curve.dashed else "-", label=curve.label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        log = wants_log_scale([v for curve in curves[name] for v in curve.y])
        if log:
            ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)" if log else "loss")
        ax.grid(True, alpha=0.3)
        if curves[name]:
            ax.legend(fontsize=7)
    fig.suptitle("Training and validation loss", fontsize=11)
    return _save(fig, path)


@dataclass
class Instances:
    """Instances drawn on one gallery cell: bool masks ``[N, H, W]`` and a text per instance."""

    masks: np.ndarray
    texts: list[str]


def _outline(ax, inst: Instances, color: str, max_labels: int = 8) -> None:
    """Outline every mask; label only the ``max_labels`` largest so small parts stay readable."""
    areas = [int(m.sum()) for m in inst.masks]
    labelled = set(sorted(range(len(areas)), key=lambda i: -areas[i])[:max_labels])
    for i, (mask, text) in enumerate(zip(inst.masks, inst.texts)):
        if not areas[i]:
            continue
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.3)
        if i in labelled and text:
            ys, xs = np.nonzero(mask)
            ax.text(xs.min(), ys.min(), text, color="white", fontsize=6, va="bottom", clip_on=True,
                    bbox=dict(facecolor=color, alpha=0.75, pad=0.6, linewidth=0))


def gallery(images: Sequence[np.ndarray], gt: Sequence[Instances], preds: dict[str, Sequence[Instances]],
            path: Path, *, titles: Sequence[str] | None = None) -> Path:
    """Rows = validation images, columns = ground truth then each model.

    Every model cell shows the ground truth as green outlines and that model's prediction as red
    outlines (labelled with category and score), as in the source study's figures. Only the 8
    largest instances of a cell carry a label.

    Args:
        images: uint8 ``[H, W, 3]`` arrays.
        gt: ground-truth instances per image.
        preds: model -> predicted instances per image.
        titles: optional row labels (e.g. image file names).
    """
    cols = 1 + len(preds)
    rows = len(images)
    fig = Figure(figsize=(2.7 * cols, 2.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, image in enumerate(images):
        axes[r][0].imshow(image)
        _outline(axes[r][0], gt[r], GT_COLOR)
        axes[r][0].set_ylabel(titles[r] if titles else f"image {r}", fontsize=7)
        for c, (name, insts) in enumerate(preds.items(), start=1):
            ax = axes[r][c]
            ax.imshow(image)
            _outline(ax, Instances(gt[r].masks, [""] * len(gt[r].texts)), GT_COLOR)
            _outline(ax, insts[r], PRED_COLOR)
        for c, head in enumerate(["ground truth", *preds]):
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(head, fontsize=9)
    fig.suptitle("green: ground truth  -  red: prediction", fontsize=10)
    return _save(fig, path)


def bootstrap_forest(names: Sequence[str], estimates: Sequence[float], intervals: Sequence[tuple[float, float]],
                     path: Path, *, xlabel: str = "mask AP", title: str = "") -> Path:
    """Horizontal points with interval bars (a forest plot); a zero line when values straddle 0."""
    fig = Figure(figsize=(6.4, 0.9 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    for k, (est, (lo, hi)) in enumerate(zip(estimates, intervals)):
        # Intervals that exclude 0 are drawn strong: those are the differences that are real.
        strong = lo > 0 or hi < 0
        ax.errorbar([est], [k], xerr=[[est - lo], [hi - est]], fmt="o", capsize=4,
                    color="tab:blue" if strong else "0.6")
    if min(lo for lo, _ in intervals) < 0 < max(hi for _, hi in intervals):
        ax.axvline(0.0, color="0.4", linewidth=1, linestyle=":")
    ax.set_yticks(y, labels=list(names), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title or "95% bootstrap intervals", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def pr_curves(curves: dict[str, dict[float, np.ndarray]], path: Path) -> Path:
    """Precision against recall of every model on one axes: solid IoU .50, dashed IoU .75.

    Args:
        curves: model -> {IoU threshold: precision ``[101]`` at recall 0, 0.01, ..., 1}.
    """
    colors = model_colors(list(curves))
    recall = np.linspace(0.0, 1.0, 101)
    fig = Figure(figsize=(6.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for name, by_iou in curves.items():
        for iou, precision in sorted(by_iou.items()):
            ax.plot(recall, precision, color=colors[name], linestyle="-" if iou < 0.6 else "--",
                    label=f"{name}, IoU {iou:.2f} (AP {float(np.mean(precision)):.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Mask precision-recall, all categories (solid IoU .50, dashed IoU .75)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)
