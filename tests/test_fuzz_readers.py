"""Random malformed input into the COCO and CSV readers and the RLE and polygon decoders: the only
exception allowed is zoo's own (:class:`zoo.errors.UserError`), and nothing may crash the process
(a NaN polygon coordinate used to crash pycocotools' rasteriser).

Inputs are valid files with a few random mutations (a value replaced by junk, a key dropped, a
string edited), so most reach the decoders rather than stopping at the first check.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.data.decode import decode_masks, decode_segmentation
from zoo.data.rle import coco_rle_runs, encode_kaggle_rle, mask_to_coco_rle, parse_kaggle_rle
from zoo.data.sources import read_coco, read_imaterialist_csv
from zoo.errors import UserError

# Derandomised: the same examples on every run and machine, so a failure reproduces.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)

# What a hand-edited or badly exported file may hold where something else is expected.
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.sampled_from([math.nan, math.inf, -math.inf, 1e30, 10**400, "+-5", "²"]),
                 st.floats(-5, 50), st.text(max_size=4), st.just([]), st.just({}), st.lists(st.integers(-2, 9), max_size=3))
SMALL = st.integers(1, 10)


def masks(h: int, w: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.booleans(), min_size=h * w, max_size=h * w).map(lambda v: np.array(v, bool).reshape(h, w))


def segmentations(h: int, w: int) -> st.SearchStrategy[Any]:
    """A valid polygon list, compressed RLE or uncompressed RLE on an ``h x w`` image."""
    point = st.tuples(st.floats(0, w), st.floats(0, h))
    polygon = st.lists(point, min_size=3, max_size=5).map(lambda pts: [c for p in pts for c in p])

    def plain(mask: np.ndarray) -> dict:
        flat = np.concatenate(([0], mask.T.ravel().astype(int), [2]))
        edges = np.flatnonzero(np.diff(flat) != 0)
        counts = np.diff(np.concatenate(([0], edges[1:] if mask.T.ravel()[0] == 0 else edges, [h * w]))).tolist()
        return {"size": [h, w], "counts": ([0] if mask.T.ravel()[0] else []) + [c for c in counts if c]}

    return st.one_of(st.lists(polygon, min_size=1, max_size=2), masks(h, w).map(mask_to_coco_rle), masks(h, w).map(plain))


def _slots(node: Any, out: list) -> list:
    """Every (container, key) of a JSON-like tree, where a mutation may land."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        out.append((node, key))
        _slots(value, out)
    return out


