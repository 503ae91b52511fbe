"""What the report says: the verdict lines, the summary row, the per-category and bootstrap tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.report.bootstrap import BootstrapResult, Interval
from zoo.report.collect import ModelResult
from zoo.report.content import (DERIVED_NOTE, Context, Figures, bootstrap_tables, build_document, fmt_ap, fmt_interval,
                                latency_table, per_category_table, summary_row, verdict)
from zoo.report.document import Heading, Paragraph, Table


def result(name: str, ap: float, ap50: float, ms: float, per_cat: dict[str, tuple[int, float]] | None = None,
           model: dict | None = None, miou: float = 0.5) -> ModelResult:
    segm = {"AP": ap, "AP50": ap50, "AP75": ap / 2, "APs": -1.0, "APm": ap, "APl": ap}
    metrics = {"segm": segm, "bbox": {"AP": ap + 0.01}, "semantic": {"mIoU": miou},
               "per_category": {c: {"n_gt": n, "AP": v} for c, (n, v) in (per_cat or {}).items()}}
    bench = {"ms_median": ms, "ms_p90": ms * 1.2, "images_per_s": 1000 / ms, "peak_mem_mb": 812.4,
             "device": "cpu", "params": 12_345_678, "backbone": "resnet18"}
    config = {"adapter": name, "data": {"max_size": 256}, "model": model or {}}
    return ModelResult(name, Path(name), Path(name), config, {"train_time_s": 61.26}, metrics, bench)


def test_summary_row_formats_every_number_from_the_files() -> None:
    row = summary_row(result("yolact", 0.31234, 0.5, 120.04, model={"input_size": 192}))
    assert row == ("yolact", "resnet18", "256 (net 192)", "12.35", "61.3", "0.312", "0.500", "0.156", "n/a",
                   "0.312", "0.312", "0.322", "0.500", "120.0", "144.0", "8.3", "812", "cpu")


def test_verdict_names_best_fastest_front_and_models_that_did_not_learn() -> None:
    rs = [result("maskrcnn", 0.30, 0.55, 400.0), result("yolact", 0.20, 0.40, 150.0),
          result("unet", 0.0, 0.0, 200.0)]
    lines = verdict(rs, None)
    assert lines[0].startswith("Most accurate by mask AP: **maskrcnn** (mask AP 0.300")
    assert lines[1] == "Most accurate by mIoU (semantic maps): a tie between **maskrcnn**, **yolact**, **unet †** (mIoU 0.500)."
    assert lines[2].startswith("Fastest: **yolact** (150.0 ms")
    assert lines[3] == "On the accuracy/latency Pareto front: **yolact**, **maskrcnn**."
    assert "Did not learn" in lines[4] and "**unet †** (0.000)" in lines[4] and "maskrcnn" not in lines[4]
    assert lines[5] == DERIVED_NOTE


def test_verdict_reports_ties_and_real_differences() -> None:
    rs = [result("a", 0.25, 0.5, 10.0), result("b", 0.25, 0.5, 20.0)]
    boot = BootstrapResult(("segm", "AP"), 50, 100, 0.95)
    boot.differences = {("a", "b"): Interval(0.0, -0.02, 0.02), ("b", "a"): Interval(0.0, -0.02, 0.02)}
    lines = verdict(rs, boot)
    assert lines[0].startswith("Most accurate by mask AP: a tie between **a**, **b**")
    assert lines[-1].startswith("No difference in mask AP is real")
    boot.differences = {("a", "b"): Interval(0.05, 0.01, 0.09), ("b", "a"): Interval(-0.05, -0.09, -0.01)}
    assert verdict(rs, boot)[-1] == ("Real differences in mask AP (95% bootstrap interval excludes 0): "
                                     "a > b by 0.050 [0.010, 0.090].")


def test_verdict_says_when_the_most_accurate_model_does_not_really_lead() -> None:
    rs = [result("a", 0.30, 0.5, 10.0), result("b", 0.28, 0.5, 20.0), result("c", 0.10, 0.3, 30.0)]
    boot = BootstrapResult(("segm", "AP"), 50, 100, 0.95)
    boot.differences = {("a", "b"): Interval(0.02, -0.01, 0.05), ("a", "c"): Interval(0.2, 0.1, 0.3),
                        ("b", "c"): Interval(0.18, 0.08, 0.28)}
    top = verdict(rs, boot)[0]
    assert top.startswith("Most accurate by mask AP: **a** (mask AP 0.300")
    assert "Its lead over **b** is not real" in top and "**c**" not in top
    boot.differences[("a", "b")] = Interval(0.02, 0.01, 0.03)
    assert "not real" not in verdict(rs, boot)[0]


def test_interval_bounds_that_are_not_zero_never_print_as_zero() -> None:
    assert fmt_interval(Interval(0.006, 0.00042, 0.0121)) == "[0.0004, 0.012]"
    assert fmt_interval(Interval(0.0, 0.0, 0.01)) == "[0.000, 0.010]"  # an exact 0 stays 0.000
    assert fmt_interval(Interval(0.1, -0.01, 0.2)) == "[-0.010, 0.200]"


def test_bootstrap_and_per_category_tables() -> None:
    rs = [result("a", 0.3, 0.5, 10.0, {"shoe": (9, 0.4), "hat": (2, 0.1), "bag": (0, -1.0)}),
          result("b", 0.2, 0.4, 20.0, {"shoe": (9, 0.2), "hat": (2, -1.0)})]
    table = per_category_table(rs)
    assert table.headers == ("category", "instances", "a", "b")
    assert table.rows == (("shoe", "9", "0.400", "0.200"), ("hat", "2", "0.100", "n/a"))  # most frequent first
    boot = BootstrapResult(("segm", "AP"), 50, 100, 0.95, samples={"a": np.zeros(1), "b": np.zeros(1)})
    boot.models = {"a": Interval(0.3, 0.25, 0.36), "b": Interval(0.2, 0.15, 0.26)}
    boot.differences = {("a", "b"): Interval(0.1, -0.01, 0.2)}
    text, per_model, pairs = bootstrap_tables(rs, boot, "test")
    assert "100 times" in text.text and "50 images" in text.text and text.text.startswith("The test images")
    assert per_model.rows == (("a", "0.300", "[0.250, 0.360]"), ("b", "0.200", "[0.150, 0.260]"))
    assert pairs.rows == (("a - b", "+0.100", "[-0.010, 0.200]", "no (interval includes 0)"),)
    assert fmt_ap(-1) == "n/a" and fmt_ap(None) == "n/a" and fmt_ap(0.12345) == "0.123"


def test_gallery_images_are_spread_over_images_with_ground_truth() -> None:
    from zoo.report.write import gallery_image_ids

    gt = {"annotations": [{"image_id": i} for i in (3, 5, 5, 8, 13, 21, 34)]}
    assert gallery_image_ids(gt, 3) == [3, 8, 34]  # first, middle, last of 6 distinct images
    assert gallery_image_ids(gt, 10) == [3, 5, 8, 13, 21, 34]
    assert gallery_image_ids(gt, 0) == [] and gallery_image_ids({"annotations": []}, 4) == []


def test_models_scored_on_different_images_are_refused(tmp_path: Path) -> None:
    import json

    import pytest

    from zoo.errors import UserError
    from zoo.report.write import shared_ground_truth

    rs = []
    for name, ids in (("a", [1, 2]), ("b", [1, 3])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "gt.json").write_text(json.dumps({"images": [{"id": i} for i in ids], "annotations": []}))
        rs.append(ModelResult(name, tmp_path, tmp_path / name, {}, {}, {}, {}))
    with pytest.raises(UserError, match="scored on other images than a"):
        shared_ground_truth(rs)


def test_backbone_and_network_size_are_the_adapters_declared_fields() -> None:
    def without_bench_backbone(r: ModelResult) -> ModelResult:
        r.bench.pop("backbone")
        return r

    unet = without_bench_backbone(result("unet", 0.1, 0.2, 10.0, model={"encoder": "resnet34", "backbone": "no",
                                                                        "input_size": 96, "max_size": 512}))
    assert (unet.backbone, unet.network_size) == ("resnet34", 96)  # backbone_option "encoder", input_size_fields
    mrcnn = without_bench_backbone(result("maskrcnn", 0.1, 0.2, 10.0,
                                          model={"backbone": "resnet50", "min_size": 100, "max_size": 160}))
    assert (mrcnn.backbone, mrcnn.network_size) == ("resnet50", 160)
    unknown = without_bench_backbone(result("not-registered", 0.1, 0.2, 10.0, model={"backbone": "x", "input_size": 5}))
    assert (unknown.backbone, unknown.network_size) == ("-", None)


def _compared() -> list[ModelResult]:
    cats = {"shirt": (5, 0.3), "shoe": (3, 0.2)}
    rs = [result("maskrcnn", 0.30, 0.5, 40.0, cats, miou=0.41), result("unet", 0.35, 0.6, 20.0, cats, miou=0.62),
          result("yolact", 0.20, 0.4, 30.0, cats, miou=0.33)]
    for r in rs:
        r.summary.update(epochs=2, global_step=10)
        r.metrics["at_input_size"] = {"segm": dict(r.metrics["segm"], APs=0.0)}
        r.metrics["segm"]["APs"] = 0.0
        r.bench.update(ms_median_ci=[r.bench["ms_median"] * 0.9, r.bench["ms_median"] * 1.1], protocol="interleaved",
                       ms_p90_ci=[r.bench["ms_p90"], r.bench["ms_p90"] * 1.2], preprocess_ms=0.1, model_ms=10.0,
                       postprocess_ms=5.0, block=1, iters=20, photos=8, size=256, confidence=0.95)
    return rs


def test_a_semantic_model_is_marked_derived_in_every_table() -> None:
    rs = _compared()
    boot = BootstrapResult(("segm", "AP"), 50, 100, 0.95)
    boot.models = {r.name: Interval(r.metrics["segm"]["AP"], 0.1, 0.5) for r in rs}
    boot.differences = {(a.name, b.name): Interval(0.01, -0.02, 0.04) for a in rs for b in rs if a is not b}
    ctx = Context("synthetic", 10, 8, 2, 0, "random", "cpu", "zoo compare", "cpu", {"torch": "2"})
    doc = build_document(rs, boot, Figures(), ctx)
    tables = [b for b in doc.blocks if isinstance(b, Table)][:-1]  # the last one lists package versions
    assert len(tables) == 7  # summary, input size, latency, bootstrap x2, per category, training
    for table in tables:
        cells = [*table.headers, *(c for row in table.rows for c in row)]
        assert any("unet" in c for c in cells)
        assert all("unet †" in c for c in cells if "unet" in c)
        assert not any("maskrcnn †" in c or "yolact †" in c for c in cells)
        section = []  # the blocks after the table, up to the next heading: the footnote is there
        for block in doc.blocks[doc.blocks.index(table) + 1:]:
            if isinstance(block, Heading):
                break
            section.append(block)
        assert Paragraph(DERIVED_NOTE) in section
    lines = verdict(rs, boot)
    assert lines[0].startswith("Most accurate by mask AP: **unet †** (mask AP 0.350")
    assert "derived from a semantic map" in lines[0]
    assert lines[1] == "Most accurate by mIoU (semantic maps): **unet †** (mIoU 0.620)."
    rs[0].metrics["semantic"]["mIoU"] = 0.7
    assert verdict(rs, boot)[1] == "Most accurate by mIoU (semantic maps): **maskrcnn** (mIoU 0.700)."


def test_latency_table_shows_intervals_and_phases() -> None:
    rs = _compared()
    table = latency_table(rs)
    assert table.rows[0] == ("maskrcnn", "40.0", "[36.0, 44.0]", "48.0", "[48.0, 57.6]", "0.10", "10.0", "5.0",
                             "25.0", "812")
    del rs[1].bench["ms_median_ci"]
    assert latency_table(rs).rows[1][2] == "n/a"  # a bench.json without intervals


def test_verdict_calls_a_gap_real_only_when_it_holds_across_training_seeds() -> None:
    rs = [result("a", 0.30, 0.5, 10.0), result("b", 0.25, 0.5, 20.0)]
    boot = BootstrapResult(("segm", "AP"), 50, 100, 0.95)
    boot.differences = {("a", "b"): Interval(0.05, 0.01, 0.09), ("b", "a"): Interval(-0.05, -0.09, -0.01)}

    def seeds(std_a: float, std_b: float) -> dict:
        return {"seeds": [0, 1], "models": {
            "a": {"segm_AP": [0.30 - std_a, 0.30 + std_a], "mean": {"segm_AP": 0.30}, "std": {"segm_AP": std_a}},
            "b": {"segm_AP": [0.25 - std_b, 0.25 + std_b], "mean": {"segm_AP": 0.25}, "std": {"segm_AP": std_b}}}}

    # Seed spread small against the 0.05 gap: 2 * sqrt(0.01**2 / 2 * 2) = 0.028 < 0.05.
    lines = verdict(rs, boot, seeds(0.01, 0.01))
    assert "Mask AP over 2 training seeds (mean ± sample std): a 0.300 ± 0.010, b 0.250 ± 0.010." in lines
    assert lines[-1] == ("Real differences in mask AP (95% bootstrap interval excludes 0 and it holds across "
                         "training seeds): a > b by 0.050 [0.010, 0.090].")
    # The same bootstrap interval, but seeds spread by 0.04: 2 * sqrt(0.04**2) = 0.08 > 0.05.
    lines = verdict(rs, boot, seeds(0.04, 0.04))
    assert any(line.startswith("Within training-seed variance") and "a vs b" in line for line in lines)
    assert lines[-1].startswith("No difference in mask AP is real")
