"""UNet adapter: multi-label targets, probability maps -> instances, parameter groups, weights, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torchvision import tv_tensors

import zoo.adapters  # noqa: F401  (registers "unet")
from zoo.adapters.unet import UnetAdapter, UnetConfig, load_encoder_weights
from zoo.adapter import GROUP_ORDER, set_trainable
from zoo.build import build_adapter
from zoo.config import load_yaml, train_config_from_dict
from zoo.errors import UserError
from zoo.semantic import SemanticRaw

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _target(masks: torch.Tensor, labels: list[int]) -> dict:
    """A target dict (zoo.types conventions) from uint8 masks ``[N, H, W]``."""
    n, h, w = masks.shape
    boxes = torch.zeros((n, 4))
    for i, m in enumerate(masks.bool()):
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": tv_tensors.Mask(masks.to(torch.uint8)),
            "attributes": [[] for _ in labels], "image_id": 0}


def _probs(c: int, h: int, w: int) -> torch.Tensor:
    """Background probability maps ``[1, C, h, w]`` (0.05 everywhere)."""
    return torch.full((1, c, h, w), 0.05)


@pytest.fixture(scope="module")
def unet() -> UnetAdapter:
    torch.manual_seed(0)
    return build_adapter("unet", num_classes=3).eval()


def test_overlapping_instances_make_a_multilabel_target(unet: UnetAdapter) -> None:
    masks = torch.zeros((3, 40, 50), dtype=torch.uint8)
    masks[0, 5:30, 5:40] = 1  # shirt (label 1)
    masks[1, 10:20, 5:15] = 1  # sleeve on the shirt (label 3)
    masks[2, 32:38, 40:48] = 1  # a second shirt
    maps = unet.target_maps([_target(masks, [1, 3, 1])], [(40, 50)], (64, 64))
    assert maps.shape == (1, 3, 64, 64)
    assert torch.equal(maps[0, 0, :40, :50], (masks[0] | masks[2]).float())
    assert torch.equal(maps[0, 2, :40, :50], masks[1].float())
    assert maps[0, 1].sum() == 0 and maps[0, :, 40:].sum() == 0 and maps[0, :, :, 50:].sum() == 0


def test_losses_finite_with_and_without_instances(unet: UnetAdapter) -> None:
    masks = torch.zeros((1, 70, 90), dtype=torch.uint8)
    masks[0, 10:40, 20:60] = 1
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 64)]
    targets = [_target(masks, [2]), _target(torch.zeros((0, 64, 64), dtype=torch.uint8), [])]
    unet.train()
    losses = unet(images, targets)
    assert set(losses) == {"loss_bce", "loss_dice"}
    assert all(torch.isfinite(v.detach()) for v in losses.values()) and float(losses["loss_dice"].detach()) > 0
    empty = unet(images[1:], targets[1:])
    assert float(empty["loss_dice"]) == 0.0 and torch.isfinite(empty["loss_bce"])
    sum(losses.values()).backward()
    assert unet.net.segmentation_head[0].weight.grad is not None
    unet.zero_grad(set_to_none=True)
    unet.eval()


def test_loss_weights_choose_terms() -> None:
    only_dice = build_adapter("unet", {"bce_weight": 0.0, "dice_weight": 2.0}, num_classes=2)
    masks = torch.zeros((1, 64, 64), dtype=torch.uint8)
    masks[0, 8:30, 8:30] = 1
    assert set(only_dice([torch.rand(3, 64, 64)], [_target(masks, [1])])) == {"loss_dice"}
    with pytest.raises(UserError, match="bce_weight"):
        build_adapter("unet", {"bce_weight": 0.0, "dice_weight": 0.0}, num_classes=2)


def test_two_separated_blobs_of_one_class_become_two_instances(unet: UnetAdapter) -> None:
    probs = _probs(3, 64, 64)
    probs[0, 1, 5:20, 5:20] = 0.9
    probs[0, 1, 40:60, 30:62] = 0.7
    (pred,) = unet.postprocess(SemanticRaw(probs, [(64, 64)]), [(64, 64)])
    assert pred.labels.tolist() == [2, 2]
    assert pred.scores.tolist() == pytest.approx([0.9 * 0.8, 0.7 * 0.4])  # mean p times (mean p - 0.5) / 0.5
    assert pred.boxes.tolist() == [[5, 5, 20, 20], [30, 40, 62, 60]]
    assert pred.masks.dtype == torch.bool and pred.masks.shape == (2, 64, 64)
    assert pred.masks.sum(dim=(1, 2)).tolist() == [225, 640]


def test_overlapping_categories_both_survive(unet: UnetAdapter) -> None:
    probs = _probs(3, 64, 64)
    probs[0, 0, 10:50, 10:50] = 0.8  # shirt
    probs[0, 2, 15:30, 10:25] = 0.95  # sleeve lying on the shirt
    (pred,) = unet.postprocess(SemanticRaw(probs, [(64, 64)]), [(64, 64)])
    assert sorted(pred.labels.tolist()) == [1, 3]
    shirt, sleeve = pred.masks[pred.labels == 1][0], pred.masks[pred.labels == 3][0]
    assert (shirt & sleeve).sum() == 15 * 15  # the sleeve's pixels are also shirt pixels


def test_small_components_dropped_and_opening_splits_a_bridge() -> None:
    adapter = build_adapter("unet", {"min_area": 30}, num_classes=1).eval()
    probs = _probs(1, 64, 64)
    probs[0, 0, 2:6, 2:6] = 0.9  # 16 px < min_area
    probs[0, 0, 20:40, 5:25] = 0.9
    probs[0, 0, 29, 25:40] = 0.9  # a one-pixel bridge
    probs[0, 0, 20:40, 40:60] = 0.9
    (plain,) = adapter.postprocess(SemanticRaw(probs, [(64, 64)]), [(64, 64)])
    assert len(plain) == 1  # the bridge joins the blobs; the speck is dropped
    opened = build_adapter("unet", {"min_area": 30, "opening": 1}, num_classes=1).eval()
    (split,) = opened.postprocess(SemanticRaw(probs, [(64, 64)]), [(64, 64)])
    assert len(split) == 2


def test_masks_come_back_at_the_image_size_without_padding(unet: UnetAdapter) -> None:
    probs = _probs(3, 64, 64)
    probs[0, 0, 0:20, 0:24] = 0.9
    probs[0, 0, 20:, :] = 0.99  # padding below the valid 20x32 region must be ignored
    (pred,) = unet.postprocess(SemanticRaw(probs, [(20, 32)]), [(40, 64)])
    assert pred.masks.shape == (1, 40, 64)
    assert pred.boxes[0, 0] == 0 and pred.boxes[0, 3] == 40
    assert 44 <= float(pred.boxes[0, 2]) <= 52  # 24 of 32 columns -> about 48 of 64


def test_predict_images_of_different_sizes() -> None:
    adapter = build_adapter("unet", {"input_size": 64}, num_classes=3)
    sizes = [(70, 90), (100, 45), (64, 64)]
    preds = adapter.predict([torch.rand(3, h, w) for h, w in sizes])
    for pred, (h, w) in zip(preds, sizes):
        assert pred.masks.shape[1:] == (h, w) and pred.masks.dtype == torch.bool
        assert pred.boxes.dtype == torch.float32 and pred.labels.dtype == torch.int64
        assert len(pred) <= adapter.cfg.max_instances
        if len(pred):
            assert 0 <= float(pred.scores.min()) and float(pred.scores.max()) <= 1
            assert int(pred.labels.min()) >= 1 and int(pred.labels.max()) <= 3


def test_param_groups_follow_resnet_stages(unet: UnetAdapter) -> None:
    groups = unet.param_groups()
    assert list(groups) == list(GROUP_ORDER)
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(unet.parameters()))
    names = {id(p): n for n, p in unet.named_parameters()}
    expect = {"stem": ("net.encoder.conv1.", "net.encoder.bn1."), "stage2": ("net.encoder.layer1.",),
              "stage3": ("net.encoder.layer2.",), "stage4": ("net.encoder.layer3.",),
              "stage5": ("net.encoder.layer4.",), "heads": ("net.decoder.", "net.segmentation_head.")}
    for group, prefixes in expect.items():
        assert all(names[id(p)].startswith(prefixes) for p in groups[group]), group


def test_layer_choices_freeze_the_encoder() -> None:
    adapter = build_adapter("unet", num_classes=2)
    set_trainable(adapter, "heads")
    assert not any(p.requires_grad for p in adapter.net.encoder.parameters())
    assert all(p.requires_grad for p in adapter.net.decoder.parameters())
    set_trainable(adapter, "4+")
    assert all(p.requires_grad for p in adapter.net.encoder.layer3.parameters())
    assert not any(p.requires_grad for p in adapter.net.encoder.layer2.parameters())


def test_timm_encoder_gets_every_stage_group() -> None:
    adapter = build_adapter("unet", {"encoder": "tu-mobilenetv3_small_050"}, num_classes=2)
    groups = adapter.param_groups()
    assert list(groups) == list(GROUP_ORDER)
    assert sum(len(ps) for ps in groups.values()) == len(list(adapter.parameters()))


def test_torchvision_resnet_weights_load_into_the_encoder(tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(backbone.state_dict(), path)
    adapter = build_adapter("unet", {"encoder_weights_path": str(path)}, num_classes=2)
    assert torch.equal(adapter.net.encoder.layer3[1].conv2.weight, backbone.layer3[1].conv2.weight)
    assert torch.equal(adapter.net.encoder.bn1.running_var, backbone.bn1.running_var)
    mapped = adapter.adapt_pretrained(backbone.state_dict())
    assert "net.encoder.conv1.weight" in mapped and not any("fc" in k for k in mapped)


def test_timm_weights_load_into_a_timm_encoder(tmp_path: Path) -> None:
    torch.manual_seed(2)
    backbone = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "timm_resnet18.pth"
    torch.save(backbone.state_dict(), path)
    adapter = build_adapter("unet", {"encoder": "tu-resnet18"}, num_classes=2)
    assert load_encoder_weights(adapter, path) == len(adapter.net.encoder.state_dict())
    assert torch.equal(adapter.net.encoder.model.layer4[0].conv1.weight, backbone.layer4[0].conv1.weight)


def test_bad_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        build_adapter("unet", {"encoder_weights_path": str(tmp_path / "missing.pth")}, num_classes=2)
    foreign = tmp_path / "foreign.pth"
    torch.save({"head.weight": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="no tensor matches"):
        build_adapter("unet", {"encoder_weights_path": str(foreign)}, num_classes=2)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a torch state dict"):
        build_adapter("unet", {"encoder_weights_path": str(garbage)}, num_classes=2)


def test_bad_model_options_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="did you mean 'resnet18'"):
        build_adapter("unet", {"encoder": "resnet81"}, num_classes=2)
    with pytest.raises(UserError, match="decoder_channels"):
        build_adapter("unet", {"decoder_channels": [16, 8]}, num_classes=2)


@pytest.mark.parametrize("name", ["unet.yaml", "unet-gpu.yaml", "unet-pretrained.yaml"])
def test_configs_parse_strictly(name: str) -> None:
    cfg = train_config_from_dict(load_yaml(CONFIGS / name), UnetConfig)
    assert cfg.adapter == "unet" and isinstance(cfg.model, UnetConfig)
    if name == "unet-gpu.yaml":
        assert cfg.model.encoder == "resnet50"
    if name == "unet-pretrained.yaml":
        assert (cfg.pretrained or cfg.model.encoder_weights_path or "").endswith(".pth")


def test_unknown_arch_names_the_valid_choices() -> None:
    with pytest.raises(UserError, match=r"model.arch: unknown architecture 'fnp' \(did you mean 'fpn'\?\); "
                                        r"choose one of unet, unetplusplus, .*deeplabv3plus"):
        build_adapter("unet", {"arch": "fnp"}, num_classes=2)


def test_default_arch_is_smp_unet_and_others_share_the_semantic_path() -> None:
    import segmentation_models_pytorch as smp

    from zoo.semantic import SemanticAdapter

    assert type(build_adapter("unet", num_classes=2).net) is smp.Unet
    fpn = build_adapter("unet", {"arch": "fpn"}, num_classes=2)
    assert type(fpn.net) is smp.FPN and isinstance(fpn, SemanticAdapter)


@pytest.mark.parametrize("arch", ["fpn", "deeplabv3plus"])
def test_zoo_train_unet_with_another_arch_trains_and_scores(arch: str, synth_dir: Path, tmp_path: Path) -> None:
    import csv
    import json

    import yaml
    from typer.testing import CliRunner

    from zoo.cli import app

    args = ["train", "unet", "--data", str(synth_dir), "--out", str(tmp_path / "run"), "--steps-per-epoch", "1",
            "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--set", f"model.arch={arch}",
            "--set", "data.max_size=64", "--set", "eval_limit=2", "--set", "best_metric=segm_AP50"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["arch"] == arch
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 1
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        epochs = [r for r in csv.DictReader(fh) if r["kind"] == "epoch"]
    assert epochs and epochs[-1]["segm_AP"] != ""  # the validation images were scored as instances


def test_frozen_encoder_batch_norms_keep_their_statistics_in_train_mode() -> None:
    adapter = build_adapter("unet", num_classes=2)
    set_trainable(adapter, "heads")
    adapter.train()
    assert not adapter.net.encoder.bn1.training and not adapter.net.encoder.layer4[1].bn2.training
    assert adapter.net.decoder.blocks[0].conv1[1].training  # the decoder still learns its statistics
    before = adapter.net.encoder.bn1.running_mean.clone()
    adapter([torch.rand(3, 64, 64)], [_target(torch.zeros((0, 64, 64), dtype=torch.uint8), [])])
    assert torch.equal(adapter.net.encoder.bn1.running_mean, before)


def test_one_image_through_image_pooling_trains() -> None:
    # DeepLabV3+ pools the image to 1x1 before a batch norm: one image gives one value per channel
    adapter = build_adapter("unet", {"arch": "deeplabv3plus"}, num_classes=2).train()
    masks = torch.zeros((1, 64, 64), dtype=torch.uint8)
    masks[0, 10:40, 20:50] = 1
    losses = adapter([torch.rand(3, 64, 64)], [_target(masks, [1])])
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(m.training for m in adapter.net.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_instance_scores_rank_true_blobs_first_and_spread_below_one_half() -> None:
    """A hand-built map: three garments (a confident core, soft edges) and three false blobs just
    above the threshold. Every garment outranks every false blob, the false blobs score below 0.5
    (as the mean probability, which is always above the threshold, never could), and the order is
    the mean probability's, so COCO AP is unchanged."""
    from scipy import ndimage

    from zoo.semantic.instances import components, probs_to_instances

    prob = torch.zeros(1, 96, 96)
    for y, x, core in ((10, 10, 0.97), (10, 60, 0.9), (60, 10, 0.85)):  # garments: 24 px squares
        prob[0, y:y + 24, x:x + 24] = 0.6
        prob[0, y + 4:y + 20, x + 4:x + 20] = core
    for y, x, p in ((60, 60, 0.58), (60, 80, 0.55), (85, 60, 0.62)):  # false: 8 px, near 0.5
        prob[0, y:y + 8, x:x + 8] = p
    pred = probs_to_instances(prob, (96, 96), min_area=16)
    is_true = [bool(pred.masks[i, 10:34].any() or pred.masks[i, 60:84, 10:34].any()) for i in range(len(pred))]
    assert len(pred) == 6 and is_true == [True] * 3 + [False] * 3  # sorted by score: true ones first
    assert float(pred.scores[3:].max()) < 0.2 and float(pred.scores[:3].min()) > 2 * float(pred.scores[3:].max())
    binary = prob[0].numpy() > 0.5
    comp, n = ndimage.label(binary)
    means = ndimage.mean(prob[0].numpy(), comp, range(1, n + 1))
    assert min(means) > 0.5  # the old score could not fall below the threshold
    scores = [s for s, _ in components(prob[0].numpy(), threshold=0.5, min_area=16, opening=0)]
    assert sorted(range(n), key=lambda k: scores[k]) == sorted(range(n), key=lambda k: means[k])


