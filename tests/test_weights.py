"""Pretrained weights by name (zoo.weights): resolved offline from a seeded torch / Hugging Face
cache holding randomly initialised state dicts under the names the libraries give their files;
a one-line error naming the file and where to put it when the cache is empty. No download."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from zoo.build import build_adapter
from zoo.errors import UserError
from zoo.train.api import _load_pretrained
from zoo.weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
RESNET18 = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
RESNET18_FILE = "resnet18-f37072fd.pth"  # the basename of torchvision's URL for that enum member
TIMM_RESNET18 = "timm:resnet18.a1_in1k"
TIMM_REPO = "timm/resnet18.a1_in1k"


@pytest.fixture
def offline_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty TORCH_HOME and HF cache under tmp_path, downloads off."""
    caches = {"torch": tmp_path / "torch", "hf": tmp_path / "hf"}
    monkeypatch.setenv("TORCH_HOME", str(caches["torch"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(caches["hf"]))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return caches


def seed_torchvision(torch_home: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    file = torch_home / "hub" / "checkpoints" / name
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, file)
    return file


def seed_hf(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """The HF cache layout ``models--org--name/{refs/main, snapshots/<commit>/model.safetensors}``."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    file = folder / "snapshots" / commit / "model.safetensors"
    file.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    return file


def test_torchvision_name_loads_offline_into_the_backbone(offline_caches: dict[str, Path]) -> None:
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    file = seed_torchvision(offline_caches["torch"], RESNET18_FILE, state)
    assert resolve_weights(RESNET18, "backbone_weights") == file
    adapter = build_adapter("maskrcnn", {"backbone": "resnet18"}, num_classes=3)
    assert not torch.equal(adapter.backbone.body.conv1.weight, state["conv1.weight"])
    report = _load_pretrained(adapter, RESNET18, "backbone_weights")
    assert torch.equal(adapter.backbone.body.conv1.weight, state["conv1.weight"])
    assert torch.equal(adapter.backbone.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert "fc.weight" in report["unexpected"] and len(report["loaded"]) >= 100


def test_timm_name_loads_offline_from_the_hugging_face_cache(offline_caches: dict[str, Path]) -> None:
    import timm

    torch.manual_seed(2)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    file = seed_hf(offline_caches["hf"], TIMM_REPO, state)
    assert resolve_weights(TIMM_RESNET18) == file
    adapter = build_adapter("unet", {"encoder": "resnet18"}, num_classes=3)
    _load_pretrained(adapter, TIMM_RESNET18, "backbone_weights")
    assert torch.equal(adapter.net.encoder.conv1.weight, state["conv1.weight"])
    assert torch.equal(adapter.net.encoder.layer3[0].bn1.running_var, state["layer3.0.bn1.running_var"])


def test_empty_cache_is_one_line_naming_the_file_and_where_to_put_it(offline_caches: dict[str, Path]) -> None:
    with pytest.raises(UserError) as err:
        resolve_weights(TIMM_RESNET18, "backbone_weights")
    text = str(err.value)
    assert "\n" not in text and text.startswith("backbone_weights: timm:resnet18.a1_in1k")
    assert "model.safetensors" in text and str(offline_caches["hf"] / "models--timm--resnet18.a1_in1k") in text
    with pytest.raises(UserError, match="not a torchvision weights name"):
        resolve_weights("torchvision:ResNet18_Weights.IMAGENET9K", "pretrained")
    with pytest.raises(UserError, match="timm has no pretrained config"):
        resolve_weights("timm:resnet18.no_such_tag", "pretrained")


def test_zoo_train_with_an_empty_cache_says_one_line(offline_caches: dict[str, Path], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "train", "maskrcnn", "--out", str(tmp_path / "run"),
                           "--set", f"backbone_weights={RESNET18}", "--set", "data.synth_n=6",
                           "--set", "data.synth_size=64"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    checkpoints = offline_caches["torch"] / "hub" / "checkpoints"
    assert lines[0].startswith("error: backbone_weights: torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert f"{checkpoints / RESNET18_FILE}" in lines[0] and "download.pytorch.org" in lines[0]


@pytest.mark.slow
def test_study_config_takes_coco_weights_by_name_and_skips_the_class_layers(offline_caches: dict[str, Path]) -> None:
    """configs/maskrcnn-study.yaml's COCO Mask R-CNN (91 classes) onto its 46-class model: the
    class-dependent predictor layers are reported as skipped, the rest loads."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from zoo.adapter import get_adapter
    from zoo.train.api import CONFIG_DIR, load_train_config

    cfg = load_train_config("maskrcnn", CONFIG_DIR / "maskrcnn-study.yaml")
    assert cfg.pretrained == "torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
    torch.manual_seed(3)
    coco = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    seed_torchvision(offline_caches["torch"], "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", coco)
    adapter = get_adapter("maskrcnn")(cfg.model, 46)
    report = _load_pretrained(adapter, cfg.pretrained)
    skipped = " ".join(report["shape_mismatch"])
    assert "roi_heads.box_predictor.cls_score.weight (91, 1024)->(47, 1024)" in skipped
    assert "roi_heads.mask_predictor.mask_fcn_logits.weight" in skipped
    own = adapter.state_dict()
    assert torch.equal(own["backbone.body.layer1.0.conv1.weight"], coco["backbone.body.layer1.0.conv1.weight"])
    assert torch.equal(own["rpn.head.conv.0.0.weight"], coco["rpn.head.conv.0.0.weight"])
    json.dumps(report)  # what train() writes into notes.json
