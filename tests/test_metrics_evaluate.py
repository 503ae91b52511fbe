"""evaluate_adapter end to end: a colour-segmenting adapter with known answers (scored at the input
size: the painted set has no source file), the files it writes scored again by plain pycocotools,
every registered adapter on real synthetic JPEGs (at the original resolution)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage
from torch import Tensor, nn
from torchvision import tv_tensors

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.adapter import Adapter, available_adapters
from zoo.build import build_adapter
from zoo.config import DataConfig
from zoo.metrics.evaluate import evaluate_adapter
from zoo.types import Category, InstancePred


def colour(label: int) -> tuple[int, int, int]:
    return (40 * label, 255 - 30 * label, 100 + 20 * label)


class PaintedSet(torch.utils.data.Dataset):
    """Images of non-touching rectangles on black, each painted in its category's colour."""

    categories = [Category(id=10 + k, label=k, name=f"garment{k}") for k in (1, 2, 3)]
    SCENES = [[(1, (2, 2, 20, 30)), (2, (30, 5, 60, 25)), (1, (40, 40, 60, 60))],
              [(3, (10, 10, 50, 50))],
              []]

    def __init__(self) -> None:
        self.image_ids = [f"img{i}.jpg" for i in range(len(self.SCENES))]

    def __len__(self) -> int:
        return len(self.SCENES)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, dict]:
        image = torch.zeros((3, 64, 64), dtype=torch.uint8)
        masks = torch.zeros((len(self.SCENES[i]), 64, 64), dtype=torch.uint8)
        for m, (lab, (x0, y0, x1, y1)) in zip(masks, self.SCENES[i]):
            image[:, y0:y1, x0:x1] = torch.tensor(colour(lab), dtype=torch.uint8)[:, None, None]
            m[y0:y1, x0:x1] = 1
        boxes = torch.tensor([b for _, b in self.SCENES[i]], dtype=torch.float32).reshape(-1, 4)
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(64, 64)),
                  "labels": torch.tensor([lab for lab, _ in self.SCENES[i]], dtype=torch.int64),
                  "masks": tv_tensors.Mask(masks), "attributes": [[] for _ in self.SCENES[i]], "image_id": i}
        return tv_tensors.Image(image), target


class ColourSegmenter(Adapter):
    """Finds each category's colour and splits it into connected components: exact on PaintedSet."""

    config_cls = dict

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__({}, num_classes)
        self.head = nn.Parameter(torch.zeros(1))

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        return {"zero": self.head.sum() * 0}

    def run_model(self, images: list[Tensor]) -> list[Tensor]:
        return [torch.round(im * 255).to(torch.int64) for im in images]

    def postprocess(self, raw: list[Tensor], sizes: list[tuple[int, int]]) -> list[InstancePred]:
        preds = []
        for pixels, (h, w) in zip(raw, sizes):
            masks, labels = [], []
            for lab in range(1, self.num_classes + 1):
                hit = (pixels == torch.tensor(colour(lab))[:, None, None]).all(0).numpy()
                comps, n = ndimage.label(hit)
                masks += [torch.from_numpy(comps == k) for k in range(1, n + 1)]
                labels += [lab] * n
            if not masks:
                preds.append(InstancePred.empty(h, w))
                continue
            m = torch.stack(masks)
            ys, xs = m.any(2), m.any(1)
            boxes = torch.stack([xs.float().argmax(1), ys.float().argmax(1),
                                 w - xs.flip(1).float().argmax(1), h - ys.flip(1).float().argmax(1)], 1).float()
            preds.append(InstancePred(boxes, torch.tensor(labels), torch.full((len(labels),), 0.9), m))
        return preds

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"heads": [self.head]}


