"""Score any adapter on dataset images: COCO segm/bbox, per-category AP, confusion, semantic mIoU.

Two resolutions (``metrics["resolution"]`` says which one a number is at):

* ``"original"`` (the default, what ``zoo eval``, ``zoo compare`` and ``zoo train`` report): each
  photo at its own size against the source's own annotation, with the source's image and category
  ids (:mod:`zoo.metrics.original`). The written ``results.json`` and ``gt.json`` are standard
  COCO files that pycocotools, faster-coco-eval and the Fashionpedia API load as they are (mask AP
  from ``results_segm.json``: with a box in a row, ``loadRes`` takes the box area as the object's
  area and puts masks in the wrong small/medium/large range; zoo, like detectron2, uses the mask
  area). When
  some photos were resized for the network, the same predictions are also scored at the input
  size (``metrics["at_input_size"]``), so one run says how much that would over- or understate AP.
* ``"input"``: at the size the dataset reads (image id = dataset index, ground truth that vanishes
  at that size dropped), cheap enough for every epoch.

One pass over the images: each batch is predicted, encoded to COCO results and folded into the
confusion and semantic accumulators, so memory does not grow with full-size masks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from zoo.adapter import Adapter
from zoo.errors import UserError
from zoo.metrics.attributes import attribute_metrics
from zoo.metrics.coco import (coco_categories, coco_image_entry, prepare_gt, preds_to_results, score_coco,
                              target_to_annotations)
from zoo.metrics.confusion import ConfusionMatrix
from zoo.metrics.original import OriginalImage, original_images, original_results, rle_of
from zoo.metrics.semantic import SemanticScores
from zoo.types import InstancePred

RESOLUTIONS: tuple[str, ...] = ("original", "input")


def to_model_image(image: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A dataset image uint8 ``[3, H, W]`` -> float32 ``[3, H, W]`` in ``[0, 1]`` on ``device``."""
    # Move the uint8 tensor first: a quarter of the bytes of the float copy.
    return image.as_subclass(torch.Tensor).to(device).float().div_(255.0)


def _check_pred(pred: InstancePred, height: int, width: int, num_classes: int, who: str) -> None:
    """The adapter contract, checked once per image so a broken adapter fails with a clear message."""
    if tuple(pred.masks.shape[-2:]) != (height, width) and len(pred):
        raise ValueError(f"{who}: masks {tuple(pred.masks.shape)} are not at the image size {(height, width)}")
    if len(pred) and (int(pred.labels.min()) < 1 or int(pred.labels.max()) > num_classes):
        raise ValueError(f"{who}: labels must be in 1..{num_classes}, got {pred.labels.tolist()}")


