"""The embedded synthetic dataset: format, determinism, and the scene properties it promises."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from zoo.config import DataConfig
from zoo.data.dataset import open_dataset
from zoo.data.rle import decode_runs_full, parse_kaggle_rle, run_problems
from zoo.data.synth import write_synthetic
from zoo.data.synth_figure import DRESS, NECKLINE, SHIRT, SLEEVE, TSHIRT


def rows_by_image(folder: Path) -> dict[str, list[tuple[np.ndarray, int, list[int]]]]:
    frame = pd.read_csv(folder / "train.csv", dtype=str)
    out: dict[str, list] = {}
    for name, rle, h, w, cid in frame.itertuples(index=False, name=None):
        cat, *attrs = (int(v) for v in cid.split("_"))
        starts, lengths = parse_kaggle_rle(rle)
        assert run_problems(starts, lengths, int(h), int(w)) == []
        out.setdefault(name, []).append((decode_runs_full(starts, lengths, int(h), int(w)).astype(bool), cat, attrs))
    return out


def test_layout_is_imaterialist_2019(synth_dir: Path) -> None:
    labels = json.loads((synth_dir / "label_descriptions.json").read_text())
    assert len(labels["categories"]) == 46 and len(labels["attributes"]) == 92
    assert labels["categories"][23]["name"] == "shoe"
    frame = pd.read_csv(synth_dir / "train.csv", dtype=str)
    assert list(frame.columns) == ["ImageId", "EncodedPixels", "Height", "Width", "ClassId"]
    assert sorted(p.name for p in (synth_dir / "train").iterdir()) == sorted(frame.ImageId.unique())
    assert frame.ClassId.str.contains("_").any()  # attributes on some instances


def test_deterministic_by_seed_and_prefix_stable(synth_dir: Path, tmp_path: Path) -> None:
    again = write_synthetic(tmp_path / "again", n=5, size=128, seed=0)
    other = write_synthetic(tmp_path / "other", n=5, size=128, seed=1)
    first_five = pd.read_csv(synth_dir / "train.csv", dtype=str)
    first_five = first_five[first_five.ImageId.isin(sorted(first_five.ImageId.unique())[:5])]
    assert pd.read_csv(again / "train.csv", dtype=str).equals(first_five.reset_index(drop=True))
    name = sorted((again / "train").iterdir())[0].name
    assert (again / "train" / name).read_bytes() == (synth_dir / "train" / name).read_bytes()
    assert not pd.read_csv(other / "train.csv", dtype=str).EncodedPixels.equals(
        pd.read_csv(again / "train.csv", dtype=str).EncodedPixels)


def test_scenes_have_garments_parts_occlusion_and_varied_sizes(synth_dir: Path) -> None:
    images = rows_by_image(synth_dir)
    categories = Counter(cat for rows in images.values() for _, cat, _ in rows)
    assert {TSHIRT, SHIRT, DRESS, 6, 8, 23, 24, 14, 13, SLEEVE, NECKLINE} <= set(categories)
    assert len(categories) <= 13  # a small vocabulary a CPU model can learn
    part_inside, areas, overlaps = [], [], 0
    for rows in images.values():
        garments = [(m, c) for m, c, _ in rows if c in (TSHIRT, SHIRT, DRESS)]
        for mask, cat, _ in rows:
            areas.append(mask.mean())
            if cat in (SLEEVE, NECKLINE) and garments:
                part_inside.append(max((mask & g).sum() for g, _ in garments) / mask.sum())
        whole = [m for m, c, _ in rows if c not in (SLEEVE, NECKLINE, 32)]
        overlaps += sum(int((a & b).sum()) for i, a in enumerate(whole) for b in whole[i + 1:])
    assert np.median(part_inside) > 0.6  # parts overlap their garment
    assert overlaps == 0  # garments and accessories show their visible pixels only (occlusion)
    assert min(areas) < 0.002 and max(areas) > 0.05  # small to large instances


def test_synthetic_images_are_not_blank_and_dataset_reads_them(synth_dir: Path) -> None:
    ds = open_dataset(DataConfig(source=str(synth_dir), max_size=64, limit=3))
    for i in range(3):
        image, target = ds[i]
        assert image.shape == (3, 64, 64) and image.float().std() > 10 and len(target["labels"]) > 0


def test_max_people_caps_the_figures_per_image(synth_dir: Path, tmp_path: Path) -> None:
    import pytest

    from zoo.errors import UserError

    capped = rows_by_image(write_synthetic(tmp_path / "one", n=12, size=128, seed=0, max_people=1))
    default = rows_by_image(synth_dir)
    # A figure wears one top garment (t-shirt, shirt or dress), visible or not: more than one
    # top per image means more than one figure.
    tops = {name: sum(c in (TSHIRT, SHIRT, DRESS) for _, c, _ in rows) for name, rows in default.items()}
    assert max(tops.values()) >= 2, "the default set has images with several figures"
    assert all(sum(c in (TSHIRT, SHIRT, DRESS) for _, c, _ in rows) <= 1 for rows in capped.values())
    with pytest.raises(UserError, match="max_people"):
        write_synthetic(tmp_path / "bad", n=1, size=64, max_people=0)


def test_garments_carry_the_attributes_their_drawing_shows(synth_dir: Path) -> None:
    """Every garment is annotated with what is drawn: one pattern attribute per visible pattern
    (and the pattern really shows in its pixels), one length per skirt and dress, one cut per
    pair of pants; none is dropped at random."""
    from zoo.data.synth import render_scene
    from zoo.data.synth_figure import (A_LINE, BELL_BOTTOM, LENGTH_ATTRIBUTE, PANTS, PATTERN_ATTRIBUTE, SKIRT,
                                       STRAIGHT)

    spread: dict[str, list[float]] = {}
    garments = 0
    for i in range(40):
        canvas, layers = render_scene(np.random.default_rng([0, i]), 128)
        for layer in layers:
            if layer.category not in (SHIRT, TSHIRT, PANTS, SKIRT, DRESS):
                continue
            garments += 1
            attrs = set(layer.attributes)
            patterns = attrs & set(PATTERN_ATTRIBUTE.values())
            expected = {PATTERN_ATTRIBUTE[layer.paint.pattern]} if layer.paint.pattern in PATTERN_ATTRIBUTE else set()
            assert patterns == expected, (layer.category, layer.paint.pattern, attrs)
            if layer.category in (SKIRT, DRESS):
                assert len(attrs & set(LENGTH_ATTRIBUTE.values())) == 1
            if layer.category == SKIRT:
                assert A_LINE in attrs
            if layer.category == PANTS:
                assert len(attrs & {STRAIGHT, BELL_BOTTOM}) == 1
            if layer.mask.sum() >= 100 and layer.paint.pattern in ("plain", "stripes", "checks"):
                pixels = canvas[layer.mask].astype(np.float32)
                spread.setdefault(layer.paint.pattern, []).append(float(pixels.std(axis=0).mean()))
    assert garments > 40
    # A two-colour pattern spreads the garment's pixels far more than a plain fabric's noise.
    assert min(np.median(spread["stripes"]), np.median(spread["checks"])) > 3 * np.median(spread["plain"])
    # In the written CSV, every top, skirt, dress and pair of pants has attributes.
    for rows in rows_by_image(synth_dir).values():
        assert all(attrs for _, cat, attrs in rows if cat in (SHIRT, TSHIRT, PANTS, SKIRT, DRESS))


def test_data_stats_counts_attributes_per_category(synth_dir: Path, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from zoo.data.sources import read_source
    from zoo.data.stats import compute_stats, dataset_stats
    from zoo.data.synth_figure import A_LINE, SKIRT

    rows = [r for rs in rows_by_image(synth_dir).values() for r in rs]
    stats = compute_stats(read_source(synth_dir))
    skirts = [attrs for _, cat, attrs in rows if cat == SKIRT]
    assert stats["attributed_per_category"][SKIRT] == len(skirts) > 0
    expected = Counter(a for attrs in skirts for a in attrs)
    assert stats["attributes_per_category"][SKIRT] == dict(expected)
    assert stats["attributes_per_category"][SKIRT][A_LINE] == len(skirts)  # every skirt is a-line
    assert SLEEVE not in stats["attributes_per_category"]  # parts carry none
    buffer = io.StringIO()
    dataset_stats(synth_dir, out_dir=tmp_path, console=Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "attributes per category" in text and "a-line 100%" in text
    table = pd.read_csv(tmp_path / "attributes_per_category.csv")
    skirt_rows = table[table.category_id == SKIRT].set_index("attribute_id")
    assert skirt_rows.instances.to_dict() == dict(expected) and skirt_rows.loc[A_LINE, "share"] == 1.0