def test_exact_predictions_give_perfect_scores_and_all_files(tmp_path: Path) -> None:
    ds = PaintedSet()
    m = evaluate_adapter(ColourSegmenter(), ds, [0, 1, 2], batch_size=2, out_dir=tmp_path, plots=True,
                         resolution="input")
    assert m["segm"]["AP"] == pytest.approx(1.0) and m["bbox"]["AP"] == pytest.approx(1.0)
    assert m["semantic"] == {"mIoU": 1.0, "pixel_acc": 1.0, "score_threshold": 0.5, "n_categories": 3}
    assert m["confusion"]["correct"] == 4 and m["confusion"]["missed"] == m["confusion"]["spurious"] == 0
    assert m["per_category"]["garment1"]["n_gt"] == 2 and m["per_category"]["garment1"]["IoU"] == 1.0
    assert m["n_images"] == 3 and m["n_detections"] == 4
    for name in ("results.json", "gt.json", "metrics.json", "confusion.csv", "confusion.png",
                 "pr_curves.png", "pr_per_category.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert Image.open(tmp_path / "confusion.png").size[0] > 300
    coco = COCO(str(tmp_path / "gt.json"))
    dets = coco.loadRes(str(tmp_path / "results.json"))
    assert sorted({d["category_id"] for d in dets.anns.values()}) == [11, 12, 13]
    assert json.loads((tmp_path / "metrics.json").read_text())["segm"]["AP"] == pytest.approx(1.0)
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert rows[1].startswith("background,0,0,0,0") and rows[2] == "garment1,0,2,0,0"


def test_subset_and_wrong_adapter_output_is_reported(tmp_path: Path) -> None:
    ds = PaintedSet()
    m = evaluate_adapter(ColourSegmenter(), ds, [1], out_dir=None, resolution="input")
    assert m["n_images"] == 1 and list(m["per_category"]) == ["garment3"]
    with pytest.raises(ValueError, match="labels must be in 1..2"):
        evaluate_adapter(ColourSegmenter(num_classes=3), _TwoCategorySet(), [1], resolution="input")


class _TwoCategorySet(PaintedSet):
    categories = PaintedSet.categories[:2]


# ---------------------------------------------------------------- parity with plain pycocotools
# COCOeval.summarize's stats, in the order pycocotools prints them (written out here, not taken
# from zoo, so that the names zoo gives its numbers are checked too).
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class ScatteredSet(PaintedSet):
    """12 images of 160 px, one of them empty: 2-7 rectangles and ellipses each (4-30, 36-90 or
    100-150 px across, so COCO's small, medium and large ranges all hold objects), painted in
    category colours, later ones over earlier ones; the ground truth is each whole shape,
    occluded part included."""

    SIZE = 160

    def __init__(self) -> None:
        rng = np.random.default_rng(11)
        yy, xx = np.mgrid[0:self.SIZE, 0:self.SIZE]
        self.scenes: list[list[tuple[int, np.ndarray]]] = []
        for i in range(12):
            objects = []
            for _ in range(0 if i == 3 else int(rng.integers(2, 8))):
                low, high = ((4, 30), (36, 90), (100, 150))[rng.choice(3, p=(0.45, 0.35, 0.2))]
                h, w = rng.uniform(low, high, 2)
                cy, cx = rng.uniform(h / 2, self.SIZE - h / 2), rng.uniform(w / 2, self.SIZE - w / 2)
                if rng.random() < 0.5:
                    shape = (abs(yy - cy) <= h / 2) & (abs(xx - cx) <= w / 2)
                else:
                    shape = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1
                if shape.any():
                    objects.append((int(rng.integers(1, 4)), shape))
            self.scenes.append(objects)
        self.image_ids = [f"scatter{i}.jpg" for i in range(12)]

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, dict]:
        s = self.SIZE
        image = torch.zeros((3, s, s), dtype=torch.uint8)
        objects = self.scenes[i]
        masks = torch.from_numpy(np.stack([m for _, m in objects]) if objects else np.zeros((0, s, s), bool))
        for lab, m in objects:
            image[:, torch.from_numpy(m)] = torch.tensor(colour(lab), dtype=torch.uint8)[:, None]
        ys, xs = masks.any(2), masks.any(1)
        boxes = torch.stack([xs.float().argmax(1), ys.float().argmax(1), s - xs.flip(1).float().argmax(1),
                             s - ys.flip(1).float().argmax(1)], 1).float() if objects else torch.zeros((0, 4))
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(s, s)),
                  "labels": torch.tensor([lab for lab, _ in objects], dtype=torch.int64),
                  "masks": tv_tensors.Mask(masks.to(torch.uint8)), "attributes": [[] for _ in objects],
                  "image_id": i}
        return tv_tensors.Image(image), target


