"""The embedded synthetic dataset, written in the iMaterialist 2019 format so that the demo and the
tests go through the real reading path.

Each image is a cluttered background with one to three person-like figures (see
:mod:`zoo.data.synth_figure`) of sizes from small to large. Figures further back are smaller and
drawn first; nearer ones hide them, and an instance loses the pixels that anything drawn later
(except its own parts) covers; instances that vanish are dropped. Image ``i`` depends only on
``(seed, i)``, so a small dataset is a prefix of a larger one.
"""

from __future__ import annotations

import csv
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from zoo.data.rle import encode_kaggle_rle
from zoo.data.synth_figure import Layer, Paint, person_layers, random_color
from zoo.errors import UserError

MIN_PIXELS = 4  # an instance smaller than this after occlusion is dropped (it "vanished")


def label_descriptions() -> dict:
    """The real iMaterialist 2019 label file (46 categories, 92 attributes), shipped with zoo."""
    return json.loads(resources.files("zoo.data").joinpath("label_descriptions.json").read_text())


def texture(paint: Paint, box: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Pixels uint8 ``[y1-y0, x1-x0, 3]`` of ``paint`` over ``box = (x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    c1, c2 = np.array(paint.color, np.float32), np.array(paint.color2, np.float32)
    p = paint.period
    if paint.pattern == "stripes":
        theta = np.deg2rad(paint.angle)
        coord = xx * np.sin(theta) + yy * np.cos(theta)
        pick = (np.floor(coord / p) % 2).astype(bool)
    elif paint.pattern == "checks":
        pick = ((np.floor(xx / p) + np.floor(yy / p)) % 2).astype(bool)
    elif paint.pattern == "dots":
        pick = ((xx % (2 * p) - p) ** 2 + (yy % (2 * p) - p) ** 2) < (0.45 * p) ** 2
    else:
        pick = np.zeros(xx.shape, bool)
    out = np.where(pick[..., None], c2, c1)
    noise_std = 28.0 if paint.pattern == "noise" else 6.0
    out = out + rng.normal(0.0, noise_std, out.shape[:2])[..., None].astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)


def rasterize(shapes: list, size: int) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Union of primitives as bool ``[size, size]`` and its box (None when off the canvas)."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for shape in shapes:
        if shape[0] == "poly":
            draw.polygon(shape[1], fill=255)
        elif shape[0] == "ellipse":
            x0, y0, x1, y1 = shape[1]
            if x1 > x0 and y1 > y0:
                draw.ellipse((x0, y0, x1, y1), fill=255)
        elif shape[0] == "line":
            draw.line(shape[1], fill=255, width=shape[2])
    box = img.getbbox()
    return np.asarray(img) > 0, box


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered scene: a two-colour gradient (wall, floor) and random shapes; uint8 ``[S, S, 3]``."""
    top, bottom = np.array(random_color(rng), np.float32), np.array(random_color(rng), np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).copy()
    horizon = int(size * rng.uniform(0.55, 0.8))
    canvas[horizon:] = canvas[horizon:] * 0.7 + np.array(random_color(rng), np.float32) * 0.3
    img = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 14))):
        x, y = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.03, 0.35, 2) * size
        color = random_color(rng)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.rectangle((x, y, x + w, y + h), fill=color)
        elif kind == 1:
            draw.ellipse((x, y, x + w, y + h), fill=color)
        elif kind == 2:
            draw.line((x, y, x + w, y + h * rng.choice([-1, 1])), fill=color, width=int(rng.integers(1, 5)))
        else:
            pts = [tuple(p) for p in (rng.uniform(0, 1, (int(rng.integers(3, 6)), 2)) * (w, h) + (x, y))]
            draw.polygon(pts, fill=color)
    out = np.asarray(img).astype(np.float32) + rng.normal(0, 5, (size, size, 1)).astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)


def paint_layers(canvas: np.ndarray, layers: list[Layer], rng: np.random.Generator) -> list[Layer]:
    """Draw ``layers`` in order onto ``canvas`` (in place); return the annotated ones with
    ``mask`` set to their visible pixels."""
    size = canvas.shape[0]
    annotated: list[Layer] = []
    for layer in layers:
        shape, box = rasterize(layer.shapes, size)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        region = shape[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1][region] = texture(layer.paint, box, rng)[region]
        ancestors = layer.ancestors()
        for earlier in annotated:
            if id(earlier) not in ancestors:  # a part does not hide its own garment
                earlier.mask &= ~shape
        if layer.category is not None:
            layer.mask = shape.copy()
            annotated.append(layer)
    kept: list[Layer] = []
    for layer in annotated:
        # A garment hidden down to exactly its part would repeat the part's mask: keep one of them.
        if int(layer.mask.sum()) >= MIN_PIXELS and not any(np.array_equal(layer.mask, k.mask) for k in kept):
            kept.append(layer)
    return kept


def render_scene(rng: np.random.Generator, size: int, max_people: int = 3) -> tuple[np.ndarray, list[Layer]]:
    """One image uint8 ``[size, size, 3]`` and its visible annotated layers (1 to ``max_people`` figures)."""
    canvas = background(rng, size)
    n_people = min(max_people, int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2])))
    heights = np.sort(rng.uniform(0.35, 1.15, n_people)) * size  # far (small) first
    layers: list[Layer] = []
    for u in heights:
        cx = rng.uniform(0.12, 0.88) * size
        feet = rng.uniform(0.8, 1.05) * size + (u - 0.35 * size) * 0.15
        layers += person_layers(rng, cx, feet - u, u)
    return canvas, paint_layers(canvas, layers, rng)


def class_id(layer: Layer) -> str:
    return "_".join(str(v) for v in (layer.category, *layer.attributes))


def write_synthetic(out: str | Path, *, n: int = 300, size: int = 256, seed: int = 0, max_people: int = 3) -> Path:
    """Write ``n`` synthetic ``size x size`` images in the iMaterialist 2019 layout under ``out``.

    ``max_people`` caps the figures per image (default 3): with 1, no two figures overlap, so
    garments of one category never touch across people.

    Files: ``train.csv`` (1-based column-major RLE, ``ClassId`` with attribute suffixes),
    ``label_descriptions.json`` (the real 46 categories, 92 attributes), ``train/<ImageId>.jpg``.
    Returns ``out``.
    """
    if n < 1 or size < 32:
        raise UserError(f"synthetic dataset: need n >= 1 and size >= 32 (got n={n}, size={size})")
    if not 1 <= max_people <= 3:
        raise UserError(f"synthetic dataset: max_people must be 1, 2 or 3 (got {max_people})")
    out = Path(out)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "label_descriptions.json").write_text(json.dumps(label_descriptions(), indent=2))
    started = time.perf_counter()
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        canvas, layers = render_scene(rng, size, max_people)
        image_id = f"synth{seed:04d}{i:06d}.jpg"
        Image.fromarray(canvas).save(out / "train" / image_id, quality=90)
        rows += [(image_id, encode_kaggle_rle(a.mask), size, size, class_id(a)) for a in layers]
    with open(out / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])
        writer.writerows(rows)
    (out / "synth.json").write_text(json.dumps({"n": n, "size": size, "seed": seed, "instances": len(rows),
                                                "seconds": round(time.perf_counter() - started, 2)}))
    return out
