"""What `zoo compare` trains: one data section, one input size, one selection rule and one
images-seen budget for every model, whatever the order the models are named in.

The plan depends only on the set of models, the preset and the options, never on which model
comes first: the data section is the comparison's own (the preset's defaults for the
comparison, then ``data.*`` overrides), the input side is ``--size`` (or the preset's), and each
run's learning-rate schedule is planned for ``compare.images`` images, so every model finishes it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, Sequence

from zoo.config import DataConfig, StageConfig, TrainConfig, apply_override, from_dict
from zoo.report.write import ReportSettings

# Input side (px) of every network when --size is not given, and the data options of each preset.
PRESET_SIZE: dict[str, int] = {"cpu": 128, "gpu": 512}
PRESET_DATA: dict[str, dict[str, Any]] = {"cpu": {}, "gpu": {"workers": 8}}
# Training images each model reads when compare.images is not given. The cpu figure keeps
# `make demo` (three models on 2 cores) within about 15 minutes, most of it training: 800 images
# are 400 steps of 2 (Mask R-CNN 0.49 s per step, YOLACT 0.41 s, UNet 0.3 s on 2 idle cores).
PRESET_IMAGES: dict[str, int] = {"cpu": 800, "gpu": 120_000}
# compare.select -> the run's best_metric (computed on the validation split each epoch).
SELECT_METRIC: dict[str, str] = {"last": "last", "val_loss": "val_loss", "val_ap": "segm_AP"}
SELECT_TEXT: dict[str, str] = {"last": "the final weights", "val_loss": "the lowest validation loss",
                               "val_ap": "the highest validation mask AP"}


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """Options of the comparison itself (``--set compare.KEY=VALUE``); the rest go to every run."""

    # The adapters trained when none are named: the three families. Registering another adapter
    # does not add it here, so `make demo` and its time budget stay what they are.
    models: tuple[str, ...] = ("maskrcnn", "unet", "yolact")
    # Training images every model reads (None: the preset's, PRESET_IMAGES; 0: each preset's own
    # schedule, which differ). Every stage's schedule is planned for it.
    images: int | None = None
    # How each run picks its best checkpoint and when it stops early, on the validation split.
    select: Literal["last", "val_loss", "val_ap"] = "val_ap"
    seeds: int = 1  # training runs per model, seeds seed, seed+1, ...; the split stays the same
    test_fraction: float = 0.2  # share of images held out for scoring only
    # Wall-clock safety net for the whole comparison in minutes: each run gets an equal share and
    # stops when it is spent (the notes say which run and how far). None: 60 with the cpu
    # preset (about 5x what the default comparison needs on 2 idle cores, so a loaded machine
    # changes its wall time, not its numbers), no limit with gpu; 0: no limit.
    budget_minutes: float | None = None
    resamples: int = 200
    confidence: float = 0.95
    gallery: int = 4
    gallery_score: float = 0.5
    latency_iters: int = 20
    latency_warmup: int = 3
    # Runtimes every model is also timed on, together (zoo.runtimes): torch, onnxruntime, torchscript.
    runtimes: tuple[str, ...] = ("torch",)
    eval_batch_size: int = 2

    def budget_s(self, preset: str) -> float | None:
        minutes = self.budget_minutes if self.budget_minutes is not None else (60.0 if preset == "cpu" else 0.0)
        return minutes * 60.0 if minutes > 0 else None

    def images_for(self, preset: str) -> int | None:
        """Images seen per run, or None when each preset keeps its own schedule."""
        n = self.images if self.images is not None else PRESET_IMAGES.get(preset, PRESET_IMAGES["cpu"])
        return n if n > 0 else None

    def report(self) -> ReportSettings:
        return ReportSettings(resamples=self.resamples, confidence=self.confidence, gallery=self.gallery,
                              gallery_score=self.gallery_score)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], CompareSettings]:
    """Separate ``compare.*`` overrides (parsed strictly) from the ones for every training run."""
    own: dict[str, Any] = {}
    rest = []
    for item in overrides:
        if item.strip().startswith("compare."):
            apply_override(own, item.strip())
        else:
            rest.append(item)
    settings = from_dict(CompareSettings, own.get("compare", {}), "compare")
    if settings.seeds < 1:
        from zoo.errors import UserError

        raise UserError(f"compare.seeds={settings.seeds}: train each model at least once")
    from zoo.runtimes import check_runtime

    for runtime in settings.runtimes:
        check_runtime(runtime)
    return rest, settings


def plan_runs(names: Sequence[str], *, data: str | None, preset: str, overrides: Sequence[str],
              size: int | None = None, settings: CompareSettings = CompareSettings()
              ) -> tuple[list[TrainConfig], list[str]]:
    """One resolved config per name (seed ``seed``, the first of ``compare.seeds``) and the notes
    that say what the comparison set; a config does not depend on the order of ``names``."""
    from zoo.train.api import load_train_config

    given = _given(overrides)
    extra = [f"data.source={json.dumps(data)}"] if data is not None else []
    cfgs = [load_train_config(n, preset=preset, overrides=list(overrides) + extra) for n in names]
    shared = comparison_data(preset, given, data, size, settings.test_fraction)
    seed = int(given.get("seed", 0))
    select = SELECT_METRIC[settings.select]
    patience, eval_limit = given.get("patience"), given.get("eval_limit", TrainConfig.eval_limit)
    images = settings.images_for(preset)
    notes = []
    for i, cfg in enumerate(cfgs):
        changed = [f.name for f in dataclasses.fields(shared) if getattr(cfg.data, f.name) != getattr(shared, f.name)
                   and f.name not in ("test_fraction", "split_seed")]
        if changed:
            notes.append(f"{cfg.adapter}: data section set to the comparison's (its preset differed in "
                         f"{', '.join(changed)})")
        cfg = dataclasses.replace(cfg, data=shared, seed=seed, best_metric=select, patience=patience,
                                  eval_limit=eval_limit)
        cfg, forced = with_input_size(cfg, shared.max_size)
        if forced:
            notes.append(f"{cfg.adapter}: network input set to the shared {shared.max_size} px ({', '.join(forced)})")
        cfgs[i] = with_images_budget(cfg, images) if images is not None else cfg
    notes.append(selection_note(settings.select, eval_limit, patience))
    notes.append(budget_plan_note(cfgs, images))
    return cfgs, notes


def _given(overrides: Sequence[str]) -> dict[str, Any]:
    """The run overrides as one nested dict (what the user set, before any preset)."""
    given: dict[str, Any] = {}
    for item in overrides:
        apply_override(given, item.strip())
    return given


def comparison_data(preset: str, given: dict[str, Any], data: str | None, size: int | None,
                    test_fraction: float) -> DataConfig:
    """The data section every run shares: the preset's comparison defaults, ``data.*`` overrides,
    ``--data``, the input side (``--size``, else ``data.max_size``, else the preset's) and a
    test split fixed by the comparison's seed."""
    section = dict(PRESET_DATA.get(preset, {}), test_fraction=test_fraction, **given.get("data", {}))
    if data is not None:
        section["source"] = data
    section["max_size"] = size if size is not None else section.get("max_size", PRESET_SIZE.get(preset, 128))
    section.setdefault("split_seed", int(given.get("seed", 0)))
    return from_dict(DataConfig, section, "data")


def with_input_size(cfg: TrainConfig, size: int) -> tuple[TrainConfig, list[str]]:
    """``cfg`` with every model field of its adapter's ``input_size_fields`` set to ``size``, and
    the fields that changed (as ``model.NAME was OLD``)."""
    from zoo.adapter import get_adapter

    fields = get_adapter(cfg.adapter).input_size_fields
    changed = [f"model.{f} was {getattr(cfg.model, f)}" for f in fields if getattr(cfg.model, f) != size]
    model = dataclasses.replace(cfg.model, **{f: size for f in fields})
    return dataclasses.replace(cfg, model=model), changed


def with_images_budget(cfg: TrainConfig, images: int) -> TrainConfig:
    """``cfg`` whose stages add up to ``images // (batch_size * accumulate)`` optimizer steps,
    shared between the stages in proportion to their epochs (largest remainder first); a stage
    keeps its epochs (validation points) unless it has fewer steps than epochs."""
    per_step = cfg.batch_size * cfg.optim.accumulate
    total = max(1, images // per_step)
    epochs = [s.epochs for s in cfg.stages]
    exact = [total * e / sum(epochs) for e in epochs]
    steps = [int(x) for x in exact]
    for i in sorted(range(len(steps)), key=lambda i: steps[i] - exact[i])[: total - sum(steps)]:
        steps[i] += 1
    stages: list[StageConfig] = [dataclasses.replace(s, steps=n, epochs=max(1, min(s.epochs, n)))
                                 for s, n in zip(cfg.stages, steps) if n > 0]
    return dataclasses.replace(cfg, stages=tuple(stages))


def planned_images(cfg: TrainConfig) -> int | None:
    """Images a run reads when it completes (None: it depends on the dataset's size)."""
    if any(s.steps is None for s in cfg.stages) and cfg.steps_per_epoch is None:
        return None
    steps = sum(s.steps if s.steps is not None else s.epochs * (cfg.steps_per_epoch or 0) for s in cfg.stages)
    return steps * cfg.batch_size * cfg.optim.accumulate


def selection_note(select: str, eval_limit: int | None, patience: int | None) -> str:
    where = "all validation images" if eval_limit is None else f"the first {eval_limit} validation images"
    stop = f", early stopping after {patience} epochs without improvement" if patience else ", no early stopping"
    return (f"selection (compare.select={select}): every model keeps {SELECT_TEXT[select]}, measured each "
            f"epoch on {where}{stop}; the scored test images are used by neither training nor selection")


def budget_plan_note(cfgs: Sequence[TrainConfig], images: int | None) -> str:
    if images is None:
        return ("budget: each model trains its preset's own schedule (compare.images=0), so the models "
                "saw different numbers of images")
    seen = sorted({planned_images(c) for c in cfgs}, key=lambda v: v or 0)
    return (f"budget (compare.images={images}): every model reads {', '.join(map(str, seen))} training images, "
            f"its learning-rate schedule planned for that length")
