"""Confusion matrix of instances (mask IoU matching) on a hand-built case."""

from __future__ import annotations

import torch

from zoo.metrics.confusion import ConfusionMatrix, mask_iou, match_by_iou
from zoo.types import InstancePred


def _box(x0: int, y0: int, x1: int, y1: int, size: int = 40) -> torch.Tensor:
    m = torch.zeros((size, size), dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _pred(items: list[tuple[torch.Tensor, int, float]]) -> InstancePred:
    masks = torch.stack([m for m, _, _ in items])
    return InstancePred(boxes=torch.zeros((len(items), 4)), labels=torch.tensor([lab for _, lab, _ in items]),
                        scores=torch.tensor([s for _, _, s in items]), masks=masks)


A, B, C = _box(0, 0, 10, 10), _box(20, 0, 30, 10), _box(0, 20, 10, 30)


def test_mask_iou_known_values() -> None:
    half = _box(0, 0, 10, 5)
    iou = mask_iou(torch.stack([A, half, B]), torch.stack([A]))
    assert torch.allclose(iou[:, 0], torch.tensor([1.0, 0.5, 0.0]))
    assert mask_iou(torch.zeros((0, 40, 40), dtype=torch.bool), A[None]).shape == (0, 1)


def test_matching_takes_highest_iou_first() -> None:
    iou = torch.tensor([[0.6, 0.0], [0.9, 0.55]])
    # (1, 0) at 0.9 wins; (0, 0) and (1, 1) then find their column/row taken
    assert match_by_iou(iou, 0.5) == [(1, 0)]
    assert match_by_iou(iou, 0.58) == [(1, 0)]
    assert sorted(match_by_iou(iou[:, 1:], 0.5)) == [(1, 0)]
    assert match_by_iou(iou, 0.95) == []


def test_hand_built_confusion() -> None:
    target = {"labels": torch.tensor([1, 2, 3]), "masks": torch.stack([A, B, C]).to(torch.uint8)}
    pred = _pred([
        (A, 1, 0.6),                  # A correct                            -> [1, 1]
        (_box(0, 0, 10, 6), 2, 0.95),  # on A with IoU 0.6 < A's own 1.0 match -> spurious [0, 2]
        (B, 3, 0.8),                  # B taken for category 3               -> [2, 3]
        (_box(30, 30, 40, 40), 2, 0.7),  # nothing there                     -> spurious [0, 2]
        (C, 3, 0.2),                  # below the score threshold: ignored, so C is missed -> [3, 0]
    ])
    cm = ConfusionMatrix(num_classes=3, iou_threshold=0.5, score_threshold=0.5)
    cm.update(pred, target)
    expected = torch.tensor([[0, 0, 2, 0],
                             [0, 1, 0, 0],
                             [0, 0, 0, 1],
                             [1, 0, 0, 0]])
    assert torch.equal(cm.matrix, expected)
    # a second image with nothing predicted adds only misses
    cm.update(InstancePred.empty(40, 40), target)
    assert cm.matrix[1:, 0].tolist() == [1, 1, 2]
    assert cm.summary() == {"correct": 1, "wrong_category": 1, "missed": 4, "spurious": 2,
                            "iou_threshold": 0.5, "score_threshold": 0.5}


def test_confusion_csv_has_background_row_and_column(tmp_path) -> None:
    cm = ConfusionMatrix(num_classes=2)
    cm.update(_pred([(A, 2, 0.9)]), {"labels": torch.tensor([1]), "masks": A[None].to(torch.uint8)})
    cm.write_csv(tmp_path / "c.csv", ["shirt", "dress"])
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "gt \\ pred,background,shirt,dress"
    assert lines[2] == "shirt,0,0,1"
    assert len(lines) == 4


def test_rle_update_matches_the_dense_update() -> None:
    """The full-size path (masks as COCO RLE, IoU by pycocotools) counts what the dense one counts."""
    from zoo.metrics.coco import masks_to_rles

    pred = _pred([(A, 1, 0.9), (_box(0, 0, 10, 8), 2, 0.8), (B, 3, 0.9), (_box(22, 2, 30, 10), 2, 0.7),
                  (C, 3, 0.2)])
    target = {"labels": torch.tensor([1, 2, 3]), "masks": torch.stack([A, B, C])}
    dense, runs = ConfusionMatrix(3), ConfusionMatrix(3)
    dense.update(pred, target)
    runs.update_rles(pred.labels.tolist(), pred.scores.tolist(), masks_to_rles(pred.masks), [1, 2, 3],
                     masks_to_rles(target["masks"]))
    assert torch.equal(dense.matrix, runs.matrix)
    assert dense.summary() == runs.summary() == {**dense.summary(), "correct": 1, "wrong_category": 1,
                                                 "missed": 1, "spurious": 2}
