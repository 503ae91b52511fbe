"""Open a trained model: a run folder or a single checkpoint file, without its training data.

A checkpoint written by the harness holds, beside the weights, ``meta`` (:func:`checkpoint_meta`):
the adapter and its resolved config, the categories and attributes the model predicts, the input
policy, the zoo version and the training split. That is all predicting, timing or exporting
needs; the dataset is opened only when ground truth is asked for (:attr:`LoadedRun.dataset`), and
then its categories must be the checkpoint's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.adapter import Adapter, build_with_attributes, get_adapter
from zoo.attributes import AttributeSpace, space_from_state
from zoo.config import TrainConfig, load_yaml, to_dict, train_config_from_dict
from zoo.errors import UserError
from zoo.train.checkpoint import FORMAT, load_weights_only, model_state_from_file
from zoo.types import Category


@dataclass
class LoadedRun:
    """A trained model and what it was trained with.

    ``path`` is the run folder, or the checkpoint file itself when it was given alone;
    ``split`` holds dataset indices (train, val, test; test empty for two-way runs).
    """

    path: Path
    cfg: TrainConfig
    adapter: Adapter
    categories: list[Category]
    split: dict[str, list[int]]
    checkpoint: Path
    meta: dict[str, Any] = field(default_factory=dict)
    _dataset: Any = field(default=None, repr=False)

    @property
    def dataset(self) -> Any:
        """The run's own dataset (ground truth of its split), opened on first use and checked to
        have the checkpoint's categories."""
        if self._dataset is None:
            self._dataset = open_matching_dataset(self, self.cfg.data)
        return self._dataset


