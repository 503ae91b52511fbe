"""Scoring at the original resolution on the real Fashionpedia sample (618x1000 and 1000x1478
photos): a model whose output is known (the ground truth read at the network input), the files
zoo writes re-scored by plain pycocotools and by the Fashionpedia API, against zoo's gt.json and
against the user's own annotation file. Skipped without ../shared."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from conftest import shared_fixture_path
from zoo.adapter import Adapter
from zoo.config import DataConfig
from zoo.data.dataset import InstanceDataset, open_dataset
from zoo.metrics.evaluate import evaluate_adapter
from zoo.types import InstancePred

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
FP_STATS = ("AP", "AP_IOU50", "AP_IOU75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@100", "ARs@100", "ARm@100",
            "ARl@100")


def _key(image: Tensor) -> str:
    return hashlib.sha1((image * 255).round().to(torch.uint8).cpu().numpy().tobytes()).hexdigest()


class GroundTruthAtInput(Adapter):
    """Predicts, for each image it was built with, that image's ground truth as the dataset reads
    it at the network input (masks, boxes, labels, attributes), with falling scores."""

    config_cls = dict

    def __init__(self, dataset: InstanceDataset) -> None:
        super().__init__({}, len(dataset.categories))
        self.head = nn.Parameter(torch.zeros(1))
        self.known = {_key(im.float() / 255): t for im, t in (dataset[i] for i in range(len(dataset)))}

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        return {"zero": self.head.sum() * 0}

    def run_model(self, images: list[Tensor]) -> list[str]:
        return [_key(im) for im in images]

    def postprocess(self, raw: list[str], sizes: list[tuple[int, int]]) -> list[InstancePred]:
        preds = []
        for key in raw:
            t = self.known[key]
            n = len(t["labels"])
            preds.append(InstancePred(t["boxes"].as_subclass(Tensor).float(), t["labels"], torch.linspace(0.95, 0.5, n),
                                      t["masks"].as_subclass(Tensor).bool(), attributes=t["attributes"]))
        return preds

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"heads": [self.head]}


def sample_dataset(**data: Any) -> InstanceDataset:
    return open_dataset(DataConfig(source=str(shared_fixture_path("fashionpedia-sample", "sample.json")), **data))


def plain_cocoeval(gt: COCO, results: list[dict], iou_type: str) -> list[float]:
    """COCOeval as its README runs it (loadRes writes into the rows: it gets copies)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def scored_at_512(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, InstanceDataset]:
    ds = sample_dataset(max_size=512)
    out = tmp_path_factory.mktemp("eval512")
    metrics = evaluate_adapter(GroundTruthAtInput(ds), ds, range(len(ds)), out_dir=out, backend="pycocotools")
    return metrics, out, ds


def test_known_output_scores_high_at_the_original_resolution(scored_at_512) -> None:
    metrics, out, ds = scored_at_512
    assert [tuple(ds.records[i].path.name for i in range(2))] and metrics["resolution"]["scored_at"] == "original"
    gt = json.loads((out / "gt.json").read_text())
    assert sorted((im["width"], im["height"]) for im in gt["images"]) == [(618, 1000), (1000, 1478)]
    assert metrics["resolution"]["n_resized"] == 2 and len(gt["annotations"]) == 12
    assert metrics["segm"]["AP"] >= 0.95 and metrics["bbox"]["AP"] >= 0.95
    assert metrics["confusion"]["correct"] == 12 and metrics["semantic"]["mIoU"] > 0.9


def test_training_size_scoring_splits_the_areas_differently(scored_at_512) -> None:
    metrics, out, ds = scored_at_512
    small = metrics["at_input_size"]["segm"]
    split = lambda m: tuple(round(m[k], 4) for k in ("APs", "APm", "APl"))  # noqa: E731
    assert split(small) != split(metrics["segm"])
    # The same objects fall in other COCO area ranges at 512 px than at the photos' own size.
    full_areas = [a["area"] for a in json.loads((out / "gt.json").read_text())["annotations"]]
    input_areas = [float(m.sum()) for i in range(len(ds)) for m in ds[i][1]["masks"]]
    bucket = lambda areas: np.histogram(areas, bins=[0, 32**2, 96**2, 1e10])[0].tolist()  # noqa: E731
    assert bucket(full_areas) != bucket(input_areas)


