"""YOLACT parts: anchors, matching, box coding, Fast NMS, crop, OHEM, losses, detection, weights, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision import tv_tensors
from torchvision.ops import batched_nms

import zoo.adapters  # noqa: F401  (registers "yolact")
from conftest import OpNames
from zoo.adapters.yolact import YolactAdapter, YolactConfig
from zoo.adapters.yolact.adapter import PAPER_PYRAMID
from zoo.adapters.yolact.boxes import center_size, crop, decode, encode, fast_nms, make_anchors, match, point_form
from zoo.adapters.yolact.loss import ImageTarget, LossSettings, instance_mask_loss, ohem_negatives
from zoo.adapters.yolact.network import RawOutput
from zoo.build import build_adapter
from zoo.config import load_yaml, train_config_from_dict
from zoo.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"fpn_channels": 32, "proto_channels": 32, "num_prototypes": 8}  # fast network, same structure


def _target(h: int, w: int, boxes: list[tuple[int, int, int, int]], labels: list[int]) -> dict:
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = 1
    return {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                              format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": tv_tensors.Mask(masks),
            "attributes": [[] for _ in boxes], "image_id": 0}


# ---------------------------------------------------------------- anchors
def test_anchor_count_and_layout_per_level() -> None:
    sizes = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]  # P3..P7 of a 550 input
    anchors = make_anchors(sizes, (24, 48, 96, 192, 384), (1.0, 0.5, 2.0))
    assert anchors.shape == (sum(h * w for h, w in sizes) * 3, 4)
    start = 0
    for (h, w), scale in zip(sizes, (24, 48, 96, 192, 384)):
        level = anchors[start:start + h * w * 3].view(h, w, 3, 4)
        start += h * w * 3
        # Cell (row 2, col 1) holds three anchors centred on that cell.
        assert torch.allclose(level[2, 1, :, 0], torch.full((3,), 1.5 / w))
        assert torch.allclose(level[2, 1, :, 1], torch.full((3,), 2.5 / h))
        s = scale / 550
        r = math.sqrt(2)
        expected_wh = torch.tensor([[s, s], [s / r, s * r], [s * r, s / r]])  # ratios 1, 1/2, 2 (w / h)
        assert torch.allclose(level[0, 0, :, 2:], expected_wh)
        assert torch.allclose(level[..., 2:], expected_wh.expand(h, w, 3, 2))  # same shapes in every cell


def test_octaves_multiply_each_level_scale_before_the_ratios() -> None:
    octaves = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    anchors = make_anchors([(4, 4), (2, 2)], (8, 16), (1.0, 0.5, 2.0), reference_size=64, octaves=octaves)
    assert anchors.shape == ((16 + 4) * 9, 4)
    first_cell = anchors[:9]  # level 0, cell (0, 0): octave-major, then ratio
    assert torch.allclose(first_cell[:, :2], torch.full((9, 2), 0.5 / 4))
    r = math.sqrt(2)
    for k, o in enumerate(octaves):
        s = 8 * o / 64
        expected = torch.tensor([[s, s], [s / r, s * r], [s * r, s / r]])
        assert torch.allclose(first_cell[3 * k:3 * k + 3, 2:], expected)
    assert torch.allclose(anchors[16 * 9, 2:], torch.tensor([16 / 64, 16 / 64]))  # level 1 starts at its scale


def test_paper_network_emits_one_prediction_per_anchor_and_138px_prototypes_at_550() -> None:
    net = build_adapter("yolact", {**TINY, **PAPER_PYRAMID, "input_size": 550}, num_classes=4).eval()
    with torch.no_grad():
        raw = net._network([torch.rand(3, 100, 120)], with_semantic=True)
    a = raw.anchors.shape[0]
    assert a == 3 * (69**2 + 35**2 + 18**2 + 9**2 + 5**2)
    assert raw.deltas.shape == (1, a, 4) and raw.logits.shape == (1, a, 5) and raw.coefs.shape == (1, a, 8)
    assert raw.protos.shape == (1, 138, 138, 8) and raw.semantic.shape == (1, 4, 69, 69)
    assert raw.coefs.abs().max() <= 1 and raw.protos.min() >= 0  # tanh coefficients, ReLU prototypes
    # Anchors scale with the input: the P3 anchor of ratio 1 is 24 px of a 550 input.
    assert torch.allclose(raw.anchors[0, 2:], torch.tensor([24 / 550, 24 / 550]))


def test_p2_pyramid_has_nine_anchors_per_cell_in_input_pixels_and_stride_2_prototypes() -> None:
    net = build_adapter("yolact", {**TINY, "input_size": 128}, num_classes=4).eval()
    assert net.cfg.min_level == 2 and net.cfg.anchor_reference_size is None  # the CPU preset's defaults
    with torch.no_grad():
        raw = net._network([torch.rand(3, 90, 128)], with_semantic=True)
    a = raw.anchors.shape[0]
    assert a == 9 * (32**2 + 16**2 + 8**2 + 4**2 + 2**2)  # P2..P6 of a 128 input
    assert raw.logits.shape == (1, a, 5) and raw.coefs.shape == (1, a, 8)
    assert raw.protos.shape == (1, 64, 64, 8) and raw.semantic.shape == (1, 4, 32, 32)
    # The first anchor is model.anchor_scales[0] = 8 pixels of the 128 px network input.
    assert torch.allclose(raw.anchors[0, 2:], torch.tensor([8 / 128, 8 / 128]))


@pytest.mark.parametrize("override, match_text", [
    ({"min_level": 4}, "model.min_level"),
    ({"min_level": 2, "anchor_scales": (8.0, 16.0, 32.0)}, "model.anchor_scales"),
])
def test_pyramid_settings_are_checked(override: dict, match_text: str) -> None:
    with pytest.raises(UserError, match=match_text):
        build_adapter("yolact", {**TINY, **override}, num_classes=3)


# ---------------------------------------------------------------- box coding and matching
def test_encode_decode_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.cat([torch.rand(50, 2, generator=g), 0.05 + 0.5 * torch.rand(50, 2, generator=g)], dim=1)
    xy = torch.rand(50, 2, generator=g)
    boxes = torch.cat([xy, xy + 0.02 + 0.4 * torch.rand(50, 2, generator=g)], dim=1)
    assert torch.allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-6)
    assert torch.allclose(encode(point_form(anchors), anchors), torch.zeros(50, 4), atol=1e-5)
    # Variances (0.1, 0.2): a shift of one anchor width is 10 units, a doubling of width log(2)/0.2.
    shifted = point_form(anchors) + torch.stack([anchors[:, 2], torch.zeros(50), anchors[:, 2], torch.zeros(50)], 1)
    assert torch.allclose(encode(shifted, anchors)[:, 0], torch.full((50,), 10.0), atol=1e-4)
    doubled = center_size(point_form(anchors)) * torch.tensor([1, 1, 2, 1])
    assert torch.allclose(encode(point_form(doubled), anchors)[:, 2], torch.full((50,), math.log(2) / 0.2), atol=1e-4)


def test_matching_thresholds_and_forced_best_anchor() -> None:
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 0.7, 0.7]])
    anchors = center_size(torch.tensor([
        [0.0, 0.0, 0.4, 0.4],    # IoU 1 with gt 0 -> positive
        [0.0, 0.0, 0.4, 0.64],   # IoU 0.625 -> positive
        [0.0, 0.0, 0.4, 0.9],    # IoU 0.444 -> neutral
        [0.0, 0.0, 0.4, 1.0],    # IoU 0.4 -> neutral (negative is strictly below 0.4)
        [0.2, 0.2, 0.8, 0.8],    # IoU 0.11 with gt 0, 0.028 with gt 1: gt 1's best anchor
        [0.9, 0.0, 1.0, 0.1],    # no overlap -> background
    ]))
    conf_t, idx_t, loc_t = match(gt, torch.tensor([3, 5]), anchors, pos_iou=0.5, neg_iou=0.4)
    assert conf_t.tolist() == [3, 3, -1, -1, 5, 0]
    assert idx_t[4] == 1 and idx_t[0] == 0
    assert torch.allclose(decode(loc_t[4:5], anchors[4:5]), gt[1:2], atol=1e-6)


def test_forced_matching_gives_two_objects_with_one_best_anchor_different_anchors() -> None:
    gt = torch.tensor([[0.0, 0.0, 0.3, 0.3], [0.02, 0.0, 0.32, 0.3]])
    anchors = center_size(torch.tensor([[0.0, 0.0, 0.3, 0.3], [0.5, 0.5, 1.0, 1.0], [0.1, 0.0, 0.4, 0.3]]))
    conf_t, idx_t, _ = match(gt, torch.tensor([1, 2]), anchors)
    assert conf_t[0] > 0 and conf_t[2] > 0 and {int(idx_t[0]), int(idx_t[2])} == {0, 1}


def test_no_ground_truth_is_all_background() -> None:
    anchors = make_anchors([(4, 4)], (100,), (1.0,))
    conf_t, _, loc_t = match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), anchors)
    assert (conf_t == 0).all() and (loc_t == 0).all()


# ---------------------------------------------------------------- Fast NMS
def _clusters(seed: int, n_clusters: int = 12, per_cluster: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separated clusters of heavily overlapping boxes: NMS keeps one per cluster, with no chains."""
    g = torch.Generator().manual_seed(seed)
    boxes, scores, classes = [], [], []
    for k in range(n_clusters):
        x, y = (k % 4) * 250.0, (k // 4) * 250.0
        base = torch.tensor([x, y, x + 100, y + 80])
        for _ in range(per_cluster):
            boxes.append(base + torch.randn(4, generator=g) * 2)
            scores.append(float(torch.rand(1, generator=g)) * 0.9 + 0.1)
            classes.append(k % 3)
    return torch.stack(boxes), torch.tensor(scores), torch.tensor(classes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_nms_agrees_with_standard_nms_without_chains(seed: int) -> None:
    boxes, scores, classes = _clusters(seed)
    # Fast NMS scores every box in every class; other classes' entries are zero (below threshold).
    class_scores = torch.zeros(3, len(scores))
    class_scores[classes, torch.arange(len(scores))] = scores
    keep, kept_classes, kept_scores = fast_nms(boxes, class_scores, iou_threshold=0.5, top_k=200, score_threshold=0.05)
    reference = batched_nms(boxes, scores, classes, iou_threshold=0.5)
    assert keep.tolist() == reference.tolist()  # same boxes, same (score) order
    assert torch.equal(kept_classes, classes[reference]) and torch.allclose(kept_scores, scores[reference])
    assert len(keep) == 12


def test_fast_nms_suppresses_chains_that_greedy_nms_keeps() -> None:
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C barely overlap: greedy keeps A and C,
    # Fast NMS lets the already-suppressed B suppress C (the paper's accepted difference).
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5.0, 0, 15, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
    keep, _, _ = fast_nms(boxes, scores[None], iou_threshold=0.5)
    assert keep.tolist() == [0]


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_fast_nms_is_vectorised_over_classes_and_boxes() -> None:
    """The number of tensor operations does not grow with the number of classes or boxes."""
    counts = []
    for num_classes, num_boxes in ((2, 10), (40, 500)):
        g = torch.Generator().manual_seed(num_classes)
        xy = torch.rand(num_boxes, 2, generator=g)
        boxes = torch.cat([xy, xy + 0.1 + torch.rand(num_boxes, 2, generator=g) * 0.3], 1)
        with _OpCounter() as counter:
            fast_nms(boxes, torch.rand(num_classes, num_boxes, generator=g))
        counts.append(counter.calls)
    assert counts[0] == counts[1]


def test_fast_nms_caps_detections_and_applies_score_threshold() -> None:
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(300, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 1], 1)  # tiny, far apart: nothing suppressed
    scores = torch.rand(4, 300, generator=g)
    keep, classes, kept = fast_nms(boxes, scores, top_k=200, score_threshold=0.5, max_detections=100)
    assert len(keep) == 100 and (kept > 0.5).all() and (kept[:-1] >= kept[1:]).all()
    assert torch.equal(kept, scores[classes, keep])


# ---------------------------------------------------------------- crop and OHEM
def test_crop_zeroes_outside_the_padded_box() -> None:
    masks = torch.ones(20, 40, 2)
    boxes = torch.tensor([[0.25, 0.25, 0.5, 0.75], [0.0, 0.0, 1.0, 1.0]])  # pixels x 10..20, y 5..15
    out = crop(masks, boxes, padding=0)
    assert out[..., 0].sum() == 10 * 10 and out[5:15, 10:20, 0].all() and out[..., 1].all()
    padded = crop(masks, boxes, padding=1)
    assert padded[..., 0].sum() == 12 * 12 and padded[4:16, 9:21, 0].all()


def test_ohem_takes_three_hardest_negatives_per_positive() -> None:
    g = torch.Generator().manual_seed(0)
    conf_t = torch.zeros(2, 200, dtype=torch.int64)
    conf_t[0, :5] = 2  # 5 positives
    conf_t[0, 5:40] = -1  # neutrals are never negatives
    loss = torch.rand(2, 200, generator=g)
    loss[0, 5:40] = 10.0  # highest loss, but neutral
    neg = ohem_negatives(loss, conf_t, negpos_ratio=3)
    assert int(neg[0].sum()) == 15 and int(neg[1].sum()) == 0  # image 2 has no positives
    assert (conf_t[neg] == 0).all()
    background = loss[0, 40:]
    assert torch.equal(neg[0, 40:], background >= background.topk(15).values[-1])
    few = torch.full((1, 10), -1, dtype=torch.int64)
    few[0, 0], few[0, 1:3] = 1, 0  # 1 positive, only 2 background anchors
    assert int(ohem_negatives(torch.rand(1, 10), few).sum()) == 2


# ---------------------------------------------------------------- losses and detection
def testinstance_mask_loss_is_normalised_by_box_area_and_subsampled_positives() -> None:
    """Zero logits give BCE ln 2 per pixel: each instance costs ln 2 x (padded crop) / (box area)."""
    protos = torch.zeros(40, 40, 1)  # k = 1, all-zero prototypes -> logits 0 everywhere
    boxes = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])  # 10x10 and 20x20 proto px
    target = ImageTarget(boxes=boxes, labels=torch.tensor([1, 2]), proto_masks=torch.zeros(2, 40, 40),
                         semantic=torch.zeros(2, 20, 20))
    coefs = torch.zeros(6, 1)
    one = torch.tensor([True, False, False, False, False, False])
    small = instance_mask_loss(protos, coefs, one, torch.zeros(6, dtype=torch.int64), target, LossSettings())
    assert torch.isclose(small, torch.tensor(12 * 12 * math.log(2) / 100))  # 1-pixel crop padding
    big = instance_mask_loss(protos, coefs, one, torch.ones(6, dtype=torch.int64), target, LossSettings())
    assert torch.isclose(big, torch.tensor(21 * 21 * math.log(2) / 400))  # padding clipped at the border
    # Six positives, at most two trained: the two drawn are rescaled to stand for all six.
    every = torch.ones(6, dtype=torch.bool)
    capped = instance_mask_loss(protos, coefs, every, torch.zeros(6, dtype=torch.int64), target,
                                  LossSettings(masks_to_train=2))
    assert torch.isclose(capped, 6 * small)