def read_run_config(run_dir: Path | str) -> TrainConfig:
    """The resolved config of a run folder (its config.yaml) or of a checkpoint file (its meta)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        meta = _meta_of(load_weights_only(run_dir), run_dir)
        return _config_from_meta(meta, run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    data = load_yaml(cfg_path)
    return train_config_from_dict(data, get_adapter(str(data.get("adapter"))).config_cls, f"{cfg_path}:")


def find_checkpoint(target: Path | str, which: str = "best") -> tuple[Path, Path | None]:
    """``(checkpoint file, run folder or None)`` for a run folder (its ``which`` checkpoint,
    falling back to ``last``) or a checkpoint file (its run folder when it sits in one)."""
    target = Path(target)
    if target.is_file():
        folder = target.parent.parent
        return target, folder if (folder / "config.yaml").is_file() and target.parent.name == "checkpoints" else None
    if not target.is_dir():
        raise UserError(f"{target}: no such run folder or checkpoint file")
    for name in (which, "last"):
        ckpt = target / "checkpoints" / f"{name}.pt"
        if ckpt.is_file():
            return ckpt, target
    raise UserError(f"{target}: no checkpoint in checkpoints/")


def load_run(run_dir: Path | str, which: str = "best", data: str | None = None) -> LoadedRun:
    """The adapter of a run folder or checkpoint file with its ``best`` (else ``last``) weights,
    on the CPU in eval mode. Reads no dataset.

    ``data`` replaces the dataset source that :attr:`LoadedRun.dataset` opens (to evaluate on
    another dataset with the same categories).
    """
    ckpt_path, folder = find_checkpoint(run_dir, which)
    ckpt = load_weights_only(ckpt_path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "meta" not in ckpt:
        return _load_without_meta(Path(run_dir), ckpt_path, folder, data)
    meta = _meta_of(ckpt, ckpt_path)
    cfg = _config_from_meta(meta, ckpt_path)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=data, cache=None))
    categories = [Category(int(c["id"]), int(c["label"]), str(c["name"]), str(c.get("supercategory", "")))
                  for c in meta["categories"]]
    space = AttributeSpace.from_dict(meta["attributes"]) if meta.get("attributes") else None
    adapter = build_with_attributes(get_adapter(cfg.adapter), cfg.model, len(categories), space)
    adapter.load_state_dict(ckpt["model"])
    adapter.eval()
    split = {k: [int(i) for i in meta["split"].get(k, [])] for k in ("train", "val", "test")}
    return LoadedRun(folder or ckpt_path, cfg, adapter, categories, split, ckpt_path, meta)


def _meta_of(ckpt: Any, path: Path) -> dict[str, Any]:
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not meta.get("categories"):
        raise UserError(f"{path}: a checkpoint without categories and config (an older format); "
                        f"open its run folder instead")
    return meta


def _config_from_meta(meta: dict[str, Any], path: Path) -> TrainConfig:
    try:
        cls = get_adapter(str(meta["adapter"]))
    except KeyError as err:
        raise UserError(f"{path}: {err.args[0]}") from None
    return train_config_from_dict(meta["config"], cls.config_cls, f"{path}:")


def _load_without_meta(target: Path, ckpt: Path, folder: Path | None, data: str | None) -> LoadedRun:
    """A checkpoint from before ``meta``: config from the run folder, categories from its dataset."""
    if folder is None:
        raise UserError(f"{ckpt}: a checkpoint without categories and config (an older format); "
                        f"open its run folder instead")
    from zoo.data.dataset import open_dataset

    cfg = read_run_config(folder)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=data, cache=None))
    dataset = open_dataset(cfg.data)
    state = model_state_from_file(ckpt)
    space = space_from_state(state, dataset.source.attributes)  # the attributes the weights predict
    adapter = build_with_attributes(get_adapter(cfg.adapter), cfg.model, len(dataset.categories), space)
    adapter.load_state_dict(state)
    adapter.eval()
    split_path = folder / "split.json"
    split = (json.loads(split_path.read_text()) if split_path.exists()
             else {"train": [], "val": list(range(len(dataset)))})
    return LoadedRun(folder, cfg, adapter, list(dataset.categories),
                     {"train": split["train"], "val": split["val"], "test": split.get("test", [])}, ckpt,
                     _dataset=dataset)


# ---------------------------------------------------------------- what a checkpoint holds
def checkpoint_meta(cfg: TrainConfig, dataset: Any, split: dict[str, list[int]], adapter: Adapter) -> dict[str, Any]:
    """Everything needed to use the weights without the training data, in plain containers (so
    ``torch.load(weights_only=True)`` reads it): adapter and resolved config, categories (source
    ids, contiguous labels, names, supercategories), attributes, input policy, zoo version and
    the training split (indices, and a digest of the training images' ids)."""
    from zoo import __version__

    ids = [str(i) for i in dataset.image_ids]
    train_ids = "\n".join(ids[i] for i in split["train"]).encode()
    space = getattr(adapter, "attribute_space", None)
    return {
        "zoo_version": __version__,
        "adapter": cfg.adapter,
        "config": to_dict(cfg),
        "categories": [{"id": int(c.id), "label": int(c.label), "name": str(c.name),
                        "supercategory": str(c.supercategory)} for c in dataset.categories],
        "attributes": space.to_dict() if space is not None else None,
        "input": input_policy(cfg, adapter),
        "split": {"source": cfg.data.source or "embedded synthetic", "images": len(ids), "method": cfg.data.split,
                  "seed": cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed,
                  "val_fraction": cfg.data.val_fraction, "test_fraction": cfg.data.test_fraction,
                  "train_ids_sha256": hashlib.sha256(train_ids).hexdigest(),
                  **{k: [int(i) for i in split.get(k, [])] for k in ("train", "val", "test")}},
    }


def input_policy(cfg: TrainConfig, adapter: Adapter) -> dict[str, Any]:
    """How a photo becomes the network's input: the reader's resize (``data.max_size``,
    ``data.resize``, ``data.min_size``) and the adapter's own input-size fields."""
    model = {f: getattr(cfg.model, f) for f in type(adapter).input_size_fields}
    return {"max_size": cfg.data.max_size, "resize": cfg.data.resize, "min_size": cfg.data.min_size, "model": model}


def open_matching_dataset(run: LoadedRun, data_cfg: Any) -> Any:
    """The dataset ``data_cfg`` opens, when its categories (ids and names) are the checkpoint's;
    else a one-line error naming the first difference."""
    from zoo.data.dataset import open_dataset

    dataset = open_dataset(data_cfg)
    check_categories(run.categories, dataset.categories, data_cfg.source or "the embedded synthetic dataset",
                     run.checkpoint)
    return dataset


def check_categories(trained: list[Category], found: Any, where: str, checkpoint: Path) -> None:
    """Raise :class:`UserError` unless ``found`` has the ids and names of ``trained``, in label order."""
    mine = {c.label: (c.id, c.name) for c in trained}
    theirs = {c.label: (c.id, c.name) for c in found}
    if len(mine) != len(theirs):
        raise UserError(f"{where}: {len(theirs)} categories, but the model of {checkpoint} predicts {len(mine)}")
    for label in sorted(mine):
        if mine[label] != theirs.get(label):
            (tid, tname), (fid, fname) = mine[label], theirs.get(label, (None, None))
            raise UserError(f"{where}: category {label} is id {fid} {fname!r}, but the model of {checkpoint} "
                            f"was trained with id {tid} {tname!r}")
