"""evaluate_adapter end to end: a colour-segmenting adapter with known answers, every registered
adapter on real synthetic JPEGs, and the files written for a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from scipy import ndimage
from torch import Tensor, nn
from torchvision import tv_tensors

import adapters  # noqa: F401  (fills the registry)
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
    m = evaluate_adapter(ColourSegmenter(), ds, [0, 1, 2], batch_size=2, out_dir=tmp_path, plots=True)
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
    m = evaluate_adapter(ColourSegmenter(), ds, [1], out_dir=None)
    assert m["n_images"] == 1 and list(m["per_category"]) == ["garment3"]
    with pytest.raises(ValueError, match="labels must be in 1..2"):
        evaluate_adapter(ColourSegmenter(num_classes=3), _TwoCategorySet(), [1])


class _TwoCategorySet(PaintedSet):
    categories = PaintedSet.categories[:2]


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory):
    from zoo.data.dataset import open_dataset
    from zoo.data.synth import write_synthetic

    folder = write_synthetic(tmp_path_factory.mktemp("synth"), n=3, size=64, seed=1)
    return open_dataset(DataConfig(source=str(folder), max_size=64))


@pytest.mark.parametrize("name", available_adapters())
def test_every_adapter_is_scored_on_real_jpegs(name: str, synth_dataset, tmp_path: Path) -> None:
    torch.manual_seed(0)
    adapter = build_adapter(name, num_classes=len(synth_dataset.categories))
    m = evaluate_adapter(adapter, synth_dataset, [0, 1, 2], batch_size=2, out_dir=tmp_path)
    for kind in ("segm", "bbox"):
        assert all(v == -1.0 or 0.0 <= v <= 1.0 for v in m[kind].values()), m[kind]
    assert 0.0 <= m["semantic"]["pixel_acc"] <= 1.0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == m["n_detections"]
    assert {r["image_id"] for r in results} <= {0, 1, 2}
    assert all(r["segmentation"]["size"] == [64, 64] and 0.0 <= r["score"] <= 1.0 for r in results)