def mutate(draw: Any, tree: Any, n_max: int = 3) -> Any:
    """Up to ``n_max`` random changes: a value replaced by junk, a key dropped, a string edited."""
    for _ in range(draw(st.integers(0, n_max))):
        slots = _slots(tree, [])
        if not slots:
            break
        parent, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["junk", "junk", "drop", "edit"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[key]
        elif action == "edit" and isinstance(parent[key], str) and parent[key]:
            pos = draw(st.integers(0, len(parent[key]) - 1))
            parent[key] = parent[key][:pos] + draw(st.text(max_size=2)) + parent[key][pos + 1:]
        else:
            parent[key] = draw(JUNK)
    return tree


@st.composite
def coco_docs(draw: Any) -> Any:
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "height": draw(SMALL), "width": draw(SMALL)}
              for i in range(draw(st.integers(1, 3)))]
    annotations = []
    for k in range(draw(st.integers(0, 4))):
        image = draw(st.sampled_from(images))
        annotations.append({"id": k + 1, "image_id": image["id"], "category_id": draw(st.sampled_from([1, 2])),
                            "iscrowd": draw(st.sampled_from([0, 0, 1])), "attribute_ids": [10],
                            "segmentation": draw(segmentations(image["height"], image["width"]))})
    doc = {"images": images, "annotations": annotations, "attributes": [{"id": 10, "name": "x"}],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return mutate(draw, doc)


def decode_every_record(source: Any) -> int:
    """Decode each record's masks at its own size and at half of it (no photo file is read);
    the number of records decoded."""
    decoded = 0
    for record in source.records:
        hw = (record.height, record.width)
        if hw[0] * hw[1] > 4096:
            continue
        for out in (hw, (max(1, hw[0] // 2), max(1, hw[1] // 2))):
            try:
                masks = decode_masks(record, *out, hw, rle_base=source.rle_base)
            except UserError:
                continue
            assert masks.shape == (len(record.instances), *out)
            decoded += 1
    return decoded


@FUZZ
@given(doc=coco_docs())
def test_coco_reader_and_decoders_refuse_or_read(doc: Any, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.json"
    path.write_text(json.dumps(doc))
    try:
        source = read_coco(path)
    except UserError:
        return
    decode_every_record(source)


@st.composite
def csv_rows(draw: Any) -> list[list[str]]:
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        name, h, w = draw(st.sampled_from([("a.jpg", 6, 8), ("b.jpg", 9, 4)]))
        rle = encode_kaggle_rle(draw(masks(h, w))) or "1 1"
        rows.append([name, rle, str(h), str(w), draw(st.sampled_from(["1", "2", "1_10", "2_10"]))])
    for _ in range(draw(st.integers(0, 3)) if rows else 0):  # a cell replaced, edited or cut; a row repeated
        row = draw(st.sampled_from(rows))
        col = draw(st.integers(0, 4))
        if col >= len(row):  # a row cut short earlier
            continue
        action = draw(st.sampled_from(["junk", "edit", "cut", "repeat"]))
        if action == "junk":
            row[col] = draw(st.one_of(st.text(max_size=6), JUNK.map(str)))
        elif action == "edit" and row[col]:
            pos = draw(st.integers(0, len(row[col]) - 1))
            row[col] = row[col][:pos] + draw(st.text(alphabet="0123456789 -_x", max_size=2)) + row[col][pos + 1:]
        elif action == "cut":
            del row[col:]
        else:
            rows.append(list(row))
    return rows


@FUZZ
@given(rows=csv_rows(), base=st.sampled_from([0, 1]))
def test_csv_reader_and_decoders_refuse_or_read(rows: list, base: int, tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "labels.json").write_text(json.dumps({"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                                                    "attributes": [{"id": 10, "name": "x"}]}))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])
    writer.writerows(rows)
    (folder / "train.csv").write_text(buf.getvalue())
    try:
        source = read_imaterialist_csv(folder / "train.csv", folder / "labels.json", folder, rle_base=base)
    except UserError:
        return
    decode_every_record(source)


@FUZZ
@given(text=st.one_of(st.lists(st.integers(-3, 10**20), max_size=8).map(lambda v: " ".join(map(str, v))),
                      st.text(alphabet="0123456789 -+.xe\t\n", max_size=16), st.text(max_size=8)),
       base=st.sampled_from([0, 1]))
def test_kaggle_rle_parser_refuses_or_parses(text: str, base: int) -> None:
    try:
        starts, lengths = parse_kaggle_rle(text, base=base)
    except UserError:
        return
    assert starts.dtype == lengths.dtype == np.int64 and starts.shape == lengths.shape


@st.composite
def mutated_segmentations(draw: Any) -> tuple[Any, tuple[int, int]]:
    h, w = draw(SMALL), draw(SMALL)
    return mutate(draw, [draw(segmentations(h, w))], 2)[0], (h, w)


@FUZZ
@given(case=mutated_segmentations(), out=st.tuples(SMALL, SMALL))
def test_segmentation_decoder_refuses_or_decodes(case: tuple, out: tuple[int, int]) -> None:
    seg, grid = case
    try:
        mask = decode_segmentation(seg, grid, out, rle_base=1, where="fuzz", grids={})
    except UserError:
        return
    assert mask.shape == out and mask.dtype == np.uint8


@FUZZ
@given(case=mutated_segmentations())
def test_coco_rle_runs_refuse_or_cover_the_image(case: tuple) -> None:
    seg, _ = case
    if not isinstance(seg, dict):
        return
    try:
        (starts, lengths), height, width = coco_rle_runs(seg)
    except UserError:
        return
    assert (starts >= 0).all() and (lengths >= 0).all() and (starts + lengths <= height * width).all()
