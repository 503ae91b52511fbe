"""Mask R-CNN parts: backbones and their groups, weight transfer, inference vs torchvision, configs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import OpNames
from torchvision import tv_tensors

import zoo.adapters  # noqa: F401  (registers "maskrcnn")
from zoo.adapters.maskrcnn import MaskRCNNAdapter, MaskRCNNConfig, build_torchvision_maskrcnn
from zoo.adapter import set_trainable
from zoo.errors import UserError
from zoo.train.api import load_train_config
from zoo.train.checkpoint import load_matching

REPO = Path(__file__).resolve().parents[1]
# torchvision's maskrcnn_resnet50_fpn network (what its COCO checkpoint holds).
COCO_NETWORK = {"backbone": "resnet50", "norm": "frozen", "fpn_channels": 256, "representation_size": 1024,
                "mask_head_layers": (256, 256, 256, 256)}
SMALL = {"fpn_channels": 32, "representation_size": 64, "mask_head_layers": (32,)}  # quick, same structure


def _target(h: int, w: int, boxes: list[tuple[float, float, float, float]], labels: list[int]) -> dict:
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, int(y0):int(y1), int(x0):int(x1)] = 1
    return {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                              format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": tv_tensors.Mask(masks),
            "attributes": [[] for _ in boxes], "image_id": 0}


def _adapter(num_classes: int = 3, **overrides) -> MaskRCNNAdapter:
    torch.manual_seed(0)
    return MaskRCNNAdapter(dataclasses.replace(MaskRCNNConfig(), **overrides), num_classes)


def _names(adapter: MaskRCNNAdapter) -> dict[str, set[str]]:
    """Parameter names per group."""
    by_id = {id(p): n for n, p in adapter.named_parameters()}
    return {g: {by_id[id(p)] for p in ps} for g, ps in adapter.param_groups().items()}


# ---------------------------------------------------------------- backbones and groups
def test_resnet_groups_follow_the_stages() -> None:
    names = _names(_adapter())
    assert names["stem"] == {"backbone.body.conv1.weight", "backbone.body.bn1.weight", "backbone.body.bn1.bias"}
    for k, group in enumerate(("stage2", "stage3", "stage4", "stage5"), start=1):
        assert names[group] and all(n.startswith(f"backbone.body.layer{k}.") for n in names[group])
    assert {n.split(".")[0] for n in names["heads"]} == {"backbone", "rpn", "roi_heads"}
    assert all(n.startswith("backbone.fpn.") for n in names["heads"] if n.startswith("backbone."))


def test_heads_stage_trains_fpn_rpn_and_roi_heads_only() -> None:
    adapter = _adapter()
    set_trainable(adapter, "4+")
    trainable = {n for n, p in adapter.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.body.layer3.") for n in trainable)
    assert not any(n.startswith(("backbone.body.layer2.", "backbone.body.conv1")) for n in trainable)
    set_trainable(adapter, "heads")
    trainable = {n for n, p in adapter.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("backbone.body.") for n in trainable)


@pytest.mark.parametrize("backbone,indices,stem", [
    ("timm:resnet18", (1, 2, 3, 4), {"conv1.weight", "bn1.weight", "bn1.bias"}),
    ("timm:efficientnet_b0", (1, 2, 3, 4), None),
    ("timm:convnext_atto", (0, 1, 2, 3), None),  # no stride-2 stage: the stem joins stage2
])
def test_timm_backbones_train_and_group(backbone: str, indices: tuple[int, ...], stem: set[str] | None) -> None:
    adapter = _adapter(backbone=backbone, timm_out_indices=indices, **SMALL)
    names = _names(adapter)
    assert {"stage2", "stage3", "stage4", "stage5", "heads"} <= set(names)
    if stem is not None:
        assert {n.removeprefix("backbone.body.features.") for n in names["stem"]} == stem
    losses = adapter([torch.rand(3, 64, 64)], [_target(64, 64, [(8, 8, 40, 48)], [1])])
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_backbone_settings_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="model.backbone: unknown 'resnet19'.*resnet18"):
        _adapter(backbone="resnet19")
    with pytest.raises(UserError, match="timm has no model 'not_a_net'"):
        _adapter(backbone="timm:not_a_net")
    with pytest.raises(UserError, match="model.anchor_sizes: .* 5 FPN levels"):
        _adapter(anchor_sizes=(16, 32, 64))


# ---------------------------------------------------------------- training inputs
def test_degenerate_boxes_are_dropped_not_fatal() -> None:
    adapter = _adapter(**SMALL)
    target = _target(64, 64, [(10, 10, 40, 40), (20, 5, 20, 30)], [1, 2])  # the second has no width
    losses = adapter([torch.rand(3, 64, 64)], [target])
    assert all(torch.isfinite(v) for v in losses.values())


def test_resizing_inside_the_model_keeps_targets_aligned() -> None:
    """Images of 64 px go through a 128 px network: losses stay finite and masks are pasted back at 64."""
    adapter = _adapter(min_size=128, max_size=128, **SMALL)
    losses = adapter([torch.rand(3, 64, 48)], [_target(64, 48, [(4, 4, 30, 40)], [3])])
    assert all(torch.isfinite(v) for v in losses.values())
    raw = adapter.eval().run_model([torch.rand(3, 64, 48)])
    assert raw.resized == [(128, 96)]


# ---------------------------------------------------------------- inference
def test_predict_matches_torchvision_on_the_same_weights() -> None:
    cfg = dataclasses.replace(MaskRCNNConfig(), box_score_thresh=0.0, **SMALL)
    adapter = MaskRCNNAdapter(cfg, 3).eval()
    reference = build_torchvision_maskrcnn(cfg, 3).eval()
    reference.load_state_dict(adapter.state_dict())
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 80)]
    with torch.inference_mode():
        expected = reference(images)
    preds = adapter.predict(images)
    for pred, ref in zip(preds, expected):
        assert len(pred) > 0
        torch.testing.assert_close(pred.boxes, ref["boxes"])
        torch.testing.assert_close(pred.scores, ref["scores"])
        assert torch.equal(pred.labels, ref["labels"])
        assert torch.equal(pred.masks, ref["masks"][:, 0] > cfg.mask_threshold)


def test_postprocess_pastes_at_the_requested_size() -> None:
    adapter = _adapter(box_score_thresh=0.0, **SMALL).eval()
    with torch.inference_mode():
        raw = adapter.run_model([torch.rand(3, 64, 96)])
        small, large = adapter.postprocess(raw, [(64, 96)]), adapter.postprocess(raw, [(128, 192)])
    assert small[0].masks.shape[1:] == (64, 96) and large[0].masks.shape[1:] == (128, 192)
    torch.testing.assert_close(large[0].boxes, small[0].boxes * 2)


def test_mask_threshold_controls_mask_area() -> None:
    loose = _adapter(box_score_thresh=0.0, mask_threshold=0.1, **SMALL)
    strict = _adapter(box_score_thresh=0.0, mask_threshold=0.9, **SMALL)
    strict.load_state_dict(loose.state_dict())
    image = [torch.rand(3, 64, 64)]
    a, b = loose.predict(image)[0], strict.predict(image)[0]
    assert torch.equal(a.boxes, b.boxes)
    assert (b.masks & ~a.masks).sum() == 0 and a.masks.sum() > b.masks.sum()


def test_predict_on_a_real_photo_keeps_its_size(shared_fixtures: Path) -> None:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    path = shared_fixtures / "fashionpedia-sample" / "images" / "000000009813.jpg"
    image = pil_to_tensor(Image.open(path).convert("RGB")).float() / 255
    pred = _adapter(box_score_thresh=0.0, **SMALL).predict([image])[0]
    assert pred.masks.shape[1:] == image.shape[1:]
    assert (pred.boxes[:, 2] <= image.shape[2]).all() and (pred.boxes[:, 3] <= image.shape[1]).all()


# ---------------------------------------------------------------- pretrained weights
def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's published COCO file uses the pre-v2 names of the RPN conv and mask head."""
    out = {}
    for key, value in state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for i in range(4):
            key = key.replace(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.")
        out[key] = value
    return out


def test_coco_checkpoint_transfers_all_but_the_class_layers() -> None:
    coco = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    state = _legacy_names(coco.state_dict())
    assert "roi_heads.mask_head.mask_fcn1.weight" in state
    adapter = _adapter(num_classes=46, **COCO_NETWORK)
    report = load_matching(adapter, adapter.adapt_pretrained(state))
    mismatched = sorted(k.split(" ")[0] for k in report["shape_mismatch"])
    assert mismatched == sorted(f"roi_heads.{k}" for k in (
        "box_predictor.cls_score.weight", "box_predictor.cls_score.bias", "box_predictor.bbox_pred.weight",
        "box_predictor.bbox_pred.bias", "mask_predictor.mask_fcn_logits.weight", "mask_predictor.mask_fcn_logits.bias"))
    assert not report["unexpected"] and sorted(report["missing"]) == mismatched  # nothing else left out
    own = adapter.state_dict()
    assert torch.equal(own["roi_heads.mask_head.0.0.weight"], state["roi_heads.mask_head.mask_fcn1.weight"])
    assert torch.equal(own["rpn.head.conv.0.0.weight"], state["rpn.head.conv.weight"])


def test_plain_resnet_weights_map_to_the_backbone_body() -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    adapter = _adapter()
    report = load_matching(adapter, adapter.adapt_pretrained(state))
    assert sorted(report["unexpected"]) == ["fc.bias", "fc.weight"]
    body = [k for k in adapter.state_dict() if k.startswith("backbone.body.")]
    assert set(body) <= set(report["loaded"])
    assert torch.equal(adapter.state_dict()["backbone.body.layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_timm_weights_map_through_flattened_stage_names() -> None:
    import timm

    state = timm.create_model("convnext_atto", pretrained=False).state_dict()
    adapter = _adapter(backbone="timm:convnext_atto", timm_out_indices=(0, 1, 2, 3), **SMALL)
    report = load_matching(adapter, adapter.adapt_pretrained(state))
    body = [k for k in adapter.state_dict() if k.startswith("backbone.body.")]
    assert set(body) <= set(report["loaded"])
    key = "backbone.body.features.stages_1.blocks.0.conv_dw.weight"
    assert torch.equal(adapter.state_dict()[key], state["stages.1.blocks.0.conv_dw.weight"])
    assert all(k.startswith("head.") for k in report["unexpected"])


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["maskrcnn.yaml", "maskrcnn-gpu.yaml", "maskrcnn-study.yaml"])
def test_config_files_parse_and_build(name: str) -> None:
    cfg = load_train_config("maskrcnn", REPO / "configs" / name)
    assert isinstance(cfg.model, MaskRCNNConfig)
    MaskRCNNAdapter(cfg.model, 46)


def test_study_config_is_the_source_study_best_run() -> None:
    cfg = load_train_config("maskrcnn", REPO / "configs" / "maskrcnn-study.yaml")
    assert cfg.model.backbone == "resnet50" and cfg.batch_size == 2 and cfg.optim.name == "sgd"
    assert (cfg.data.resize, cfg.data.min_size, cfg.data.max_size) == ("square", 800, 1024)
    assert (cfg.model.min_size, cfg.model.max_size) == (1024, 1024)  # the network does not rescale again
    assert [(s.layers, s.lr, s.epochs, s.augment) for s in cfg.stages] == [("heads", 1e-3, 5, False),
                                                                          ("all", 1e-4, 5, True)]
    assert cfg.best_metric == "val_loss"


def test_cpu_preset_config_is_the_dataclass_default() -> None:
    """The YAML preset and ``MaskRCNNConfig()`` describe the same network."""
    cfg = load_train_config("maskrcnn")
    assert cfg.model == MaskRCNNConfig()


# ---------------------------------------------------------------- command line
def test_cli_trains_and_evaluates_a_run(tmp_path: Path, synth_dir: Path) -> None:
    run = tmp_path / "run"
    train = [sys.executable, "-m", "zoo.cli", "train", "maskrcnn", "--data", str(synth_dir), "--limit", "4",
             "--epochs", "1", "--steps-per-epoch", "1", "--out", str(run), "--set", "eval_limit=1"]
    done = subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    metrics = tmp_path / "metrics.json"
    evaluate = [sys.executable, "-m", "zoo.cli", "eval", str(run), "--out", str(metrics)]
    done = subprocess.run(evaluate, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(metrics.read_text())
    val = json.loads((run / "split.json").read_text())["val"]
    assert m["split"] == "val" and m["n_images"] == len(val) >= 1
    gt = json.loads((tmp_path / "gt.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    from zoo.train.run import load_run

    names = load_run(run).dataset.image_ids  # gt.json keeps the source's image ids and file names
    assert sorted(im["file_name"] for im in gt["images"]) == sorted(names[i] for i in val)  # the run's val split
    assert len(results) == m["n_detections"] and {r["image_id"] for r in results} <= {im["id"] for im in gt["images"]}
    # The numbers are what the written files score (the reference backend, from the files alone).
    from zoo.metrics.coco import evaluate_coco

    again = evaluate_coco(gt, results, backend="pycocotools")
    for kind in ("segm", "bbox"):
        assert m[kind] == pytest.approx(again[kind], abs=1e-4), kind


def test_cli_reports_a_bad_model_key_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "zoo.cli", "train", "maskrcnn", "--out", str(tmp_path / "run"),
           "--set", "model.anchor_size=[8]"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "model.anchor_size" in done.stderr and "anchor_sizes" in done.stderr
    assert "Traceback" not in done.stderr




def test_box_nms_and_the_mask_head_run_in_postprocess() -> None:
    """run_model ends at the box head: one candidate row per proposal, not yet filtered; the box
    NMS (one call per image) and the mask head run in postprocess. The RPN's proposal NMS stays
    in run_model: the second stage runs on its proposals."""
    adapter = _adapter(box_score_thresh=0.0, **SMALL).eval()
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 80)]
    with torch.inference_mode():
        with OpNames() as in_model:
            raw = adapter.run_model(images)
        with OpNames() as in_post:
            preds = adapter.postprocess(raw, [(96, 128), (80, 80)])
        reference, _ = adapter.roi_heads(raw.features, raw.proposals, raw.resized)
    proposals = sum(len(p) for p in raw.proposals)
    assert raw.class_logits.shape == (proposals, 4) and raw.box_regression.shape == (proposals, 16)
    assert proposals > sum(len(p) for p in preds) > 0
    nms = "torchvision.nms.default"
    assert in_model.names.count(nms) > 0 and in_post.names.count(nms) == len(images)
    assert {"torchvision.roi_align.default", "aten.conv2d.default", "aten.conv_transpose2d.input"} \
        <= set(in_post.names)  # the mask head, pooled on the kept boxes
    for det, ref in zip(adapter.detections(raw), reference):  # torchvision's RoIHeads, composed
        for key in ("boxes", "labels", "scores", "masks"):
            assert torch.equal(det[key], ref[key])
