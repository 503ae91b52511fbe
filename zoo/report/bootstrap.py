"""Bootstrap confidence intervals for mask AP and for the differences between models.

The validation images are resampled with replacement; every resample is scored with COCO AP
for every model on the *same* drawn images, so the pairwise differences are paired and their
interval says whether a gap is more than the luck of which images ended up in the validation
split. Scoring a resample reuses the evaluator's per-image matching (:class:`PerImageAP`); the
result equals scoring the resampled image set from scratch with
:func:`zoo.metrics.coco.evaluate_coco`, which ``bootstrap_ap(..., evaluate=...)`` still does.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

Evaluate = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Interval:
    """A point estimate on the full validation set and a percentile interval around it."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of 0 (the difference is real)."""
        return self.low > 0.0 or self.high < 0.0


@dataclass
class BootstrapResult:
    """Intervals for each model's metric and for each ordered pair ``(a, b)`` of ``a - b``.

    ``samples[name]`` float ``[R]`` is the model's metric on each resample; ``draws`` int64
    ``[R, n_images]`` holds the image ids of each resample, the same for every model.
    """

    metric: tuple[str, str]
    n_images: int
    n_resamples: int
    confidence: float
    models: dict[str, Interval] = field(default_factory=dict)
    differences: dict[tuple[str, str], Interval] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))


def _group_by_image(items: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[int(item["image_id"])].append(item)
    return groups


class CocoResampler:
    """Builds resampled COCO ground truth and results from a draw of image ids.

    A drawn image appears once per time it was drawn, each time under a new image id, so the
    evaluator counts its ground truth and its detections that many times.
    """

    def __init__(self, gt: dict[str, Any], results: dict[str, list[dict[str, Any]]]) -> None:
        self.gt = gt
        self.images = {int(im["id"]): im for im in gt["images"]}
        self.gt_by_image = _group_by_image(gt["annotations"])
        self.res_by_image = {name: _group_by_image(r) for name, r in results.items()}

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.images)

    def gt_for(self, draw: np.ndarray) -> dict[str, Any]:
        """COCO ground truth for the drawn image ids (new ids ``0..len(draw)-1``)."""
        images, anns = [], []
        for new_id, old_id in enumerate(int(i) for i in draw):
            images.append({**self.images[old_id], "id": new_id})
            for ann in self.gt_by_image.get(old_id, []):
                anns.append({**ann, "image_id": new_id, "id": len(anns) + 1})
        return {**self.gt, "images": images, "annotations": anns}

    def results_for(self, name: str, draw: np.ndarray) -> list[dict[str, Any]]:
        """Model ``name``'s detections on the drawn images, renumbered like :meth:`gt_for`."""
        by_image = self.res_by_image[name]
        return [{**det, "image_id": new_id}
                for new_id, old_id in enumerate(int(i) for i in draw)
                for det in by_image.get(old_id, [])]


class PerImageAP:
    """COCO AP of any resample of the validation images from one per-image evaluation.

    COCO matches detections to ground truth image by image (and category), so an image drawn
    twice contributes the same per-image evaluation twice. The evaluator's per-image step
    (faster-coco-eval ``COCOeval_faster`` with ``separate_eval``; area range "all", 100
    detections, i.e. the ranges of AP/AP50/AP75) runs once; each resample re-runs only its C++
    ``accumulate`` on the drawn images' evaluations. That is the AP that scoring the resampled
    image set from scratch gives (tested), at a small fraction of the cost.
    """

    def __init__(self, gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str = "segm") -> None:
        from faster_coco_eval import COCO, COCOeval_faster

        from zoo.metrics.coco import check_results, prepare_gt

        gt = prepare_gt(gt)
        check_results(results, gt)
        dets = [dict(d) for d in results]
        if iou_type == "segm":
            for d in dets:  # as the evaluator does: mask AP uses the mask, not the box
                d.pop("bbox", None)
        coco_gt = COCO()
        coco_gt.dataset = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes rejects an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            coco_dt.createIndex()
        self.ev = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=lambda *a, **k: None,
                                  separate_eval=True)
        self.ev.params.areaRng, self.ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        self.ev.params.maxDets = [100]
        self.ev.evaluate()
        self.image_ids = [int(i) for i in self.ev.params.imgIds]  # sorted, as COCOeval keeps them
        self.position = {img: i for i, img in enumerate(self.image_ids)}
        self.per_image = list(self.ev._evalImgs_cpp)  # [K * I], category-major (as accumulate reads it)

    def precision(self, draw: Sequence[int]) -> np.ndarray:
        """COCO precision ``[T, R, K]`` of the image multiset ``draw`` (image ids, repeats allowed)."""
        n_img = len(self.image_ids)
        pos = [self.position[int(i)] for i in draw]
        n_cat = len(self.per_image) // max(1, n_img)
        self.ev._evalImgs_cpp = [self.per_image[k * n_img + p] for k in range(n_cat) for p in pos]
        self.ev.params.imgIds = self.ev._paramsEval.imgIds = list(range(len(pos)))
        try:
            self.ev.accumulate()
        finally:
            self.ev._evalImgs_cpp = self.per_image
            self.ev.params.imgIds = self.ev._paramsEval.imgIds = self.image_ids
        return np.asarray(self.ev.eval["precision"])[:, :, :, 0, 0]

    def score(self, draw: Sequence[int], name: str = "AP") -> float:
        """``AP`` (IoU .50:.95), ``AP50`` or ``AP75`` of the drawn images; NaN when undefined."""
        p = self.precision(draw)
        p = p if name == "AP" else p[{"AP50": 0, "AP75": 5}[name]]
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else float("nan")