class SloppySegmenter(ColourSegmenter):
    """The colour segmenter made imperfect in known ways: every visible part is its own instance
    (occluded shapes split), each shifted right by 0-3 px, every fifth one with the wrong
    category, scores spread over (0, 1) without regard to quality, and 12 small category-1 false
    positives per image (COCO keeps at most maxDets detections per image *and category*), so
    the matching, the score ranking, the area ranges and maxDets all matter."""

    def postprocess(self, raw: list[Tensor], sizes: list[tuple[int, int]]) -> list[InstancePred]:
        preds = []
        for pred, (h, w) in zip(super().postprocess(raw, sizes), sizes):
            masks, labels = list(pred.masks), pred.labels.tolist()
            for k in range(len(masks)):
                masks[k] = torch.roll(masks[k], k % 4, dims=1) & (torch.arange(w) >= k % 4)
                labels[k] = labels[k] % 3 + 1 if k % 5 == 4 else labels[k]
            for k in range(12):  # category-1 speckles on a 4 x 3 grid
                fp = torch.zeros((h, w), dtype=torch.bool)
                y, x = 10 + 50 * (k // 4), 10 + 40 * (k % 4)
                fp[y:y + 6, x:x + 6] = True
                masks.append(fp)
                labels.append(1)
            m = torch.stack(masks)
            ys, xs = m.any(2), m.any(1)
            boxes = torch.stack([xs.float().argmax(1), ys.float().argmax(1),
                                 w - xs.flip(1).float().argmax(1), h - ys.flip(1).float().argmax(1)], 1).float()
            scores = torch.tensor([(0.618034 * (k + 1) + 0.1 * (k % 3)) % 1.0 for k in range(len(labels))])
            preds.append(InstancePred(boxes, torch.tensor(labels), scores.clamp(0.01, 0.99), m))
        return preds


def plain_pycocotools(gt_file: Path, results_file: Path, iou_type: str) -> tuple[list[float], COCOeval]:
    """COCOeval as its README runs it (loadRes, evaluate, accumulate, summarize) on two files.

    For mask AP the results' boxes are left out on loading, so that loadRes takes each
    detection's area from its mask (with a box it uses the box area, which puts masks in the
    wrong small/medium/large range); that is the convention of detectron2's COCO evaluator.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dets = json.loads(results_file.read_text())
        if iou_type == "segm":
            dets = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
        if dets:
            dt = gt.loadRes(dets)
        else:  # loadRes reads the first row to tell the result type: build the empty set directly
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"],
                          "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats], ev


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_written_files_scored_by_plain_pycocotools_give_metrics_json(backend: str, tmp_path: Path) -> None:
    ds = ScatteredSet()
    evaluate_adapter(SloppySegmenter(), ds, range(len(ds)), batch_size=4, out_dir=tmp_path, backend=backend,
                     resolution="input")
    written = json.loads((tmp_path / "metrics.json").read_text())
    for iou_type in ("segm", "bbox"):
        stats, ev = plain_pycocotools(tmp_path / "gt.json", tmp_path / "results.json", iou_type)
        assert len(stats) == 12
        for name, value in zip(COCO_STATS, stats):
            assert written[iou_type][name] == pytest.approx(value, abs=1e-4), (iou_type, name)
        # A case where every range and cut-off is exercised, not a trivial 0, 1 or -1.
        assert all(0.01 < v < 0.99 for v in stats), dict(zip(COCO_STATS, stats))
        assert stats[6] < stats[7] < stats[8]  # AR1 < AR10 < AR100: maxDets matters
        # Per-category AP (IoU .50:.95, area all, 100 detections) as the report's table shows it.
        prefix = "" if iou_type == "segm" else "bbox_"
        for k, cat_id in enumerate(ev.params.catIds):
            p = ev.eval["precision"][:, :, k, 0, 2]
            name = next(c.name for c in ds.categories if c.id == cat_id)
            assert written["per_category"][name][f"{prefix}AP"] == pytest.approx(p[p > -1].mean(), abs=1e-4)


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory):
    from zoo.data.dataset import open_dataset
    from zoo.data.synth import write_synthetic

    folder = write_synthetic(tmp_path_factory.mktemp("synth"), n=3, size=64, seed=1)
    return open_dataset(DataConfig(source=str(folder), max_size=64))


def decode(segmentation: dict) -> np.ndarray:
    """A COCO compressed RLE (``counts`` as JSON str) -> bool ``[H, W]``."""
    import warnings

    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools' own numpy-2 deprecation notice, once per mask
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({**segmentation, "counts": segmentation["counts"].encode()}).astype(bool)


def semantic_from_files(gt: dict, results: list[dict], threshold: float) -> tuple[float, float]:
    """(mIoU, pixel accuracy) by their definition in :mod:`zoo.metrics.semantic`, from COCO files:
    per-category maps (a pixel may carry several categories), predictions scoring >= threshold."""
    cats = sorted(c["id"] for c in gt["categories"])
    inter, union = np.zeros(len(cats)), np.zeros(len(cats))
    exact = total = 0
    for img in gt["images"]:
        maps = {who: np.zeros((len(cats), img["height"], img["width"]), dtype=bool) for who in ("gt", "pred")}
        for a in gt["annotations"]:
            if a["image_id"] == img["id"]:
                maps["gt"][cats.index(a["category_id"])] |= decode(a["segmentation"])
        for r in results:
            if r["image_id"] == img["id"] and r["score"] >= threshold:
                maps["pred"][cats.index(r["category_id"])] |= decode(r["segmentation"])
        g, p = maps["gt"], maps["pred"]
        inter += (g & p).reshape(len(cats), -1).sum(1)
        union += (g | p).reshape(len(cats), -1).sum(1)
        exact += int((g == p).all(0).sum())
        total += img["height"] * img["width"]
    present = union > 0
    return (float((inter[present] / union[present]).mean()) if present.any() else -1.0), exact / total


@pytest.mark.parametrize("name", available_adapters())
def test_every_adapter_is_scored_on_real_jpegs(name: str, synth_dataset, tmp_path: Path) -> None:
    """Whatever an untrained model predicts, the files hold exactly its predictions and the
    metrics are what those files score: COCO by plain pycocotools, semantic by definition."""
    torch.manual_seed(0)
    adapter = build_adapter(name, num_classes=len(synth_dataset.categories))
    m = evaluate_adapter(adapter, synth_dataset, [0, 1, 2], batch_size=2, out_dir=tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert len(results) == m["n_detections"]
    # The source's own image ids (1-based CSV order), the photos at their own size.
    assert sorted(im["id"] for im in gt["images"]) == [1, 2, 3] and m["resolution"]["scored_at"] == "original"
    assert len(gt["annotations"]) == sum(len(synth_dataset[i][1]["labels"]) for i in range(3))
    # results.json is the adapter's own output, image by image and in its order.
    label_to_cat = {c.label: c.id for c in synth_dataset.categories}
    for i in range(3):
        pred = adapter.predict([synth_dataset[i][0].as_subclass(torch.Tensor).float() / 255])[0]
        rows = [r for r in results if r["image_id"] == i + 1]
        assert len(rows) == len(pred)
        assert [r["score"] for r in rows] == pytest.approx(pred.scores.tolist(), abs=1e-6)
        assert [r["category_id"] for r in rows] == [label_to_cat[lab] for lab in pred.labels.tolist()]
        for r, mask in zip(rows, pred.masks):
            assert np.array_equal(decode(r["segmentation"]), mask.numpy())
    for kind in ("segm", "bbox"):
        stats, _ = plain_pycocotools(tmp_path / "gt.json", tmp_path / "results.json", kind)
        assert [m[kind][k] for k in COCO_STATS] == pytest.approx(stats, abs=1e-4), kind
        assert m[kind]["AR1"] <= m[kind]["AR10"] <= m[kind]["AR100"]  # more detections, more recall
    miou, pixel_acc = semantic_from_files(gt, results, m["semantic"]["score_threshold"])
    assert m["semantic"]["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-12)
    assert m["semantic"]["mIoU"] == pytest.approx(miou, abs=1e-12)
