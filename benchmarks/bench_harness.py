"""Harness overhead: a training step through zoo's Trainer vs a bare hand-written loop.

Same model, same batch, same optimizer; the dataset is held in memory so that both sides pay
nothing for reading images. Also reports how fast the real data loader (JPEG + RLE decoding,
augmentation) delivers images compared with how fast the model consumes them.

    python benchmarks/bench_harness.py --adapter maskrcnn --size 128 --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo.adapters  # noqa: E402,F401
from zoo.config import DataConfig  # noqa: E402
from zoo.data.dataset import open_dataset  # noqa: E402
from zoo.train import distributed as D  # noqa: E402
from zoo.train.api import load_train_config  # noqa: E402
from zoo.train.loader import EpochSampler, TrainView, collate, make_loader  # noqa: E402
from zoo.train.loop import Trainer  # noqa: E402
from zoo.train.schedule import make_optimizer  # noqa: E402
from zoo.transforms import to_model_input  # noqa: E402


class InMemory(torch.utils.data.Dataset):
    """The first ``n`` samples of a dataset, decoded once."""

    def __init__(self, dataset, n: int) -> None:
        self.items = [dataset[i] for i in range(n)]
        self.categories = dataset.categories

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def bare_loop(adapter, view, order, steps: int, lr: float, cfg) -> float:
    """Seconds per step of the plainest correct loop: the same samples in the same order (collated
    per step, as a loader would), the same optimizer (the config's, from the same factory) and the
    same clipping as the harness."""
    params = [p for p in adapter.parameters() if p.requires_grad]
    opt = make_optimizer(params, lr, cfg.optim)
    adapter.train()
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        first = (step * cfg.batch_size) % len(order)  # len(order) is a multiple of the batch size
        images, targets = collate([view[item] for item in order[first:first + cfg.batch_size]])
        losses = adapter(images, targets)
        sum(losses.values()).backward()
        if cfg.optim.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def harness_steps(cfg, adapter, data, steps: int, out: Path) -> float:
    """Seconds per step inside the Trainer (between step hooks, validation excluded)."""
    stamps: list[float] = []

    def hook(step: int, _adapter) -> bool:
        stamps.append(time.perf_counter())
        return step >= steps

    split = {"train": list(range(len(data))), "val": []}
    trainer = Trainer(cfg, adapter, data, split, out, torch.device("cpu"), D.DistInfo(), hook)
    trainer.run()
    return statistics.median([b - a for a, b in zip(stamps, stamps[1:])])


def loader_rate(cfg, dataset, n_images: int, augment: bool) -> float:
    view = TrainView(dataset, cfg.augment if augment else None, cfg.seed)
    sampler = EpochSampler(list(range(len(dataset))), cfg.seed, 0, limit=n_images)
    loader = make_loader(view, sampler, cfg.batch_size, cfg.data.workers, pin=False, seed=0)
    t0 = time.perf_counter()
    seen = sum(len(images) for images, _ in loader)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", default="maskrcnn")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None, help="dataset (default: embedded synthetic)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [f"data.max_size={args.size}", "log_every=1000", "eval_limit=0",
                 f"steps_per_epoch={args.steps + 1}",
                 'stages=[{"name": "all", "epochs": 1, "lr": 0.001, "layers": "all", "augment": false}]',
                 "optim.warmup_steps=0"]
    if args.data:
        overrides.append(f"data.source={args.data}")
    cfg = load_train_config(args.adapter, overrides=overrides)
    dataset = open_dataset(DataConfig(source=cfg.data.source, max_size=args.size, limit=64))
    data = InMemory(dataset, cfg.batch_size * 4)
    from zoo.adapter import get_adapter

    torch.manual_seed(0)
    adapter = get_adapter(args.adapter)(cfg.model, len(dataset.categories))
    # The batches the harness draws in epoch 0 (same sampler, no augmentation), in its order.
    order = list(EpochSampler(list(range(len(data))), cfg.seed, 0))
    view = TrainView(data, None, cfg.seed)
    bare, harness = [], []
    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-harness-"))
    for r in range(args.repeats):  # interleaved, so machine noise hits both sides alike
        bare.append(bare_loop(adapter, view, order, args.steps, 1e-3, cfg))
        harness.append(harness_steps(cfg, adapter, data, args.steps, tmp / str(r)))
    b, h = statistics.median(bare), statistics.median(harness)
    model_ips = cfg.batch_size / b
    result = {
        "adapter": args.adapter, "size": args.size, "batch_size": cfg.batch_size, "threads": args.threads,
        "bare_step_s": round(b, 4), "harness_step_s": round(h, 4), "overhead_pct": round(100 * (h / b - 1), 2),
        "model_train_images_per_s": round(model_ips, 2),
        "loader_images_per_s": round(loader_rate(cfg, dataset, 32, augment=False), 1),
        "loader_images_per_s_augmented": round(loader_rate(cfg, dataset, 32, augment=True), 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
