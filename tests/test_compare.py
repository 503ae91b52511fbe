"""`zoo compare` as a real subprocess on a tiny dataset: the report's tables, links and numbers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.compare import CompareSettings

REPO = Path(__file__).resolve().parents[1]
COMPARED = list(CompareSettings().models)  # what `zoo compare` trains when no adapter is named
TINY = ["--set", "compare.images=4", "--set", "batch_size=2",
        "--set", "data.max_size=64", "--set", "data.limit=12", "--set", "eval_limit=2",
        "--set", "compare.resamples=15", "--set", "compare.latency_iters=2", "--set", "compare.latency_warmup=1",
        "--set", "compare.gallery=2", "--set", "device=cpu"]


def run_dir(compared: Path, name: str, seed: int = 0) -> Path:
    return compared / "runs" / name / f"seed{seed}"


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ZOO_HOME=str(cwd / "zoo_home"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny comparison of every registered adapter (trained for 2 steps each)."""
    from zoo.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("compare")
    data = write_synthetic(root / "tiny", n=12, size=64, seed=3)
    proc = zoo("compare", "--data", str(data), "--out", str(root / "out"), "--report", "md", *TINY, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "out" / "console.txt").write_text(proc.stderr)
    return root / "out"


def bare(cell: str) -> str:
    """A cell without the report's mark for models whose instances come from a semantic map."""
    from zoo.report.collect import DERIVED_MARK

    return cell.replace(f" {DERIVED_MARK}", "")


