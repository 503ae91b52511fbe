"""Typed, frozen configuration with strict YAML loading.

A run is described by one :class:`TrainConfig`; its ``model`` section is the adapter's own
``config_cls``. YAML files in ``configs/`` are self-contained (no inheritance). Unknown keys are
errors with a "did you mean" hint; the resolved config is written into every run folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zoo.errors import UserError



class ConfigError(UserError):
    """A configuration problem, with the key path in the message."""


@dataclass(frozen=True)
class AttributeOptions:
    """The attribute head's options, shared by every model's config (each ``config_cls`` extends it).

    ``attributes: auto`` puts a multi-label head on the model when the dataset's categories carry
    attributes (iMaterialist ClassId suffixes, Fashionpedia ``attribute_ids``); ``off`` builds the
    model exactly as without attributes (same parameters, same random draws).
    """

    attributes: Literal["auto", "off"] = "auto"
    # Weight of the attribute loss (a BCE averaged over instances and attributes, so the same
    # weight serves 92 or 294 attributes) in the summed loss. At weight 1 a head barely leaves its
    # prior in a few hundred steps (docs/benchmarks.md, attribute loss weight).
    attribute_weight: float = 30.0
    # Probability above which an attribute is predicted; None: chosen on the validation split each
    # time the run validates (the one maximising mean attribute F1), 0.5 until then.
    attribute_threshold: float | None = None


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and at which size they are read."""

    source: str | None = None  # folder or COCO JSON; None = the embedded synthetic dataset
    images: str | None = None  # image folder for a COCO JSON (default: images/ beside it)
    cache: str | None = None  # a `zoo data prepare` cache to read instead of the source
    max_size: int = 256  # longest side after resizing (resize="max_side")
    resize: Literal["max_side", "square"] = "max_side"
    min_size: int = 0  # square mode: scale so the short side is at least this (Matterport: 800)
    limit: int | None = None  # use only the first N images
    val_fraction: float = 0.2  # share of all images used for selection (best checkpoint, early stopping)
    test_fraction: float = 0.0  # share of all images held out for scoring only (0: no test split)
    split: Literal["stratified", "random"] = "stratified"
    split_seed: int | None = None  # seed of the split (None: the run's seed); fixed across training seeds
    rle_base: int = 1  # iMaterialist EncodedPixels start index base (1-based: zoo.data.rle)
    synth_n: int = 300  # embedded dataset: number of images
    synth_size: int = 256  # embedded dataset: image side
    workers: int = 0  # DataLoader worker processes


@dataclass(frozen=True)
class AugmentConfig:
    """The source study's augmentation list (torchvision.transforms.v2), applied to a fraction."""

    fraction: float = 0.5  # share of training samples that get the augmentation pipeline
    hflip: bool = True
    vflip: bool = True
    crop: float = 0.1  # random crop removing up to this share of each side
    blur_sigma: float = 0.5  # Gaussian blur sigma in [0, blur_sigma] on half the samples
    contrast: tuple[float, float] = (0.75, 1.5)
    noise_std: float = 0.05  # additive Gaussian noise, std in [0, noise_std] (image in [0,1])
    brightness: tuple[float, float] = (0.8, 1.2)
    scale: tuple[float, float] = (0.5, 1.5)
    rotate: float = 45.0  # degrees, +-
    translate: float = 0.2  # fraction of the size, +-
    shear: float = 8.0  # degrees, +-


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule (lr itself is per stage)."""

    name: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    warmup_factor: float = 0.1  # warm-up starts at lr * warmup_factor
    schedule: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[float, ...] = (0.67, 0.89)  # step schedule: fractions of the stage's steps
    gamma: float = 0.1
    clip_grad_norm: float | None = 10.0
    accumulate: int = 1  # gradient accumulation steps


@dataclass(frozen=True)
class StageConfig:
    """One training stage: which layers learn, how long, how fast, with or without augmentation."""

    name: str = "all"
    epochs: int = 1
    steps: int | None = None  # optimizer steps of the whole stage, spread over its epochs (None: epochs x steps_per_epoch)
    lr: float = 1e-3
    layers: str = "all"  # heads, 5+, 4+, 3+, 2+, all
    augment: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. ``model`` is the adapter's own config dataclass (or a dict of it)."""

    adapter: str = "maskrcnn"
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: tuple[StageConfig, ...] = (StageConfig(),)
    batch_size: int = 2
    steps_per_epoch: int | None = None  # None: one pass over the training split
    device: str = "auto"  # auto, cpu, cuda, cuda:1
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision (CUDA only)
    seed: int = 0
    # What picks best.pt and drives early stopping, on the validation split ("last": the final weights).
    best_metric: Literal["val_loss", "segm_AP", "segm_AP50", "last"] = "val_loss"
    patience: int | None = None  # early stopping: epochs without improvement
    eval_limit: int | None = 50  # validation images scored for AP each epoch (None: all)
    pretrained: str | None = None  # whole-model weights: torchvision:<Weights>.<NAME>, timm:<model>.<tag> or a file (zoo.weights)
    backbone_weights: str | None = None  # the backbone's alone (e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2), loaded first
    tensorboard: bool = False
    log_every: int = 10  # steps between step rows in metrics.csv
    checkpoint_every: int | None = None  # steps between mid-epoch `last` checkpoints
    threads: int | None = None  # torch CPU threads (None: torch's default)


