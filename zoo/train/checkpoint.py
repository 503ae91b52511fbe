"""Checkpoints: written atomically (temp file + rename), loaded weights-only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import UserError

FORMAT = "zoo-checkpoint-1"


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` with ``torch.save`` to a temp file beside ``path``, then rename over it.

    A crash mid-write leaves the previous checkpoint intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete the temp files (``.NAME.*`` beside ``NAME``) that a process killed inside
    :func:`save_atomic` left in ``folder``; call it before a run (re)starts writing there."""
    if not Path(folder).is_dir():
        return []
    orphans = [p for p in Path(folder).glob(".*.pt.*") if p.is_file()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans


def is_checkpoint_file(path: Path | str) -> bool:
    """True for a ``torch.save`` file (a zoo checkpoint, a state dict); False for a TorchScript
    archive (it also holds ``constants.pkl``), an ONNX file or anything else."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names)


def load_weights_only(path: Path | str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with a one-line error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint or weights file not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickled code, wrong format
        raise UserError(f"{p}: cannot be loaded weights-only ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def model_state_from_file(path: Path | str) -> dict[str, torch.Tensor]:
    """The model state dict in a zoo checkpoint, or the file itself when it is a plain state dict."""
    obj = load_weights_only(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj["model"]
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]  # timm / lightning style wrapper
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise UserError(f"{path}: not a state dict or a zoo checkpoint")


def load_matching(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load the tensors whose names and shapes match; report what was skipped or left out.

    Returns ``{"loaded": [...], "shape_mismatch": [...], "unexpected": [...], "missing": [...]}``:
    transfer to another class count lands in ``shape_mismatch`` (the class-specific head layers).
    """
    own = module.state_dict()
    loaded, mismatch, unexpected = [], [], []
    filtered = {}
    for key, value in state.items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            mismatch.append(f"{key} {tuple(value.shape)}->{tuple(own[key].shape)}")
        else:
            filtered[key] = value
            loaded.append(key)
    module.load_state_dict(filtered, strict=False)
    missing = [k for k in own if k not in filtered]
    return {"loaded": loaded, "shape_mismatch": mismatch, "unexpected": unexpected, "missing": missing}