def md_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text as rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [bare(c.strip().replace("\\|", "|")) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def table_with(tables: list[list[list[str]]], first_header: str, second: str | None = None,
               third: str | None = None) -> list[dict[str, str]]:
    for t in tables:
        if t[0][0] == first_header and (second is None or t[0][1] == second) and (
                third is None or (len(t[0]) > 2 and t[0][2] == third)):
            return [dict(zip(t[0], row)) for row in t[1:]]
    raise AssertionError(f"no table starting with {first_header!r}")


def ap(value: float) -> str:
    return "n/a" if value < 0 else f"{value:.3f}"


def test_every_model_is_scored_on_attributes_in_the_report_and_the_console(compared: Path) -> None:
    """The embedded data carries attributes, so each family's head is on and scored by AP (IoU+F1)."""
    text = (compared / "report.md").read_text()
    assert "## Attributes" in text and "Most accurate by AP (IoU+F1)" in text
    rows = table_with(md_tables(text), "model", "mask AP", "AP (IoU+F1)")
    assert [r["model"] for r in rows] == COMPARED
    for row in rows:
        scores = json.loads((compared / "models" / row["model"] / "metrics.json").read_text())["attributes"]
        assert scores["scored"], row["model"]
        assert row["AP (IoU+F1)"] == ap(scores["iou_f1"]["AP"])
    assert table_with(md_tables(text), "attribute", "instances")  # per-attribute F1, one column per model
    console = (compared / "console.txt").read_text()
    assert "IoU+F1" in console.split("comparison")[-1]  # the summary table's column


def test_report_tables_equal_the_metrics_files(compared: Path) -> None:
    text = (compared / "report.md").read_text()
    tables = md_tables(text)
    summary = table_with(tables, "model", "backbone")
    names = COMPARED
    assert [r["model"] for r in summary] == names
    for row in summary:
        model_dir = compared / "models" / row["model"]
        metrics = json.loads((model_dir / "metrics.json").read_text())
        bench = json.loads((model_dir / "bench.json").read_text())
        run = json.loads((run_dir(compared, row["model"]) / "summary.json").read_text())
        for col, key in (("mask AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("APs", "APs"), ("APm", "APm"),
                         ("APl", "APl")):
            assert row[col] == ap(metrics["segm"][key]), (row["model"], col)
        assert row["box AP"] == ap(metrics["bbox"]["AP"])
        assert row["mIoU"] == ap(metrics["semantic"]["mIoU"])
        assert row["latency median (ms)"] == f"{bench['ms_median']:.1f}"
        assert row["latency p90 (ms)"] == f"{bench['ms_p90']:.1f}"
        assert row["images/s"] == f"{bench['images_per_s']:.1f}"
        assert row["params (M)"] == f"{bench['params'] / 1e6:.2f}"
        assert row["train time (s)"] == f"{run['train_time_s']:.1f}"
        assert row["device"] == "cpu" and row["input (px)"].startswith("64")
        per_cat = {r["category"]: r for r in table_with(tables, "category", "instances")}
        assert per_cat, "per-category table is empty"
        for cat, cells in per_cat.items():
            assert cells[row["model"]] == ap(metrics["per_category"][cat]["AP"])
            assert cells["instances"] == str(metrics["per_category"][cat]["n_gt"])
    boot = table_with(tables, "model", "mask AP", "95% interval")
    assert [r["model"] for r in boot] == names
    # The intervals are the paired bootstrap of the files each model's scoring wrote (the
    # compare.resamples=15 asked for, seed 0), recomputed here from those files alone.
    from zoo.report.bootstrap import bootstrap_ap

    gt = json.loads((compared / "models" / names[0] / "gt.json").read_text())
    preds = {n: json.loads((compared / "models" / n / "results.json").read_text()) for n in names}
    again = bootstrap_ap(gt, preds, n_resamples=15, seed=0, confidence=0.95)
    for r in boot:
        metrics = json.loads((compared / "models" / r["model"] / "metrics.json").read_text())
        assert r["mask AP"] == ap(metrics["segm"]["AP"])  # the bootstrap's point estimate is the same number
        low, high = interval(r["95% interval"])
        iv = again.models[r["model"]]
        assert (low, high) == pytest.approx((iv.low, iv.high), abs=5e-4), r["model"]
    pairs = table_with(tables, "difference")
    assert [p["difference"] for p in pairs] == [f"{a} - {b}" for i, a in enumerate(names) for b in names[i + 1:]]
    for p in pairs:
        a, b = p["difference"].split(" - ")
        iv = again.differences[(a, b)]
        assert float(p["mask AP difference"]) == pytest.approx(iv.estimate, abs=5e-4)
        assert interval(p["95% interval"]) == pytest.approx((iv.low, iv.high), abs=5e-4), p["difference"]
        if iv.excludes_zero:
            assert p["real?"] == f"yes: {a if iv.estimate > 0 else b} is better"
        else:
            assert p["real?"] == "no (interval includes 0)"
    summary_json = json.loads((compared / "comparison.json").read_text())["bootstrap"]
    assert summary_json["n_resamples"] == 15
    for n in names:
        assert summary_json["models"][n]["low"] == pytest.approx(again.models[n].low, abs=1e-12)
        assert summary_json["models"][n]["high"] == pytest.approx(again.models[n].high, abs=1e-12)


def interval(cell: str) -> tuple[float, float]:
    """``"[low, high]"`` as printed in the report -> ``(low, high)``."""
    low, high = map(float, re.fullmatch(r"\[(.+), (.+)\]", cell).groups())
    return low, high


def test_every_linked_image_exists_and_is_a_png(compared: Path) -> None:
    text = (compared / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 6 + 2 * len(COMPARED)
    for link in links:
        path = compared / link
        assert path.is_file(), link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    for name in ("ap_vs_latency.png", "per_category_ap.png", "pr_curves.png", "loss_curves.png", "gallery.png",
                 "ap_differences.png"):
        assert name in links
    assert "predictions in red (score >= 0.5)" in text  # the gallery says which predictions it draws
    # A CommonMark renderer (markdown-it, what rich uses) sees the same images and every table.
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    images = [c.attrs["src"] for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "image"]
    assert images == links
    assert sum(t.type == "table_open" for t in tokens) == len(md_tables(text)) >= 6


def test_every_model_was_scored_on_the_same_test_images(compared: Path) -> None:
    split = json.loads((run_dir(compared, COMPARED[0]) / "split.json").read_text())
    assert split["test"] and not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    for name in COMPARED:
        gt = json.loads((compared / "models" / name / "gt.json").read_text())
        assert sorted(im["file_name"] for im in gt["images"]) == sorted(split["test_image_ids"])
        own = json.loads((run_dir(compared, name) / "split.json").read_text())
        assert (own["train"], own["val"], own["test"]) == (split["train"], split["val"], split["test"])
    text = (compared / "report.md").read_text()
    assert (f"scored on {len(split['test'])} test images, held out from training ({len(split['train'])} images) "
            f"and from selection ({len(split['val'])} validation images)") in text
    assert f"every model scored on the same {len(split['test'])} test images" in text
    assert "on the test images, scored" in text and "validation images for every model" not in text
    assert "seed 0" in text and "torchvision" in text and "segmentation-models-pytorch" in text
    assert "zoo compare --data" in text  # the command line is recorded


def test_html_report_from_existing_runs_is_self_contained(compared: Path) -> None:
    runs = [str(run_dir(compared, n)) for n in COMPARED]
    out = compared.parent / "html"
    proc = zoo("compare", "--runs", runs[0], "--runs", runs[1], "--report", "html", "--out", str(out),
               "--set", "compare.resamples=5", "--set", "compare.latency_iters=1", "--set", "compare.gallery=1",
               cwd=compared.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<table>" in page and "Are the differences real?" in page
    assert not (out / "runs").exists()  # existing runs are compared, not retrained
    metrics = json.loads((out / "models" / COMPARED[0] / "metrics.json").read_text())
    assert f"<td class=\"r\">{ap(metrics['segm']['AP'])}</td>" in page


@pytest.mark.parametrize(("args", "message"), [
    (["nosuchmodel"], "unknown adapter 'nosuchmodel'"),
    (["--set", "compare.resampels=3"], "did you mean 'resamples'"),
    (["--report", "pdf"], "choose md or html"),
    (["--runs", "does/not/exist"], "does/not/exist"),
    (["maskrcnn", "--runs", "x"], "not both"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["compare", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "runs").exists()  # nothing was trained


def test_every_run_read_the_images_compare_images_asks_for(compared: Path) -> None:
    for name in COMPARED:
        summary = json.loads((run_dir(compared, name) / "summary.json").read_text())
        assert summary["stopped_reason"] == "completed"
        assert summary["images_seen"] == 4 and summary["global_step"] == summary["planned_steps"] == 2
    text = (compared / "report.md").read_text()
    assert "budget (compare.images=4): every model reads 4 training images" in text
    assert "selection (compare.select=val_ap): every model keeps the highest validation mask AP" in text
    assert "training variance was not measured (compare.seeds=1)" in text


def test_plan_gives_every_run_one_data_section_seed_selection_and_budget() -> None:
    from zoo.compare import CompareSettings, plan_runs
    from zoo.compare_plan import planned_images

    settings = CompareSettings(images=40, select="val_loss")
    cfgs, notes = plan_runs(COMPARED, data="/some/data", preset="cpu", overrides=["seed=7", "data.limit=20"],
                            settings=settings)
    assert [c.adapter for c in cfgs] == COMPARED
    assert all(c.data == cfgs[0].data and c.seed == 7 and c.data.split_seed == 7 for c in cfgs)
    assert cfgs[0].data.source == "/some/data" and cfgs[0].data.limit == 20 and cfgs[0].data.test_fraction == 0.2
    assert all(c.best_metric == "val_loss" and c.patience is None and c.eval_limit == cfgs[0].eval_limit for c in cfgs)
    for cfg in cfgs:
        assert planned_images(cfg) == 40 and all(s.steps is not None for s in cfg.stages)
    # A two-stage preset reads the same images as a one-stage one, its steps shared by its epochs.
    two = plan_runs(["unet"], data=None, preset="cpu", settings=settings, overrides=[
        "stages=[{name: heads, epochs: 1, lr: 0.01, layers: heads}, {name: all, epochs: 3, lr: 0.001}]"])[0][0]
    assert [s.steps for s in two.stages] == [5, 15] and planned_images(two) == 40


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_plan_does_not_depend_on_the_order_of_names(order: list[int], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import yaml

    from zoo.compare import plan_runs
    from zoo.config import to_dict
    from zoo.train import api

    # Presets whose data sections differ: the unet preset reads 96 px images, with its own seed.
    configs = Path(shutil.copytree(api.CONFIG_DIR, tmp_path / "configs"))
    unet = yaml.safe_load((configs / "unet.yaml").read_text())
    unet["data"]["max_size"], unet["seed"] = 96, 5
    (configs / "unet.yaml").write_text(yaml.safe_dump(unet))
    monkeypatch.setattr(api, "CONFIG_DIR", configs)
    names = ["unet", "maskrcnn", "yolact"]
    ref = {c.adapter: to_dict(c) for c in plan_runs(names, data=None, preset="cpu", overrides=[])[0]}
    cfgs, _ = plan_runs([names[i] for i in order], data=None, preset="cpu", overrides=[])
    assert {c.adapter: to_dict(c) for c in cfgs} == ref
    assert {c.data.max_size for c in cfgs} == {128}  # the cpu preset's size, not the first model's


@pytest.mark.parametrize("size", [96, 160])
def test_plan_gives_every_network_the_same_input_size(size: int) -> None:
    from zoo.adapter import get_adapter
    from zoo.compare import plan_runs

    names = COMPARED
    cfgs, notes = plan_runs(names, data=None, preset="cpu", overrides=[], size=size)
    assert plan_runs(names, data=None, preset="cpu", overrides=[f"data.max_size={size}"])[0] == cfgs
    for cfg in cfgs:
        fields = get_adapter(cfg.adapter).input_size_fields
        assert fields, f"{cfg.adapter} declares no input_size_fields: compare cannot give it the shared size"
        assert cfg.data.max_size == size and {getattr(cfg.model, f) for f in fields} == {size}
        own = plan_runs([cfg.adapter], data=None, preset="cpu", overrides=[])[0][0]
        differed = any(getattr(own.model, f) != size for f in fields)
        assert differed == any(n.startswith(f"{cfg.adapter}: network input") for n in notes)


def test_a_second_compare_reuses_completed_runs(compared: Path, capsys: pytest.CaptureFixture) -> None:
    from rich.console import Console

    from zoo.compare import plan_runs, split_overrides, train_or_reuse

    data = compared.parent / "tiny"
    run_overrides, settings = split_overrides([v for k, v in zip(TINY, TINY[1:]) if k == "--set"])
    cfgs, _ = plan_runs(COMPARED, data=str(data), preset="cpu", overrides=run_overrides, settings=settings)
    for cfg in cfgs:
        run = run_dir(compared, cfg.adapter)
        before = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
        assert train_or_reuse(cfg, run, Console(stderr=True)) == run
        assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == before  # not retrained
    assert capsys.readouterr().err.count("reusing the completed run") == len(cfgs)


def test_every_run_gets_the_same_fixed_share_of_the_wall_clock_budget() -> None:
    from zoo.compare_train import RESERVE_PER_MODEL_S, RESERVE_S, run_share_s

    assert run_share_s(None, 0.0, 3) is None
    assert run_share_s(600.0, 20.0, 3) == pytest.approx((600 - 20 - RESERVE_S - 3 * RESERVE_PER_MODEL_S) / 3)
    assert run_share_s(60.0, 50.0, 3) == 0.0  # spent: every run stops after its first step


def test_a_run_cut_by_the_clock_is_noted_and_resumed_not_reused_later(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    import time

    from rich.console import Console

    from zoo.compare import plan_runs, split_overrides, train_or_reuse
    from zoo.compare_train import cut_note
    from zoo.data.synth import write_synthetic
    from zoo.train.logger import read_metrics

    data = write_synthetic(tmp_path / "tiny", n=12, size=64, seed=3)
    run_overrides, settings = split_overrides([v for k, v in zip(TINY, TINY[1:]) if k == "--set"] +
                                              ["compare.images=6"])
    cfg = plan_runs(["unet"], data=str(data), preset="cpu", overrides=run_overrides, settings=settings)[0][0]
    run = train_or_reuse(cfg, tmp_path / "unet", Console(stderr=True), deadline=time.perf_counter())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_reason"] == "stopped by request" and summary["global_step"] == 1
    assert (run / "checkpoints" / "last.pt").is_file()
    # Validated once more where it was cut, so selection saw the weights it ends with.
    cut_rows = [r for r in read_metrics(run / "metrics.csv") if r["kind"] == "cut"]
    assert [r["step"] for r in cut_rows] == ["1"] and cut_rows[0]["segm_AP"] != ""
    assert (run / "checkpoints" / "best.pt").is_file()
    assert cut_note(cfg, run) == ("unet seed 0: cut by the time budget (compare.budget_minutes) after 2 training "
                                  "images of 6 planned (33 %), step 1 of 3; its schedule did not finish")
    # A later comparison with room to finish (no deadline) continues the run to its planned end.
    train_or_reuse(cfg, run, Console(stderr=True), deadline=None)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_reason"] == "completed" and summary["images_seen"] == 6
    assert "resuming the run" in capsys.readouterr().err and cut_note(cfg, run) is None


@pytest.fixture(scope="module")
def reordered(compared: Path) -> Path:
    """The same comparison with the names in another order, and two training seeds per model."""
    root = compared.parent
    proc = zoo("compare", "yolact", "unet", "maskrcnn", "--data", str(root / "tiny"), "--out", str(root / "reordered"),
               "--report", "md", *TINY, "--set", "compare.seeds=2", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "reordered"


def test_the_order_of_names_changes_neither_configs_nor_numbers(compared: Path, reordered: Path) -> None:
    for name in COMPARED:
        assert (run_dir(reordered, name) / "config.yaml").read_text() == (run_dir(compared, name) / "config.yaml").read_text()
        assert (run_dir(reordered, name) / "split.json").read_text() == (run_dir(compared, name) / "split.json").read_text()
        a, b = (json.loads((d / "models" / name / "metrics.json").read_text()) for d in (compared, reordered))
        for key in ("segm", "bbox", "per_category", "semantic"):
            assert a[key] == b[key], (name, key)


def test_two_seeds_give_two_runs_per_model_and_a_std_column(reordered: Path) -> None:
    seeds = json.loads((reordered / "seeds.json").read_text())
    assert seeds["seeds"] == [0, 1] and seeds["split_seed"] == 0 and seeds["scored_on"] == "test"
    for name in COMPARED:
        first, second = run_dir(reordered, name, 0), run_dir(reordered, name, 1)
        assert (first / "split.json").read_text() == (second / "split.json").read_text()
        assert json.loads((second / "summary.json").read_text())["stopped_reason"] == "completed"
        entry = seeds["models"][name]
        assert entry["runs"] == [f"runs/{name}/seed0", f"runs/{name}/seed1"]
        ap0 = json.loads((reordered / "models" / name / "metrics.json").read_text())["segm"]["AP"]
        ap1 = json.loads((reordered / "seeds" / f"{name}-seed1" / "metrics.json").read_text())["segm"]["AP"]
        assert entry["segm_AP"] == [ap0, ap1]
        import statistics

        assert entry["std"]["segm_AP"] == pytest.approx(statistics.stdev([ap0, ap1]))
    rows = table_with(md_tables((reordered / "report.md").read_text()), "model", "seeds")
    assert {r["model"] for r in rows} == set(COMPARED)
    for r in rows:
        assert r["seeds"] == "2" and r["mask AP std"] == f"{seeds['models'][r['model']]['std']['segm_AP']:.3f}"