_YAML_BOOLS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def _fail(path: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"{path or 'config'}: {msg}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples/dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        _fail(path, f"{value!r} does not fit {tp}")
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/no/on/yes as a bool
            spelled = [a for a in args if isinstance(a, str) and a.lower() in _YAML_BOOLS[value]]
            if len(spelled) == 1:
                return spelled[0]
        if value not in args:
            _fail(path, f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(path, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            _fail(path, f"expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML reads `1e-4` (no dot) as a string; a float field accepts it as the number it is.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if tp is type(None) and value is None:
        return None
    _fail(path, f"expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict; unknown keys fail with a close-match hint."""
    if not isinstance(data, dict):
        _fail(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(where, f"unknown key{hint}; valid keys: {', '.join(fields)}")
        kwargs[key] = _convert(hints[key], value, where)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain YAML-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def train_config_from_dict(data: dict[str, Any], model_cls: type, path: str = "") -> TrainConfig:
    """A :class:`TrainConfig` whose ``model`` section is parsed strictly as ``model_cls``."""
    data = dict(data)
    model = data.pop("model", None) or {}
    cfg = from_dict(TrainConfig, data, path)
    cfg = dataclasses.replace(cfg, model=from_dict(model_cls, model, f"{path}model" if not path else f"{path}.model"))
    return check_ranges(cfg, path)


def check_at_least(values: dict[str, int | float | None], minimum: int | float, path: str = "") -> None:
    """Raise :class:`ConfigError` naming the first key whose value (None: unset, allowed) is below
    ``minimum``."""
    for key, value in values.items():
        if value is not None and value < minimum:
            _fail(f"{path}{key}", f"must be at least {minimum}, got {value!r}")


def check_ranges(cfg: TrainConfig, path: str = "") -> TrainConfig:
    """``cfg`` when its values make sense; else a :class:`ConfigError` naming the key.

    Values that type-check but would train nothing (0 epochs, 1-pixel images, no step ever
    taken) are refused here rather than run and reported as a success.
    """
    prefix = f"{path} " if path else ""
    if not cfg.stages:
        _fail(f"{prefix}stages", "needs at least one stage")
    check_at_least({"batch_size": cfg.batch_size, "steps_per_epoch": cfg.steps_per_epoch, "log_every": cfg.log_every,
                    "checkpoint_every": cfg.checkpoint_every, "threads": cfg.threads, "data.max_size": cfg.data.max_size,
                    "data.limit": cfg.data.limit, "data.synth_n": cfg.data.synth_n,
                    "data.synth_size": cfg.data.synth_size, "optim.accumulate": cfg.optim.accumulate}, 1, prefix)
    check_at_least({"data.min_size": cfg.data.min_size, "data.workers": cfg.data.workers,
                    "optim.warmup_steps": cfg.optim.warmup_steps, "patience": cfg.patience,
                    "eval_limit": cfg.eval_limit}, 0, prefix)
    for i, stage in enumerate(cfg.stages):
        check_at_least({f"stages.{i}.epochs": stage.epochs, f"stages.{i}.steps": stage.steps}, 1, prefix)
        if not stage.lr > 0:
            _fail(f"{prefix}stages.{i}.lr", f"must be positive, got {stage.lr!r}")
    for key, value in (("data.val_fraction", cfg.data.val_fraction), ("data.test_fraction", cfg.data.test_fraction)):
        if not 0.0 <= value < 1.0:
            _fail(f"{prefix}{key}", f"must be in [0, 1), got {value!r}")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        _fail(f"{prefix}data.test_fraction", "data.val_fraction + data.test_fraction must leave training images "
              f"(sum {cfg.data.val_fraction + cfg.data.test_fraction} >= 1)")
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing, empty or non-YAML file or a non-mapping is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: invalid YAML ({err.__class__.__name__}: {str(err).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a YAML file (not UTF-8 text)") from None
    if data is None:  # an empty file would silently mean the built-in defaults, not the preset
        raise ConfigError(f"{p}: the config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``key.sub=value`` (value parsed as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected KEY=VALUE")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw)
    node: Any = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if isinstance(node, list):  # stages.1.lr: a list item by index
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {assignment!r}: no item {part!r} (the list has {len(node)})")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override {assignment!r}: no item {last!r} (the list has {len(node)})")
        node[int(last)] = value
    else:
        node[last] = value


def dump_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