@dataclass
class CocoSet:
    """COCO ground truth and results gathered image by image."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def gt(self, categories: list[Any], attributes: dict[int, str] | None = None) -> dict[str, Any]:
        """A COCO instance file; ``attributes`` (id -> name) as Fashionpedia files list them."""
        gt = {"images": self.images, "annotations": self.annotations, "categories": coco_categories(categories)}
        if attributes:
            gt["attributes"] = [{"id": k, "name": v} for k, v in sorted(attributes.items())]
        return gt


class Evaluation:
    """The accumulators of one :func:`evaluate_adapter` pass (detectron2's evaluator shape:
    :meth:`process` per batch, then :meth:`evaluate`)."""

    def __init__(self, dataset: Any, indices: Sequence[int], resolution: str, score_threshold: float) -> None:
        if resolution not in RESOLUTIONS:
            raise UserError(f"unknown resolution {resolution!r}; choose one of {', '.join(RESOLUTIONS)}")
        self.dataset, self.resolution = dataset, resolution
        self.categories = list(dataset.categories)
        self.label_to_cat = {c.label: c.id for c in self.categories}
        num_classes = len(self.categories)
        self.confusion = ConfusionMatrix(num_classes, iou_threshold=0.5, score_threshold=score_threshold)
        self.semantic = SemanticScores(num_classes, score_threshold=score_threshold)
        self.at_input = CocoSet()
        self.at_original = CocoSet()
        self.originals: dict[int, OriginalImage] = {}
        self.note: str | None = None  # why "original" is not the photos' full size (a cache alone)
        if resolution == "original":
            self.originals, self.note = original_images(dataset, indices)

    def process(self, idx: int, image: torch.Tensor, target: dict[str, Any], pred: InstancePred) -> None:
        """Fold one image (dataset index ``idx``, its sample and the adapter's prediction) in."""
        h, w = int(image.shape[-2]), int(image.shape[-1])
        self.at_input.images.append(coco_image_entry(self.dataset, idx, h, w))
        self.at_input.annotations += target_to_annotations(target, idx, self.label_to_cat,
                                                           len(self.at_input.annotations) + 1)
        self.at_input.results += preds_to_results([pred], [idx], self.label_to_cat)
        if self.resolution == "input":
            self.confusion.update(pred, target)
            self.semantic.update(pred, target)
            return
        original = self.originals[idx]
        rows = original_results(pred, original, self.label_to_cat)
        self.at_original.images.append(original.image)
        self.at_original.annotations += original.annotations
        self.at_original.results += rows
        self._fold_rles(original, rows)

    def _fold_rles(self, original: OriginalImage, rows: list[dict[str, Any]]) -> None:
        """Confusion and semantic sums at full size, from the RLEs (no dense mask)."""
        height, width = original.size
        cat_to_label = {c.id: c.label for c in self.categories}
        gts = [a for a in original.annotations if not a.get("iscrowd", 0)]
        gt_labels = [cat_to_label[a["category_id"]] for a in gts]
        gt_rles = [rle_of(a["segmentation"], height, width) for a in gts]
        labels = [cat_to_label[r["category_id"]] for r in rows]
        scores = [r["score"] for r in rows]
        rles = [rle_of(r["segmentation"], height, width) for r in rows]
        self.confusion.update_rles(labels, scores, rles, gt_labels, gt_rles)
        self.semantic.update_rles(labels, scores, rles, gt_labels, gt_rles, height, width)

    def resized(self) -> int:
        """How many of the scored photos reached the network at another size than their own."""
        return sum(o.resized for o in self.originals.values())


def _resolution_info(dataset: Any, evaluation: Evaluation) -> dict[str, Any]:
    spec = getattr(dataset, "resize", None)
    info = {"scored_at": evaluation.resolution}
    if spec is not None:
        info.update(input_max_size=spec.max_size, input_resize=spec.mode)
    if evaluation.resolution == "original":
        info["n_resized"] = evaluation.resized()
    if evaluation.note:
        info.update(scored_at="cache", note=evaluation.note)
    return info


def evaluate_adapter(adapter: Adapter, dataset: Any, indices: Sequence[int], *, device: str = "cpu",
                     batch_size: int = 2, out_dir: Path | None = None, plots: bool = False,
                     backend: str = "faster", score_threshold: float = 0.5,
                     resolution: str = "original") -> dict[str, Any]:
    """Predict ``dataset[indices]`` with ``adapter`` and score the predictions.

    Args:
        adapter: any registered architecture (moved to ``device``; left in its train/eval mode).
        dataset: ``dataset[i] -> (uint8 [3, H, W], target)``, ``.categories``, ``.image_ids``; for
            ``resolution="original"`` an InstanceDataset (its ``source``, ``records``, ``resize``).
        indices: dataset indices to score.
        batch_size: images per ``predict`` call.
        out_dir: when given, write ``results.json`` (COCO results: compressed RLE, bbox, score),
            ``results_segm.json`` (the same without boxes: COCO's segmentation results format),
            ``gt.json``, ``metrics.json`` and ``confusion.csv``; with ``plots`` also
            ``pr_curves.png``, ``pr_per_category.png`` (mask IoU .50/.75) and ``confusion.png``.
        backend: ``faster`` or ``pycocotools``.
        score_threshold: detections below it are left out of the confusion matrix and the
            semantic maps (COCO AP uses every detection).
        resolution: ``"original"`` or ``"input"`` (see the module docstring).
    Returns:
        :func:`zoo.metrics.coco.evaluate_coco`'s dict plus ``"resolution"``, ``"semantic"`` (mIoU,
        pixel_acc), ``"confusion"`` (summary counts), ``"n_images"``, ``"time_s"``, when the
        ground truth has attributes ``"attributes"`` (:func:`zoo.metrics.attributes.attribute_metrics`:
        AP with IoU and F1 when the adapter predicts attributes) and, at the original resolution
        with resized photos, ``"at_input_size"`` (``segm``/``bbox`` stats); per-category rows gain
        the semantic ``"IoU"``.
    """
    start = time.perf_counter()
    indices = [int(i) for i in indices]
    evaluation = Evaluation(dataset, indices, resolution, score_threshold)
    adapter.to(device)
    for first in range(0, len(indices), batch_size):
        batch = indices[first:first + batch_size]
        samples = [dataset[i] for i in batch]
        preds = [p.to("cpu") for p in adapter.predict([to_model_image(im, device) for im, _ in samples])]
        for idx, (image, target), pred in zip(batch, samples, preds):
            _check_pred(pred, int(image.shape[-2]), int(image.shape[-1]), len(evaluation.categories),
                        f"adapter {adapter.name!r} on image {idx}")
            evaluation.process(idx, image, target, pred)
    headline = evaluation.at_original if resolution == "original" else evaluation.at_input
    source = getattr(dataset, "source", None)
    attributes = source.attributes if source is not None else None
    gt = prepare_gt(headline.gt(evaluation.categories, attributes))  # boxes and areas filled in
    scores = score_coco(gt, headline.results, backend)
    metrics = scores.metrics
    attribute_scores = attribute_metrics(gt, headline.results, predicts=adapter.num_attributes > 0)
    if attribute_scores is not None:
        metrics["attributes"] = attribute_scores
    ious = evaluation.semantic.per_category_iou()
    for c in evaluation.categories:
        if c.name in metrics["per_category"] and c.label in ious:
            metrics["per_category"][c.name]["IoU"] = ious[c.label]
    metrics["resolution"] = _resolution_info(dataset, evaluation)
    if resolution == "original" and evaluation.resized():
        small = score_coco(evaluation.at_input.gt(evaluation.categories), evaluation.at_input.results, backend)
        metrics["at_input_size"] = {k: small.metrics[k] for k in ("segm", "bbox")}
    metrics.update(semantic=evaluation.semantic.result(), confusion=evaluation.confusion.summary(),
                   backend=backend, n_images=len(indices), n_detections=len(headline.results),
                   time_s=round(time.perf_counter() - start, 3))
    if out_dir is not None:
        write_outputs(Path(out_dir), metrics, gt, headline.results, scores, evaluation.confusion,
                      evaluation.categories, plots)
    return metrics


def write_outputs(out_dir: Path, metrics: dict[str, Any], gt: dict[str, Any], results: list[dict[str, Any]],
                  scores: Any, confusion: ConfusionMatrix, categories: list[Any], plots: bool) -> list[Path]:
    """Write the evaluation files into ``out_dir`` (created); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    segm_only = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    for name, data in (("results.json", results), ("results_segm.json", segm_only), ("gt.json", gt),
                       ("metrics.json", metrics)):
        path = out_dir / name
        path.write_text(json.dumps(data, indent=1 if name == "metrics.json" else None))
        written.append(path)
    names = [c.name for c in sorted(categories, key=lambda c: c.label)]
    confusion.write_csv(out_dir / "confusion.csv", names)
    written.append(out_dir / "confusion.csv")
    if plots:
        from zoo.metrics.plots import plot_confusion, plot_pr_curves

        by_id = {c.id: c for c in categories}
        cats = [by_id[cid] for cid in scores.cat_ids]
        n_gt = [metrics["per_category"].get(c.name, {}).get("n_gt", 0) for c in cats]
        written += plot_pr_curves(scores.precision["segm"], [c.name for c in cats], n_gt, out_dir)
        written.append(plot_confusion(confusion.matrix, names, out_dir / "confusion.png"))
    return written