def test_component_attributes_are_the_mean_of_the_maps_over_the_component() -> None:
    from zoo.semantic import component_attributes

    maps = torch.zeros(2, 4, 4)
    maps[0, :2, :2], maps[0, 2:, 2:], maps[1] = 0.8, 0.2, 0.5
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)  # at twice the maps' resolution
    masks[0, :4, :4] = True  # the maps' top-left 2 x 2
    masks[1, 4:, :] = True  # the maps' bottom half: two cells of 0.2, two of 0
    out = component_attributes(masks, maps)
    assert torch.allclose(out, torch.tensor([[0.8, 0.5], [0.1, 0.5]]))
    assert component_attributes(masks[:0], maps).shape == (0, 2)


def test_attribute_maps_hold_the_garment_attributes_on_its_pixels_only() -> None:
    from zoo.attributes import AttributeSpace
    from zoo.semantic import attribute_maps

    space = AttributeSpace(ids=(5, 61, 72), names=("knee", "plain", "stripe"), labels=(1,))
    masks = torch.zeros(3, 8, 8, dtype=torch.uint8)
    masks[0, :4], masks[1, 4:], masks[2, :, :2] = 1, 1, 1
    target = {"masks": masks, "labels": torch.tensor([1, 1, 2]), "attributes": [[5, 72], [], [61]]}
    maps, teach = attribute_maps([target], space, [(8, 8)], (8, 8), torch.device("cpu"))
    # Only the first garment teaches: the second has no attributes, the third's category carries none.
    assert teach[0].equal(masks[0].bool())
    assert maps[0, :, :4].sum(dim=(1, 2)).tolist() == [32.0, 0.0, 32.0] and maps[0, :, 4:].sum() == 0