def test_losses_empty_targets_finite_and_backpropagate() -> None:
    torch.manual_seed(0)
    net = build_adapter("yolact", TINY, num_classes=3).train()
    losses = net([torch.rand(3, 64, 64), torch.rand(3, 80, 64)], [_target(64, 64, [], []), _target(80, 64, [], [])])
    assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_semantic"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["loss_cls"].detach()) == 0 and float(losses["loss_semantic"].detach()) > 0
    sum(losses.values()).backward()
    assert net.semantic.weight.grad.abs().sum() > 0


def test_losses_with_instances_train_every_head() -> None:
    torch.manual_seed(0)
    net = build_adapter("yolact", TINY, num_classes=3).train()
    target = _target(96, 96, [(10, 12, 50, 70), (40, 30, 90, 60), (0, 0, 0, 30)], [1, 2, 3])  # last: no width
    losses = net([torch.rand(3, 96, 96)], [target])
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for part in (net.head.box, net.head.cls, net.head.coef, net.protonet.post[2], net.semantic, net.backbone.conv1):
        assert part.weight.grad.abs().sum() > 0


def test_postprocess_undoes_the_letterbox() -> None:
    """One confident anchor with an all-ones prototype: box and mask land at the image's pixels.
    A 100 x 200 image is the top half of the 200-px square the network read."""
    net = build_adapter("yolact", TINY, num_classes=3).eval()
    anchors = center_size(torch.tensor([[0.1, 0.1, 0.5, 0.3], [0.6, 0.6, 0.9, 0.9]]))
    probs = torch.tensor([[[0.05, 0.05, 0.85, 0.05], [0.97, 0.01, 0.01, 0.01]]])
    raw = RawOutput(deltas=torch.zeros(1, 2, 4), logits=probs, coefs=torch.full((1, 2, 8), 1.0),
                    protos=torch.full((1, 20, 20, 8), 1.0), anchors=anchors)
    (pred,) = net.postprocess(raw, [(100, 200)])
    assert pred.labels.tolist() == [2] and torch.allclose(pred.scores, torch.tensor([0.85]))
    assert torch.allclose(pred.boxes, torch.tensor([[20.0, 20.0, 100.0, 60.0]]), atol=1e-4)
    assert pred.masks.shape == (1, 100, 200)
    ys, xs = pred.masks[0].nonzero(as_tuple=True)
    # Cropped at prototype resolution (10 px per cell both ways, the square's) with 1 cell padding.
    assert 10 <= int(xs.min()) <= 20 and 100 <= int(xs.max()) <= 110
    assert 10 <= int(ys.min()) <= 20 and 60 <= int(ys.max()) <= 70