def _metric(scores: dict[str, Any], metric: tuple[str, str]) -> float:
    value = float(scores[metric[0]][metric[1]])
    # COCO writes -1 when a metric is undefined (no ground truth at all in the resample).
    return float("nan") if value < 0 else value


def percentile_interval(estimate: float, samples: np.ndarray, confidence: float) -> Interval:
    """The ``confidence`` percentile interval of ``samples`` (NaN resamples ignored)."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return Interval(estimate, float("nan"), float("nan"))
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_ap(gt: dict[str, Any], results: dict[str, list[dict[str, Any]]], *,
                 n_resamples: int = 200, seed: int = 0, confidence: float = 0.95,
                 metric: tuple[str, str] = ("segm", "AP"), evaluate: Evaluate | None = None,
                 progress: Progress | None = None) -> BootstrapResult:
    """Paired bootstrap of ``metric`` for every model in ``results``.

    Args:
        gt: COCO ground truth of the validation images (the same for every model).
        results: model name -> COCO results list on those images.
        n_resamples: number of image-level resamples (each scores every model once).
        seed: seed of the resampling generator (same seed, same intervals).
        confidence: interval coverage, e.g. 0.95 for the 2.5th-97.5th percentiles.
        metric: ``(iou_type, name)``: ``("segm", "AP")`` = mask AP; names AP, AP50, AP75.
        evaluate: score every resample from scratch with this evaluator (e.g.
            :func:`zoo.metrics.coco.evaluate_coco`) on a rebuilt resampled COCO set; by default
            :class:`PerImageAP` gives the same numbers much faster.
        progress: called as ``progress(done, total)`` after every resample.
    Returns:
        Intervals per model and per ordered pair; raw resampled values in ``samples``, the
        drawn image ids in ``draws``.
    """
    ids = np.asarray(sorted(int(im["id"]) for im in gt["images"]))
    if ids.size == 0:
        raise ValueError("bootstrap needs at least one validation image")
    score = _scorer(gt, results, metric, evaluate)
    names = list(results)
    full = {n: score(n, ids) for n in names}
    rng = np.random.default_rng(seed)
    samples = {n: np.empty(n_resamples) for n in names}
    draws = np.empty((n_resamples, ids.size), dtype=np.int64)
    for r in range(n_resamples):
        # One draw per resample, scored for every model: the differences are paired.
        draw = draws[r] = rng.choice(ids, size=ids.size, replace=True)
        for n in names:
            samples[n][r] = score(n, draw)
        if progress is not None:
            progress(r + 1, n_resamples)
    out = BootstrapResult(metric, int(ids.size), n_resamples, confidence, samples=samples, draws=draws)
    out.models = {n: percentile_interval(full[n], samples[n], confidence) for n in names}
    for a, b in itertools.permutations(names, 2):
        out.differences[(a, b)] = percentile_interval(full[a] - full[b], samples[a] - samples[b], confidence)
    return out


def _scorer(gt: dict[str, Any], results: dict[str, list[dict[str, Any]]], metric: tuple[str, str],
            evaluate: Evaluate | None) -> Callable[[str, np.ndarray], float]:
    """``score(model, draw)``: the metric of one model on the drawn image ids."""
    if evaluate is None:
        try:
            per_image = {n: PerImageAP(gt, r, metric[0]) for n, r in results.items()}
            return lambda name, draw: per_image[name].score(draw, metric[1])
        except (ImportError, AttributeError, TypeError) as exc:
            # PerImageAP reads faster-coco-eval internals (separate_eval, _evalImgs_cpp) that a
            # future release may rename; scoring each resample from scratch gives the same numbers.
            warnings.warn(f"faster-coco-eval per-image evaluation unavailable ({exc}); "
                          "the bootstrap scores each resample with pycocotools (slower)", stacklevel=2)
            from zoo.metrics.coco import evaluate_coco

            evaluate = functools.partial(evaluate_coco, backend="pycocotools", iou_types=(metric[0],))
    resampler = CocoResampler(gt, results)
    cache: dict[bytes, dict[str, Any]] = {}

    def score(name: str, draw: np.ndarray) -> float:
        key = draw.tobytes()
        if key not in cache:  # the models of one resample share its ground truth
            cache.clear()
            cache[key] = resampler.gt_for(draw)
        return _metric(evaluate(cache[key], resampler.results_for(name, draw)), metric)

    return score
