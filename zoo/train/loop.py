"""The training loop: stages -> epochs -> optimizer steps. It never asks which adapter it trains.

Reads top to bottom: :meth:`Trainer.run` walks the stages; :meth:`Trainer._stage` builds the
optimizer for the stage's trainable groups; :meth:`Trainer._epoch` runs steps, then validation,
checkpoints and early stopping.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zoo.adapter import Adapter, set_trainable
from zoo.config import TrainConfig
from zoo.errors import UserError
from zoo.train import distributed as D
from zoo.train.checkpoint import FORMAT, save_atomic
from zoo.train.frozen import train_mode
from zoo.train.loader import EpochLoaders, EpochSampler, TrainView, move_batch
from zoo.train.logger import MetricsLog, loss_column
from zoo.train.progress import TrainProgress
from zoo.train.schedule import make_optimizer, make_scheduler
from zoo.train.state import TrainState, capture_rng, restore_rng
from zoo.train.validate import validate

StepHook = Callable[[int, Adapter], bool]  # after each optimizer step: (global step, adapter) -> stop?


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class Trainer:
    def __init__(self, cfg: TrainConfig, adapter: Adapter, dataset: Any, split: dict[str, list[int]],
                 out: Path, device: torch.device, dist: D.DistInfo, on_step: StepHook | None = None) -> None:
        self.cfg, self.adapter, self.dataset, self.split = cfg, adapter, dataset, split
        self.out, self.device, self.dist, self.on_step = out, device, dist, on_step
        self.state = TrainState()
        self.resume_ckpt: dict[str, Any] | None = None
        self.checkpoint_meta: dict[str, Any] = {}  # saved with the weights (zoo.train.run.checkpoint_meta)
        self.resumed_at: int | None = None  # global step of the checkpoint a resumed run starts from
        self.stop_requested = False
        self.stopped_reason = "completed"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.use_amp = self.amp_dtype is not None and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and cfg.amp == "fp16")
        self.log: MetricsLog | None = None
        self.progress = TrainProgress(enabled=dist.is_main)
        self.loaders = EpochLoaders(cfg.batch_size, cfg.data.workers, device.type == "cuda", cfg.data.max_size)

    # ------------------------------------------------------------------ top level
    def resume_from(self, ckpt: dict[str, Any]) -> None:
        self.adapter.load_state_dict(ckpt["model"])
        self.state = TrainState(**ckpt["state"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.resume_ckpt = ckpt
        self.resumed_at = self.state.global_step

    def run(self) -> dict[str, Any]:
        """Train every remaining stage; returns the run summary (also written as summary.json)."""
        previous = signal.signal(signal.SIGINT, self._on_sigint) if self.dist.is_main else None
        try:
            with self.progress:
                while self.state.stage < len(self.cfg.stages) and not self.stop_requested:
                    self._stage(self.state.stage)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.log is not None:
                self.log.close()
            self.loaders.close()
        planned = sum(self.stage_steps(i) for i in range(len(self.cfg.stages)))
        return {"stopped_reason": self.stopped_reason, "planned_steps": planned, **self.state.as_dict()}

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.stop_requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        self.stopped_reason = "interrupted"

    # ------------------------------------------------------------------ one stage
    def _stage(self, index: int) -> None:
        stage = self.cfg.stages[index]
        set_trainable(self.adapter, stage.layers)
        params = [p for p in self.adapter.parameters() if p.requires_grad]
        if not params:
            raise UserError(f"stage {stage.name!r}: layers={stage.layers!r} leaves nothing to train")
        model: nn.Module = self.adapter
        if self.dist.enabled:
            # Re-wrapped per stage: the set of trainable parameters changes between stages.
            model = nn.parallel.DistributedDataParallel(self.adapter, find_unused_parameters=True)
        optimizer = make_optimizer(params, stage.lr, self.cfg.optim)
        # The schedule is planned for the stage's whole length, so a budget in steps always decays.
        scheduler = make_scheduler(optimizer, self.stage_steps(index), self.cfg.optim)
        ckpt = self.resume_ckpt
        if ckpt is not None and ckpt["state"]["stage"] == index and ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt is not None:
            restore_rng(ckpt["rng"])
            self.resume_ckpt = None
        while self.state.epoch_in_stage < stage.epochs and not self.stop_requested:
            steps = self.epoch_steps(index, self.state.epoch_in_stage)
            finished_stage = self._epoch(model, optimizer, scheduler, steps)
            if finished_stage:
                break
        if not self.stop_requested:
            self.state.stage += 1
            self.state.epoch_in_stage = 0
            self.state.bad_epochs = 0

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: the configured limit, or one pass over this rank's share."""
        if self.cfg.steps_per_epoch is not None:
            return self.cfg.steps_per_epoch
        per_rank = math.ceil(len(self.split["train"]) / self.dist.world_size)
        return max(1, per_rank // (self.cfg.batch_size * self.cfg.optim.accumulate))

    def stage_steps(self, index: int) -> int:
        """Optimizer steps of stage ``index``: its ``steps``, or ``epochs`` x :meth:`steps_per_epoch`."""
        stage = self.cfg.stages[index]
        return stage.steps if stage.steps is not None else stage.epochs * self.steps_per_epoch()

    def epoch_steps(self, index: int, epoch_in_stage: int) -> int:
        """Steps of one epoch of stage ``index``: the stage's steps spread evenly, earlier epochs
        taking the remainder, so the epochs add up to exactly :meth:`stage_steps`."""
        stage = self.cfg.stages[index]
        if stage.steps is None:
            return self.steps_per_epoch()
        base, extra = divmod(stage.steps, stage.epochs)
        return base + (1 if epoch_in_stage < extra else 0)

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> bool:
        """Train one epoch, validate, checkpoint. Returns True when early stopping ends the stage."""
        cfg, st = self.cfg, self.state
        stage = cfg.stages[st.stage]
        per_step = cfg.batch_size * cfg.optim.accumulate
        sampler = EpochSampler(self.split["train"], cfg.seed, st.global_epoch, self.dist.rank,
                               self.dist.world_size, skip=st.step_in_epoch * per_step, limit=steps * per_step)
        augment = cfg.augment if stage.augment else None
        loader = self.loaders.loader(stage.augment, lambda: TrainView(self.dataset, augment, cfg.seed), sampler,
                                     seed=cfg.seed * 1009 + st.global_epoch)
        train_mode(self.adapter)  # frozen groups keep their normalisation statistics
        self.progress.start_epoch(f"{stage.name} {st.epoch_in_stage + 1}/{stage.epochs}", steps, st.step_in_epoch)
        t0, seen, micro = time.perf_counter(), 0, 0
        for images, targets in loader:
            images, targets = move_batch(images, targets, self.device)
            losses = self._forward(model, images, targets, cfg.optim.accumulate)
            seen += len(images) * self.dist.world_size
            st.images_seen += len(images) * self.dist.world_size
            micro += 1
            if micro % cfg.optim.accumulate:
                continue
            self._optimizer_step(optimizer, scheduler)
            self._after_step(losses, optimizer, seen / (time.perf_counter() - t0))
            if self.stop_requested:
                st.train_time_s += time.perf_counter() - t0  # before the save, so it is kept
                if self.stopped_reason == "stopped by request":
                    self._validate_cut()
                else:
                    self._save("last")
                return True
        st.train_time_s += time.perf_counter() - t0
        return self._end_epoch(seen / max(1e-9, time.perf_counter() - t0))

    def _forward(self, model: nn.Module, images: list, targets: list, accumulate: int) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.use_amp):
            losses = model(images, targets)
            total = sum(losses.values())
        self._check_finite(total, losses)
        self.scaler.scale(total / accumulate).backward()
        return {"loss": total.detach(), **{k: v.detach() for k, v in losses.items()}}

    def _check_finite(self, total: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        finite = bool(torch.isfinite(total).item())
        if self.dist.enabled:
            flag = torch.tensor([1.0 if finite else 0.0], device=total.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item())
        if not finite:
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise TrainingDiverged(
                f"loss is not finite at step {self.state.global_step + 1} (stage {self.cfg.stages[self.state.stage].name!r}, "
                f"{parts}); stopped. The last good checkpoint is {self.out / 'checkpoints' / 'last.pt'}; "
                f"lower the learning rate or enable gradient clipping")

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        if self.cfg.optim.clip_grad_norm is not None:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        self._optimizer, self._scheduler = optimizer, scheduler

    def _after_step(self, losses: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, ips: float) -> None:
        st = self.state
        st.step_in_epoch += 1
        st.global_step += 1
        lr = optimizer.param_groups[0]["lr"]
        values = {k: float(v) for k, v in losses.items()}
        self.progress.advance(values["loss"], lr, ips)
        if self.dist.is_main:
            log = self._logger(list(k for k in values if k != "loss"))
            if st.global_step % self.cfg.log_every == 0 or st.step_in_epoch == 1:
                log.write({"kind": "step", **self._where(), "lr": lr, "loss": values["loss"],
                           **{loss_column(k): v for k, v in values.items() if k != "loss"}, "images_per_s": ips})
        every = self.cfg.checkpoint_every
        if every and st.global_step % every == 0:
            self._save("last")
        if self.on_step is not None and self.on_step(st.global_step, self.adapter):
            self.stop_requested, self.stopped_reason = True, "stopped by request"
        self.stop_requested = D.broadcast_flag(self.stop_requested, self.dist)

    def _where(self) -> dict[str, Any]:
        st = self.state
        return {"stage": self.cfg.stages[st.stage].name, "epoch": st.global_epoch + 1, "step": st.global_step}

    def _logger(self, loss_names: list[str]) -> MetricsLog:
        if self.log is None:
            self.log = MetricsLog(self.out / "metrics.csv", loss_names, self.resumed_at, self.cfg.tensorboard)
        return self.log

    # ------------------------------------------------------------------ end of epoch
    def _end_epoch(self, ips: float) -> bool:
        st, cfg = self.state, self.cfg
        where = self._where()
        D.check_replicas_agree(self.adapter, self.dist)  # before rank 0 saves what it holds for all
        result = validate(self.adapter, self.dataset, self.split["val"], cfg, self.device, self.dist)
        st.epoch_in_stage += 1
        st.global_epoch += 1
        st.step_in_epoch = 0
        improved = False
        if self.dist.is_main:
            self._logger([]).write({"kind": "epoch", **where, "images_per_s": ips, "time_s": st.train_time_s,
                                    **result})
            # "last": every epoch is the new best, so best.pt is the final weights.
            value = float(st.global_epoch) if cfg.best_metric == "last" else result.get(cfg.best_metric)
            improved = value is not None and (st.best_value is None or self._better(value, st.best_value))
            if improved:
                st.best_value, st.best_epoch, st.bad_epochs = value, st.global_epoch, 0
            else:
                st.bad_epochs += 1
            self.progress.epoch_done(result)
        self._save("last")
        if improved:
            self._save("best")
        stop_stage = cfg.patience is not None and st.bad_epochs >= cfg.patience
        return D.broadcast_flag(stop_stage, self.dist)

    def _validate_cut(self) -> None:
        """Validate a run stopped mid-schedule (a time budget), so that its selection also sees
        the weights it ends with. ``last.pt`` keeps the random state of before the validation
        (its loader draws from it), so a resumed run goes on exactly as an uninterrupted one."""
        st, cfg = self.state, self.cfg
        rng = capture_rng()
        result = validate(self.adapter, self.dataset, self.split["val"], cfg, self.device, self.dist)
        improved = False
        if self.dist.is_main:
            self._logger([]).write({"kind": "cut", **self._where(), "time_s": st.train_time_s, **result})
            value = result.get(cfg.best_metric)
            improved = cfg.best_metric == "last" or (
                value is not None and (st.best_value is None or self._better(value, st.best_value)))
            if improved and cfg.best_metric != "last":
                st.best_value, st.best_epoch = value, st.global_epoch
        self._save("last", rng)
        if improved:
            self._save("best", rng)

    def _better(self, value: float, best: float) -> bool:
        return value < best if self.cfg.best_metric == "val_loss" else value > best  # "last": epochs grow

    def _save(self, name: str, rng: dict[str, Any] | None = None) -> None:
        """Write checkpoint ``name`` atomically; ``rng``: the random state to store (default: now's)."""
        if not self.dist.is_main:
            return
        opt = getattr(self, "_optimizer", None)
        sched = getattr(self, "_scheduler", None)
        ckpt = {
            "format": FORMAT,
            "adapter": self.cfg.adapter,
            "model": self.adapter.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else None,
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng if rng is not None else capture_rng(),
            "state": self.state.as_dict(),
            "meta": self.checkpoint_meta,
        }
        save_atomic(ckpt, self.out / "checkpoints" / f"{name}.pt")