def test_predict_handles_different_sizes_and_empty_output() -> None:
    net = build_adapter("yolact", {**TINY, "score_threshold": 1.0}, num_classes=3)
    preds = net.predict([torch.rand(3, 70, 90), torch.rand(3, 64, 64)])
    assert [p.masks.shape for p in preds] == [(0, 70, 90), (0, 64, 64)]


# ---------------------------------------------------------------- backbones, weights, configs
def test_torchvision_weights_map_onto_the_backbone() -> None:
    net = build_adapter("yolact", TINY, num_classes=3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    mapped = net.adapt_pretrained(state)
    backbone_keys = {k for k in net.state_dict() if k.startswith("backbone.")}
    assert set(mapped) == backbone_keys
    assert torch.equal(mapped["backbone.layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert net.adapt_pretrained(net.state_dict()).keys() == net.state_dict().keys()


def test_timm_backbone_groups_and_weights() -> None:
    import timm

    net = build_adapter("yolact", {**TINY, "backbone": "timm:efficientnet_b0"}, num_classes=3)
    groups = net.param_groups()
    assert set(groups) == {"stem", "stage2", "stage3", "stage4", "stage5", "heads"}
    seen = [id(p) for ps in groups.values() for p in ps]
    assert len(seen) == len(set(seen)) == len(list(net.parameters()))
    assert net.backbone.body.conv_stem.weight in [p for p in groups["stem"]]
    state = timm.create_model("efficientnet_b0", pretrained=False).state_dict()
    mapped = net.adapt_pretrained(state)
    assert "backbone.body.conv_stem.weight" in mapped and not any("classifier" in k for k in mapped)
    losses = net.train()([torch.rand(3, 64, 64)], [_target(64, 64, [(5, 5, 40, 50)], [1])])
    assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="resnet18"):
        build_adapter("yolact", {"backbone": "resnet19"}, num_classes=3)


@pytest.mark.parametrize("name", ["yolact.yaml", "yolact-gpu.yaml"])
def test_configs_parse_strictly(name: str) -> None:
    cfg = train_config_from_dict(load_yaml(CONFIGS / name), YolactConfig)
    assert cfg.adapter == "yolact" and isinstance(cfg.model, YolactConfig)
    if name == "yolact-gpu.yaml":
        assert cfg.model.input_size == 550 and cfg.model.fpn_channels == 256 and cfg.optim.weight_decay == 5e-4
    YolactAdapter(cfg.model, 3)




def test_run_model_holds_every_anchor_and_nms_runs_in_postprocess() -> None:
    """run_model's output is one candidate per anchor (pre-NMS); decoding, the score threshold,
    Fast NMS (its top-k) and mask assembly all run in postprocess."""
    torch.manual_seed(0)
    adapter = YolactAdapter(YolactConfig(input_size=64, **TINY), 3).eval()
    with torch.inference_mode():
        with OpNames() as in_model:
            raw = adapter.run_model([torch.rand(3, 64, 80), torch.rand(3, 48, 64)])
        with OpNames() as in_post:
            preds = adapter.postprocess(raw, [(64, 80), (48, 64)])
    anchors = raw.anchors.shape[0]
    assert raw.deltas.shape[:2] == raw.logits.shape[:2] == raw.coefs.shape[:2] == (2, anchors)
    assert anchors > max(len(p) for p in preds) > 0
    assert "aten.topk.default" not in in_model.names and "aten.topk.default" in in_post.names
    assert "aten.exp.default" not in in_model.names and "aten.exp.default" in in_post.names  # box decoding


def test_non_square_images_are_letterboxed_not_squashed() -> None:
    """A 48 x 96 photo sits in the top half of the 96-px square the network reads, at its own
    aspect ratio; its targets are measured against the same square, and predictions come back
    at the photo's own size."""
    from zoo.adapters.yolact.loss import prepare_target

    model = build_adapter("yolact", {"input_size": 96, **TINY}, num_classes=3).eval()
    photo = torch.rand(3, 48, 96)
    batch = model._batch([photo])
    assert batch.shape == (1, 3, 96, 96)
    assert torch.allclose(batch[0, :, :48], (photo - model.mean[0]) / model.std[0])
    assert batch[0, :, 48:].abs().max() < 1e-6  # the mean colour, normalised
    target = _target(48, 96, [(10, 4, 50, 40)], [1])
    prepared = prepare_target(target, (48, 96), (24, 24), (12, 12), 3, torch.device("cpu"))
    assert torch.allclose(prepared.boxes, torch.tensor([[10, 4, 50, 40]]) / 96.0)
    assert prepared.proto_masks[0, 12:].sum() == 0  # nothing below the photo in the square
    pred = model.predict([photo])[0]
    assert pred.masks.shape[-2:] == (48, 96)
    assert bool((pred.boxes[:, 2] <= 96).all() and (pred.boxes[:, 3] <= 48).all())
