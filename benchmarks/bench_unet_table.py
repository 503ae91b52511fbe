"""The source study's UNet table, filled: scratch vs pretrained encoder.

The study trained a UNet from scratch and with a pretrained ResNet50 encoder and left its table
(epochs, final loss, train and validation accuracy) empty. This script trains both variants with
zoo's harness on the same synthetic split and fills the table, adding mIoU and mask AP from the
shared evaluator (UNet instances come from connected components of its multi-label maps).

No weights can be downloaded here, so the "pretrained" encoder is made locally and reproducibly:
a torchvision ResNet is trained as a multi-label garment classifier (which of the 46 categories
appear) on a *disjoint* synthetic set (seed 1), and its state dict is saved and loaded through
``pretrained:``. This is weaker than ImageNet pre-training; with a real ImageNet file, pass it with
``--encoder-weights PATH`` instead.

    .venv/bin/python benchmarks/bench_unet_table.py --out /tmp/unet_table

Accuracy is pixel accuracy as zoo defines it (the predicted category set of a pixel equals the
true set, background included), on the training and validation images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo.adapters  # noqa: E402,F401  (registers the adapters)
from zoo.config import DataConfig  # noqa: E402
from zoo.data.dataset import open_dataset  # noqa: E402
from zoo.data.synth import write_synthetic  # noqa: E402
from zoo.metrics.evaluate import evaluate_adapter  # noqa: E402
from zoo.train.api import load_train_config, train  # noqa: E402
from zoo.train.run import load_run  # noqa: E402


def pretrain_encoder(out: Path, *, arch: str, n: int, size: int, steps: int, batch_size: int,
                     lr: float, seed: int = 1) -> Path:
    """Train torchvision ``arch`` as a multi-label category classifier on synthetic images of ``seed``.

    Returns the saved state dict (torchvision key names; the classifier ``fc`` is left out).
    """
    data = write_synthetic(out / f"pretrain-synth-seed{seed}", n=n, size=size, seed=seed)
    ds = open_dataset(DataConfig(source=str(data), max_size=size))
    c = len(ds.categories)
    images = torch.stack([im.as_subclass(torch.Tensor).float() / 255 for im, _ in (ds[i] for i in range(n))])
    present = torch.zeros((n, c))
    for i in range(n):
        present[i, ds[i][1]["labels"] - 1] = 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=c)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        x = images[idx]
        if step % 2:  # horizontal flips: cheap, keep the classifier from memorising layouts
            x = x.flip(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net((x - mean) / std), present[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 25 == 0:
            print(f"pretrain step {step + 1}/{steps} loss {float(loss):.4f}", flush=True)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    path = out / f"{arch}_synth_multilabel.pth"
    torch.save(state, path)
    return path


def train_and_score(name: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Train the UNet CPU preset with ``overrides`` into ``out/name``; score train and val splits."""
    cfg = load_train_config("unet", overrides=overrides)
    start = time.perf_counter()
    run = load_run(train(cfg, out / name), which="last")
    seconds = time.perf_counter() - start
    summary = json.loads((run.path / "summary.json").read_text())
    train_m = evaluate_adapter(run.adapter, run.dataset, run.split["train"], batch_size=4)
    val_m = evaluate_adapter(run.adapter, run.dataset, run.split["val"], batch_size=4)
    return {"variant": name, "epochs": summary["epochs"], "steps": summary["global_step"],
            "final_loss": summary["final_loss"], "train_s": round(seconds, 1),
            "pixel_acc_train": train_m["semantic"]["pixel_acc"], "pixel_acc_val": val_m["semantic"]["pixel_acc"],
            "mIoU_train": train_m["semantic"]["mIoU"], "mIoU_val": val_m["semantic"]["mIoU"],
            "AP_train": train_m["segm"]["AP"], "AP50_train": train_m["segm"]["AP50"],
            "AP_val": val_m["segm"]["AP"], "AP50_val": val_m["segm"]["AP50"],
            "n_train": len(run.split["train"]), "n_val": len(run.split["val"]), "config": dataclasses.asdict(cfg)}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(r["variant"] for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    fields = [("Epochs (optimizer steps)", lambda r: f"{r['epochs']} ({r['steps']})"),
              ("Final loss (last step)", lambda r: f"{r['final_loss']:.4f}"),
              ("Final accuracy (train)", lambda r: f"{100 * r['pixel_acc_train']:.1f} %"),
              ("Final accuracy (validation)", lambda r: f"{100 * r['pixel_acc_val']:.1f} %"),
              ("mIoU (train / validation)", lambda r: f"{r['mIoU_train']:.3f} / {r['mIoU_val']:.3f}"),
              ("mask AP50 (train / validation)", lambda r: f"{r['AP50_train']:.3f} / {r['AP50_val']:.3f}"),
              ("mask AP (train / validation)", lambda r: f"{r['AP_train']:.3f} / {r['AP_val']:.3f}"),
              ("training time (s)", lambda r: f"{r['train_s']:.0f}")]
    lines += [f"| {label} | " + " | ".join(fn(r) for r in rows) + " |" for label, fn in fields]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for data, weights and runs")
    parser.add_argument("--images", type=int, default=60, help="synthetic images (80/20 train/val split)")
    parser.add_argument("--size", type=int, default=128, help="synthetic image side in pixels")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the CPU preset's)")
    parser.add_argument("--encoder-weights", type=Path, default=None,
                        help="an existing encoder state dict (skips the synthetic pre-training)")
    parser.add_argument("--pretrain-images", type=int, default=200)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--pretrain-lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override key=value for both runs (repeatable)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = write_synthetic(args.out / "synth", n=args.images, size=args.size, seed=0)
    weights = args.encoder_weights
    if weights is None:
        start = time.perf_counter()
        weights = pretrain_encoder(args.out, arch="resnet18", n=args.pretrain_images, size=args.size,
                                   steps=args.pretrain_steps, batch_size=args.pretrain_batch, lr=args.pretrain_lr)
        print(f"pre-training took {time.perf_counter() - start:.0f} s -> {weights}")
    common = [f"data.source={json.dumps(str(data))}", f"data.max_size={args.size}", "data.limit=null"]
    if args.epochs is not None:
        common.append(f"stages=[{{name: all, epochs: {args.epochs}, lr: {_preset_lr()}, layers: all}}]")
    if args.threads:
        common.append(f"threads={args.threads}")
    common += args.overrides
    rows = [train_and_score("scratch", args.out, common),
            train_and_score("pretrained encoder", args.out, common + [f"pretrained={json.dumps(str(weights))}"])]
    table = markdown(rows)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "table.json").write_text(json.dumps({"encoder_weights": str(weights), "rows": rows}, indent=1))


def _preset_lr() -> float:
    return load_train_config("unet").stages[0].lr


if __name__ == "__main__":
    main()
