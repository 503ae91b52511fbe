"""Pretrained weights by name, written as torchvision and timm users write them.

``pretrained:`` and ``backbone_weights:`` take

* ``torchvision:<Enum>.<MEMBER>``, e.g. ``torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1`` or
  ``torchvision:ResNet50_Weights.IMAGENET1K_V2``: the file of torchvision's weights enum
  (:func:`torchvision.models.get_weight`), in torch's hub cache (``$TORCH_HOME/hub/checkpoints``,
  default ``~/.cache/torch/hub/checkpoints``) as ``torch.hub.load_state_dict_from_url`` keeps it;
* ``timm:<model>.<tag>``, e.g. ``timm:resnet50.a1_in1k``: the file timm's pretrained config names
  (:func:`timm.models.get_pretrained_cfg`): on the Hugging Face Hub (``model.safetensors``, else
  ``pytorch_model.bin``, in the HF cache ``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``),
  or at its URL (torch's hub cache), as ``timm.create_model(..., pretrained=True)`` reads it;
* anything else: a local file (a torchvision/timm state dict, a safetensors file or a zoo checkpoint).

A file already in the cache is read from there; otherwise it is downloaded by the library's own
function, unless ``ZOO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``. When neither works, the error is one
line naming the file and the path to put it at.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from zoo.errors import UserError

HF_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order: safetensors first


def offline() -> bool:
    """True when downloads must not be tried (``ZOO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes") for k in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps files (follows ``$TORCH_HOME`` now)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved from the environment as ``huggingface_hub`` does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def resolve_weights(spec: str, key: str = "pretrained") -> Path:
    """The local file that ``spec`` (see the module docstring) names, downloading it when needed.

    ``key`` (the config key, e.g. ``backbone_weights``) starts every error message.
    """
    if spec.startswith("torchvision:"):
        return _torchvision_file(spec.removeprefix("torchvision:"), key)
    if spec.startswith("timm:"):
        return _timm_file(spec.removeprefix("timm:"), key)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{key}: {spec}: file not found (a local weights file, "
                        f"or a name: torchvision:<Weights>.<MEMBER>, timm:<model>.<tag>)")
    return path


def load_weights(spec: str, key: str = "pretrained") -> dict[str, torch.Tensor]:
    """The state dict ``spec`` names: ``{name: tensor}`` as its library saved it."""
    path = resolve_weights(spec, key)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # a truncated or foreign file
            raise UserError(f"{key}: {path}: not a safetensors file ({type(err).__name__})") from None
    from zoo.train.checkpoint import model_state_from_file

    return model_state_from_file(path)


# ---------------------------------------------------------------- torchvision
def _torchvision_file(name: str, key: str) -> Path:
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError) as err:
        raise UserError(f"{key}: torchvision:{name}: not a torchvision weights name ({type(err).__name__}: {err}); "
                        f"names look like ResNet50_Weights.IMAGENET1K_V2") from None
    file = torch_hub_checkpoints() / Path(urlparse(weights.url).path).name
    if file.is_file():
        return file
    reason = "downloads are off (ZOO_OFFLINE/HF_HUB_OFFLINE)"
    if not offline():
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            match = torch.hub.HASH_REGEX.search(file.name)  # torchvision names carry a hash prefix
            torch.hub.download_url_to_file(weights.url, str(file), match.group(1) if match else None)
            return file
        except Exception as err:  # offline, proxy, disk: what to do is the same
            reason = f"the download failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    raise UserError(f"{key}: torchvision:{name}: {file.name} is not in the torch cache and {reason}; "
                    f"put {weights.url} at {file}")


# ---------------------------------------------------------------- timm
def _timm_file(name: str, key: str) -> Path:
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # a known architecture with another tag
        cfg = None
    if cfg is None:
        import timm

        close = timm.list_pretrained(f"{name.split('.')[0]}*")[:5]
        hint = f"; pretrained tags of that model: {', '.join(close)}" if close else ""
        raise UserError(f"{key}: timm:{name}: timm has no pretrained config of that name{hint}")
    if cfg.hf_hub_id:
        return _hf_file(name, cfg.hf_hub_id, key)
    if cfg.url:
        file = torch_hub_checkpoints() / Path(urlparse(cfg.url).path).name
        if file.is_file():
            return file
        if not offline():
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(cfg.url, str(file))
                return file
            except Exception as err:
                raise UserError(f"{key}: timm:{name}: {file.name} is not in the torch cache and the download "
                                f"failed ({type(err).__name__}); put {cfg.url} at {file}") from None
        raise UserError(f"{key}: timm:{name}: {file.name} is not in the torch cache and downloads are off; "
                        f"put {cfg.url} at {file}")
    raise UserError(f"{key}: timm:{name}: its pretrained config names no file (hub id or URL)")


def _hf_file(name: str, hub_id: str, key: str) -> Path:
    """``model.safetensors`` (else ``pytorch_model.bin``) of ``hub_id`` from the HF cache, or downloaded."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    cache = hf_hub_cache()
    for filename in HF_FILES:
        found = try_to_load_from_cache(repo, filename, cache_dir=str(cache), revision=revision or None)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    reason = "downloads are off (ZOO_OFFLINE/HF_HUB_OFFLINE)"
    if not offline():
        errors = []
        for filename in HF_FILES:
            try:
                return Path(hf_hub_download(repo, filename, revision=revision or None, cache_dir=str(cache)))
            except Exception as err:  # a missing file (try the next) or no network
                errors.append(type(err).__name__)
        reason = f"the download failed ({', '.join(errors)})"
    folder = cache / f"models--{repo.replace('/', '--')}"
    raise UserError(f"{key}: timm:{name}: {HF_FILES[0]} of {repo} is not in the Hugging Face cache and {reason}; "
                    f"put it in {folder} (huggingface-cli download {repo} {HF_FILES[0]} --cache-dir {cache})")
