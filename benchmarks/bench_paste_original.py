"""Pasting instance masks predicted at 1024 px into a 6000x4000 original: run-length vs dense.

The input: ``--instances`` Mask R-CNN-like detections on a 6000x4000 photo read at 1024 px (the
network input is 1024x683): a 28x28 probability patch and a box each (boxes of 20-600 px at the
input, probabilities from a noisy disc), as a Mask R-CNN head gives them. Three ways to get one
COCO RLE per instance, each timed (best of ``--repeats``, wall time) and its peak memory measured
in a fresh subprocess of its own: the peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` once the inputs are built) less the resident set at that moment, so
only what the method itself allocates counts:

* **at 1024**: torchvision ``paste_masks_in_image`` at the input size, threshold 0.5, encode with
  pycocotools: what scoring at the input size costs (the masks every adapter returns);
  ``encode_1024`` is the encoding alone, given the bool masks.
* **dense at full size**: the same ``paste_masks_in_image`` at 6000x4000 (``--chunk`` detections
  at a time, its float output is 96 MB a detection), the bool masks of all detections kept, as an
  ``InstancePred`` at that size would hold them, then encoded.
* **zoo paste_rle**: the bool masks at 1024 (from the first way) pasted at 6000x4000 straight
  into RLE (:func:`zoo.data.paste.paste_rles`, bilinear as ``F.interpolate``); and the same from
  the probability maps at 1024 (``paste_rle_prob``), for a model that keeps them.

Agreement: mean and minimum IoU (pycocotools, on the RLEs) between the run-length masks and the
dense ones. They differ because the run-length ways start from the masks at 1024 px, as scoring a
model's output must, and ``paste_masks_in_image`` rounds each box to whole pixels of the size it
pastes at: at 1024 px a pixel is 5.9 photo pixels, which moves a small instance's edges. The
run-length paste itself is checked against the dense upsampling of the same 1024-px maps
(``F.interpolate`` bilinear to 6000x4000, then > 0.5) on the first ``--check`` instances.

    .venv/bin/python benchmarks/bench_paste_original.py --instances 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image

PHOTO = (4000, 6000)  # (H, W) of the original
INPUT = (683, 1024)  # what ResizeSpec(1024, "max_side") makes of it


def detections(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` probability patches float32 ``[n, 1, 28, 28]`` and XYXY boxes ``[n, 4]`` in input pixels."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    radius = (xx**2 + yy**2).sqrt()
    patches = torch.sigmoid(8 * (0.75 - radius + 0.15 * torch.randn(n, 28, 28, generator=gen)))[:, None]
    size = torch.rand(n, 2, generator=gen) * 580 + 20
    corner = torch.rand(n, 2, generator=gen) * (torch.tensor([INPUT[1], INPUT[0]]) - size).clamp(min=1)
    boxes = torch.cat([corner, corner + size], 1)
    return patches, boxes


def encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """pycocotools RLEs of bool masks ``[N, H, W]``, one instance at a time (one copy each)."""
    return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]


def at_input(patches: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    return (paste_masks_in_image(patches, boxes, INPUT)[:, 0] > 0.5).numpy()


def method_at_1024(patches: torch.Tensor, boxes: torch.Tensor, chunk: int) -> list[dict[str, Any]]:
    return encode(at_input(patches, boxes))


def method_dense(patches: torch.Tensor, boxes: torch.Tensor, chunk: int) -> list[dict[str, Any]]:
    scale = torch.tensor([PHOTO[1] / INPUT[1], PHOTO[0] / INPUT[0]] * 2)
    full = np.zeros((len(boxes), *PHOTO), dtype=bool)
    for i in range(0, len(boxes), chunk):
        full[i:i + chunk] = (paste_masks_in_image(patches[i:i + chunk], boxes[i:i + chunk] * scale, PHOTO)[:, 0]
                             > 0.5).numpy()
    return encode(full)


def method_paste_rle(masks: np.ndarray) -> list[dict]:
    from zoo.data.paste import paste_rles

    return paste_rles(masks, *PHOTO)


def memory_kb(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process in kB (Linux ``/proc/self/status``)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(name: str, n: int, repeats: int, chunk: int) -> None:
    """Run one method in this process; print its timing, peak memory and RLEs as JSON."""
    patches, boxes = detections(n)
    if name == "paste_rle":
        masks = at_input(patches, boxes)
        run = lambda: method_paste_rle(masks)  # noqa: E731
    elif name == "encode_1024":
        masks = at_input(patches, boxes)
        run = lambda: encode(masks)  # noqa: E731
    elif name == "paste_rle_prob":
        probs = paste_masks_in_image(patches, boxes, INPUT)[:, 0].numpy()
        run = lambda: method_paste_rle(probs)  # noqa: E731
    else:
        method = {"at_1024": method_at_1024, "dense": method_dense}[name]
        run = lambda: method(patches, boxes, chunk)  # noqa: E731
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak resident set to the current one
    before = memory_kb("VmRSS")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rles = run()
        times.append(time.perf_counter() - start)
    peak = memory_kb("VmHWM")
    for r in rles:
        r["counts"] = r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]
    print(json.dumps({"name": name, "best_s": min(times), "times_s": times, "peak_mb": (peak - before) / 1024,
                      "rles": rles}))


def measure(name: str, n: int, repeats: int, chunk: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--instances", str(n), "--repeats",
                           str(repeats), "--chunk", str(chunk)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def upsampled_reference(n: int, check: int, bool_masks: bool) -> list[dict[str, Any]]:
    """The first ``check`` instances the dense way from the same 1024-px maps: F.interpolate at full
    size (one instance at a time), threshold, encode."""
    patches, boxes = detections(n)
    maps = paste_masks_in_image(patches[:check], boxes[:check], INPUT)[:, 0]
    maps = (maps > 0.5).float() if bool_masks else maps
    out = []
    for m in maps:
        full = torch.nn.functional.interpolate(m[None, None], size=PHOTO, mode="bilinear", align_corners=False)
        out += encode((full[0] > 0.5).numpy())
    return out


def agreement(a: list[dict], b: list[dict]) -> tuple[float, float]:
    ious = [float(mask_utils.iou([x], [y], [0])[0, 0]) for x, y in zip(a, b)]
    return float(np.mean(ious)), float(np.min(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10, help="dense: detections pasted per call")
    parser.add_argument("--check", type=int, default=10, help="instances checked against F.interpolate")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.instances, args.repeats, args.chunk)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.instances} instances, "
          f"input {INPUT[1]}x{INPUT[0]}, photo {PHOTO[1]}x{PHOTO[0]}")
    rows = {}
    for name, repeats in (("at_1024", args.repeats), ("encode_1024", args.repeats), ("paste_rle", args.repeats),
                          ("paste_rle_prob", args.repeats), ("dense", 1)):
        rows[name] = measure(name, args.instances, repeats, args.chunk)
        print(f"{name:10s} best {rows[name]['best_s']:7.3f} s  (runs {', '.join(f'{t:.3f}' for t in rows[name]['times_s'])})"
              f"  peak +{rows[name]['peak_mb']:8.1f} MB")
    for name in ("paste_rle", "paste_rle_prob"):
        mean_iou, min_iou = agreement(rows[name]["rles"], rows["dense"]["rles"])
        print(f"{name} vs dense: mean IoU {mean_iou:.4f}, min IoU {min_iou:.4f}")
        reference = upsampled_reference(args.instances, args.check, bool_masks=name == "paste_rle")
        mean_iou, min_iou = agreement(rows[name]["rles"][: args.check], reference)
        print(f"{name} vs F.interpolate of the same 1024-px maps ({args.check} instances): mean IoU {mean_iou:.6f}, "
              f"min IoU {min_iou:.6f}")
    print(f"peak memory dense / paste_rle: {rows['dense']['peak_mb'] / max(rows['paste_rle']['peak_mb'], 0.1):.0f}x; "
          f"time paste_rle / at_1024: {rows['paste_rle']['best_s'] / rows['at_1024']['best_s']:.2f}x; "
          f"time dense / paste_rle: {rows['dense']['best_s'] / rows['paste_rle']['best_s']:.1f}x")


if __name__ == "__main__":
    main()
