"""``zoo data stats``: what a dataset holds, from its annotation file only (no mask is decoded)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from zoo.data.sources import Source, read_source


def compute_stats(source: Source) -> dict[str, Any]:
    """Counts of ``source``: images, annotations, per category, masks per image, image sizes."""
    per_image = np.array([len(r.instances) for r in source.records], dtype=np.int64)
    instances = Counter(inst.category_id for r in source.records for inst in r.instances)
    images_with = Counter(cid for r in source.records for cid in {inst.category_id for inst in r.instances})
    with_attributes = sum(bool(inst.attributes) for r in source.records for inst in r.instances)
    attributes: dict[int, Counter] = {}
    for r in source.records:
        for inst in r.instances:
            if inst.attributes:
                attributes.setdefault(inst.category_id, Counter()).update(int(a) for a in inst.attributes)
    sizes = np.array([(r.height, r.width) for r in source.records], dtype=np.int64).reshape(-1, 2)
    known = {c.id for c in source.categories}
    return {
        "images": len(source.records),
        "annotations": int(per_image.sum()),
        "images_without_annotations": int((per_image == 0).sum()),
        "masks_per_image_mean": float(per_image.mean()) if per_image.size else 0.0,
        "masks_per_image_max": int(per_image.max()) if per_image.size else 0,
        "with_attributes": with_attributes,
        # category id -> {attribute id: instances of the category that have it}, most frequent first
        "attributes_per_category": {cid: dict(counts.most_common()) for cid, counts in sorted(attributes.items())},
        "attributed_per_category": Counter(inst.category_id for r in source.records for inst in r.instances
                                           if inst.attributes),
        "per_category": {c.id: instances.get(c.id, 0) for c in source.categories},
        "images_per_category": {c.id: images_with.get(c.id, 0) for c in source.categories},
        "unknown_categories": {k: v for k, v in instances.items() if k not in known},
        "sizes": sizes,
        "masks_per_image": per_image,
    }


def _summary_table(stats: dict[str, Any], source: Source) -> Table:
    table = Table(title=f"{source.kind} dataset {source.path}", show_header=False)
    sizes = stats["sizes"]
    used = sum(1 for v in stats["per_category"].values() if v)
    rows = [
        ("images", stats["images"]),
        ("annotations (masks)", stats["annotations"]),
        ("categories used / defined", f"{used} / {len(source.categories)}"),
        ("images without annotations", stats["images_without_annotations"]),
        ("masks per image: mean / max", f"{stats['masks_per_image_mean']:.2f} / {stats['masks_per_image_max']}"),
        ("masks with attributes", f"{stats['with_attributes']} "
                                  f"({100 * stats['with_attributes'] / max(1, stats['annotations']):.1f}%)"),
    ]
    if len(sizes):
        for name, col in (("height", 0), ("width", 1)):
            v = sizes[:, col]
            rows.append((f"image {name}: min / median / max", f"{v.min()} / {int(np.median(v))} / {v.max()}"))
    if stats["unknown_categories"]:
        rows.append(("[red]unknown category ids", str(stats["unknown_categories"])))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _category_table(stats: dict[str, Any], source: Source) -> Table:
    table = Table(title="instances per category")
    for col, justify in (("label", "right"), ("id", "right"), ("name", "left"), ("supercategory", "left"),
                         ("instances", "right"), ("images", "right"), ("share", "right")):
        table.add_column(col, justify=justify)
    total = max(1, stats["annotations"])
    for c in sorted(source.categories, key=lambda c: -stats["per_category"][c.id]):
        n = stats["per_category"][c.id]
        table.add_row(str(c.label), str(c.id), c.name, c.supercategory, str(n),
                      str(stats["images_per_category"][c.id]), f"{100 * n / total:.1f}%")
    return table


def _attribute_table(stats: dict[str, Any], source: Source, top: int = 8) -> Table:
    """Per category that carries attributes: its attributed instances and its ``top`` most
    frequent attributes with their share of those instances."""
    table = Table(title="attributes per category (share of the category's attributed instances)")
    for col, justify in (("id", "right"), ("name", "left"), ("with attributes", "right"),
                         ("distinct", "right"), (f"most frequent (top {top})", "left")):
        table.add_column(col, justify=justify)
    names = {c.id: c.name for c in source.categories}
    per_cat = stats["attributes_per_category"]
    for cid in sorted(per_cat, key=lambda c: -stats["attributed_per_category"][c]):
        n = stats["attributed_per_category"][cid]
        freq = ", ".join(f"{source.attributes.get(a, a)} {100 * k / n:.0f}%" for a, k in list(per_cat[cid].items())[:top])
        table.add_row(str(cid), names.get(cid, "?"), str(n), str(len(per_cat[cid])), freq)
    return table


def write_attribute_csv(stats: dict[str, Any], source: Source, path: Path) -> Path:
    """Every (category, attribute) pair with its instances and share of the category's attributed ones."""
    import csv

    names = {c.id: c.name for c in source.categories}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["category_id", "category", "attribute_id", "attribute", "instances", "share"])
        for cid, counts in stats["attributes_per_category"].items():
            n = stats["attributed_per_category"][cid]
            for aid, k in counts.items():
                writer.writerow([cid, names.get(cid, ""), aid, source.attributes.get(aid, ""), k, f"{k / n:.4f}"])
    return path


def write_charts(stats: dict[str, Any], source: Source, out_dir: Path) -> list[Path]:
    """``category_counts.png``, ``image_sizes.png`` and ``masks_per_image.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cats = sorted(source.categories, key=lambda c: stats["per_category"][c.id])
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(cats))))
    ax.barh([f"{c.id} {c.name[:28]}" for c in cats], [stats["per_category"][c.id] for c in cats], color="#4477aa")
    ax.set_xlabel("instances")
    ax.set_title(f"instances per category ({stats['annotations']} in {stats['images']} images)")
    fig.tight_layout()
    written.append(out_dir / "category_counts.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = stats["sizes"]
    left.scatter(sizes[:, 1], sizes[:, 0], s=6, alpha=0.5)
    left.set_xlabel("width (px)")
    left.set_ylabel("height (px)")
    left.set_title("image sizes")
    right.hist(sizes.max(axis=1) if len(sizes) else [], bins=30, color="#66aa55")
    right.set_xlabel("longest side (px)")
    right.set_ylabel("images")
    fig.tight_layout()
    written.append(out_dir / "image_sizes.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    per_image = stats["masks_per_image"]
    ax.hist(per_image, bins=np.arange(per_image.max() + 2) - 0.5 if per_image.size else 1, color="#cc6677")
    ax.set_xlabel("masks per image")
    ax.set_ylabel("images")
    fig.tight_layout()
    written.append(out_dir / "masks_per_image.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def dataset_stats(data: str | Path, *, out_dir: str | Path | None = None, images: str | None = None,
                  console: Console | None = None) -> dict[str, Any]:
    """Print the summary, per-category and attribute tables of ``data``; write PNG charts (and
    ``attributes_per_category.csv``) when ``out_dir``."""
    console = console or Console()
    source = read_source(data, images=images)
    stats = compute_stats(source)
    console.print(_summary_table(stats, source))
    console.print(_category_table(stats, source))
    if stats["attributes_per_category"]:
        console.print(_attribute_table(stats, source))
    if out_dir is not None:
        written = write_charts(stats, source, Path(out_dir))
        if stats["attributes_per_category"]:
            written.append(write_attribute_csv(stats, source, Path(out_dir) / "attributes_per_category.csv"))
        for path in written:
            console.print(f"wrote {path}")
    return stats
