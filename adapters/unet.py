"""UNet and every other segmentation-models-pytorch architecture, as one semantic adapter.

``model.arch`` picks the smp architecture (``unet`` by default; ``unetplusplus``, ``fpn``,
``deeplabv3plus``, ``pspnet``, ... : see :data:`ARCHS`), ``model.encoder`` its encoder. The
network predicts one sigmoid channel per category; targets, loss and the maps-to-instances step
are the semantic family's (:mod:`zoo.semantic`), so every architecture is trained and scored
through the same path.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
from torch import Tensor, nn

from zoo.adapter import register
from zoo.attributes import AttributeSpace
from zoo.errors import UserError
from zoo.semantic import SemanticAdapter, SemanticConfig, backbone_groups

ARCHS: tuple[str, ...] = tuple(smp.MODEL_ARCHITECTURES_MAPPING)
# Architectures whose decoder takes one width per encoder stage (``decoder_channels``); the others
# keep smp's decoder defaults.
PER_STAGE_DECODERS = ("unet", "unetplusplus", "manet")


@dataclass(frozen=True)
class UnetConfig(SemanticConfig):
    """smp options; the defaults are the CPU preset. The shared options are :class:`SemanticConfig`'s."""

    arch: str = "unet"  # any smp architecture (ARCHS)
    encoder: str = "resnet18"  # any smp encoder name, or "tu-<timm name>"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)  # unet, unetplusplus, manet: one per stage
    encoder_weights_path: str | None = None  # local torchvision/timm/smp state dict for the encoder


@register("unet")
class UnetAdapter(SemanticAdapter):
    """An smp architecture with C sigmoid channels; instances come from connected components."""

    config_cls = UnetConfig
    backbone_option = "encoder"
    predicts_attributes = True

    def __init__(self, cfg: UnetConfig, num_classes: int, attributes: AttributeSpace | None = None) -> None:
        super().__init__(cfg, num_classes, attributes)
        if cfg.encoder_weights_path:
            load_encoder_weights(self, cfg.encoder_weights_path)

    def build_network(self) -> nn.Module:
        """``smp.create_model(arch, ...)`` with one channel per category and random weights."""
        cfg = self.cfg
        _check_arch(cfg.arch)
        _check_encoder_name(cfg.encoder)
        extra = {}
        if cfg.arch in PER_STAGE_DECODERS:
            if len(cfg.decoder_channels) != cfg.encoder_depth:
                raise UserError(f"model.decoder_channels: needs {cfg.encoder_depth} values (encoder_depth), "
                                f"got {len(cfg.decoder_channels)}")
            extra["decoder_channels"] = cfg.decoder_channels
        try:
            net = smp.create_model(cfg.arch, encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth,
                                   encoder_weights=None, classes=self.num_classes, **extra)
        except (ValueError, TypeError, AssertionError) as err:  # smp's own check of arch/encoder/depth
            raise UserError(f"model.arch {cfg.arch!r} with encoder {cfg.encoder!r}, depth {cfg.encoder_depth}: "
                            f"{err}") from None
        return net

    def input_multiple(self) -> int:
        """smp checks that input sides divide by the encoder's output stride."""
        return int(self.net.encoder.output_stride)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Encoder stages as stem/stage2..stage5 (by feature stride); decoder and head as "heads"."""
        return backbone_groups(self, self.net.encoder)

    def adapt_pretrained(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map torchvision/timm backbone keys (``layer1.0.conv1.weight``) and smp keys to ``net.encoder.*``.

        Keys of this adapter (``net.*``) pass unchanged; keys with no match (``fc.*``) are dropped.
        """
        own = set(self.net.encoder.state_dict())
        out = {}
        for key, value in state.items():
            key = key.removeprefix("module.")
            if key.startswith("net."):
                out[key] = value
                continue
            key = key.removeprefix("encoder.")
            parts = key.split(".")
            flat = "_".join(parts[:2]) + "." + ".".join(parts[2:]) if len(parts) > 2 else key
            for cand in (key, f"model.{key}", f"model.{flat}"):
                if cand in own:
                    out[f"net.encoder.{cand}"] = value
                    break
        return out


def load_encoder_weights(adapter: UnetAdapter, path: str | Path) -> int:
    """Load a local state dict into ``adapter``'s encoder; returns the number of tensors loaded.

    Shape-mismatched keys are skipped (e.g. a stem for another channel count); a file that
    matches no encoder key is an error, as it almost certainly belongs to another backbone.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model.encoder_weights_path: {p}: file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: report it on one line
        raise UserError(f"model.encoder_weights_path: {p}: not a torch state dict ({err.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    mapped = adapter.adapt_pretrained(state)
    own = adapter.state_dict()
    usable = {k: v for k, v in mapped.items()
              if k.startswith("net.encoder.") and k in own and own[k].shape == v.shape}
    if not usable:
        raise UserError(f"model.encoder_weights_path: {p}: no tensor matches encoder {adapter.cfg.encoder!r}")
    adapter.load_state_dict(usable, strict=False)
    return len(usable)


def _check_encoder_name(name: str) -> None:
    """A one-line error with a close match for an unknown smp or ``tu-`` (timm) encoder name."""
    if name.startswith("tu-"):
        if timm.is_model(name[3:]):
            return
        hint = _did_you_mean(name[3:], timm.list_models(), prefix="tu-")
    else:
        known = smp.encoders.get_encoder_names()
        if name in known:
            return
        hint = _did_you_mean(name, known)
    raise UserError(f"model.encoder: unknown encoder {name!r}{hint}; use an smp encoder name "
                    f"(resnet18, resnet50, efficientnet-b0, ...) or 'tu-<timm model>'")


def _check_arch(arch: str) -> None:
    """A one-line error naming the valid smp architectures (and the closest one)."""
    if arch not in ARCHS:
        raise UserError(f"model.arch: unknown architecture {arch!r}{_did_you_mean(arch, ARCHS)}; "
                        f"choose one of {', '.join(ARCHS)}")


def _did_you_mean(name: str, known: list[str] | tuple[str, ...], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""