def test_padded_square_input_maps_back_exactly() -> None:
    ds = sample_dataset(max_size=1024, resize="square", min_size=800)  # the GPU presets' input
    assert tuple(ds[0][0].shape[-2:]) == (1024, 1024)
    metrics = evaluate_adapter(GroundTruthAtInput(ds), ds, range(len(ds)), backend="pycocotools")
    assert metrics["segm"]["AP"] >= 0.95 and metrics["bbox"]["AP"] >= 0.95


def test_written_files_reproduce_with_pycocotools_and_on_the_users_own_file(scored_at_512) -> None:
    metrics, out, _ = scored_at_512
    results = json.loads((out / "results.json").read_text())
    sample = json.loads(shared_fixture_path("fashionpedia-sample", "sample.json").read_text())
    assert {r["image_id"] for r in results} == {im["id"] for im in sample["images"]}
    assert all(r["attribute_ids"] is not None and isinstance(r["segmentation"]["counts"], str) for r in results)
    segm_results = json.loads((out / "results_segm.json").read_text())
    for iou_type, rows in (("segm", segm_results), ("bbox", results)):
        stats = plain_cocoeval(load_coco(out / "gt.json"), rows, iou_type)
        assert [metrics[iou_type][k] for k in COCO_STATS] == pytest.approx(stats, abs=1e-4), iou_type
        assert 0 < min(stats[:6]) and min(stats[:6]) < 1  # not a trivial all-ones case
    # The user's own annotation file (polygons, its own areas, no boxes) scores the same masks.
    own = plain_cocoeval(load_coco(shared_fixture_path("fashionpedia-sample", "sample.json")), segm_results, "segm")
    assert [metrics["segm"][k] for k in COCO_STATS] == pytest.approx(own, abs=1e-4)


def test_fashionpedia_api_evaluator_reproduces_the_stats(scored_at_512) -> None:
    metrics, out, _ = scored_at_512
    with contextlib.redirect_stdout(io.StringIO()):
        from fashionpedia.fp import Fashionpedia
        from fashionpedia.fp_eval import FPEval

        np.float, np.int = float, int  # the package predates numpy 2
        gt = Fashionpedia(str(out / "gt.json"))
        dt = gt.loadRes(str(out / "results_segm.json"))
        ev = FPEval(gt, dt, "segm")
        ev.run()
    assert [ev.resultDet[k] for k in FP_STATS] == pytest.approx([metrics["segm"][k] for k in COCO_STATS], abs=1e-4)


def test_a_prepared_cache_is_scored_against_the_dataset_it_came_from(synth_dir: Path, tmp_path: Path) -> None:
    from zoo.data.prepare import prepare_cache
    from zoo.data.sources import read_source

    source = tmp_path / "source"
    shutil.copytree(synth_dir, source)  # 128 px photos in the iMaterialist layout
    cache = prepare_cache(source, tmp_path / "cache", max_size=64, workers=1)
    ds = open_dataset(DataConfig(cache=str(cache), max_size=64))
    metrics = evaluate_adapter(GroundTruthAtInput(ds), ds, [0, 1, 2], out_dir=tmp_path / "eval")
    gt = json.loads((tmp_path / "eval" / "gt.json").read_text())
    assert metrics["resolution"]["scored_at"] == "original" and metrics["resolution"]["n_resized"] == 3
    assert {(im["height"], im["width"]) for im in gt["images"]} == {(128, 128)}
    assert [im["file_name"] for im in gt["images"]] == ds.image_ids[:3]
    # Nothing dropped: every annotated instance of the 128 px photos, also those gone at 64 px.
    records = {r.name: r for r in read_source(source).records}
    assert len(gt["annotations"]) == sum(len(records[n].instances) for n in ds.image_ids[:3])
    assert len(gt["annotations"]) > sum(len(ds[i][1]["labels"]) for i in range(3))
    # Read at 64 px the ground truth itself scores 1.0 there, but only about 0.47 at the photos' size.
    assert metrics["at_input_size"]["segm"]["AP"] == pytest.approx(1.0) and 0.3 < metrics["segm"]["AP"] < 0.9
    shutil.rmtree(source)  # the raw data moved away: the cache's own annotations, and it says so
    ds = open_dataset(DataConfig(cache=str(cache), max_size=64))
    metrics = evaluate_adapter(GroundTruthAtInput(ds), ds, [0, 1, 2])
    assert metrics["resolution"]["scored_at"] == "cache" and "not reachable" in metrics["resolution"]["note"]
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
