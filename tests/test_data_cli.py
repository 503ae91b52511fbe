"""Every ``zoo data`` command as a real subprocess (``python -m cli``), plus the error contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def zoo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "zoo.cli", "data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "synth"
    result = zoo("synth", "--out", str(out), "--n", "4", "--size", "64", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return out


def test_synth_writes_an_imaterialist_folder(cli_synth: Path) -> None:
    assert (cli_synth / "train.csv").is_file() and (cli_synth / "label_descriptions.json").is_file()
    assert len(list((cli_synth / "train").glob("*.jpg"))) == 4
    assert json.loads((cli_synth / "synth.json").read_text())["seed"] == 3


def test_stats_prints_tables_and_writes_charts(cli_synth: Path, tmp_path: Path) -> None:
    result = zoo("stats", str(cli_synth), "--out", str(tmp_path / "charts"))
    assert result.returncode == 0, result.stderr
    assert "instances per category" in result.stdout and "masks per image" in result.stdout
    for name in ("category_counts.png", "image_sizes.png", "masks_per_image.png"):
        assert (tmp_path / "charts" / name).stat().st_size > 1000


def test_check_exits_non_zero_on_errors(cli_synth: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cli_synth, broken)
    next((broken / "train").glob("*.jpg")).unlink()
    result = zoo("check", str(broken))
    assert result.returncode == 1 and "missing image file" in result.stdout


def test_export_writes_coco(cli_synth: Path, tmp_path: Path) -> None:
    result = zoo("export", str(cli_synth), "--format", "coco", "--out", str(tmp_path / "x.json"), "--max-size", "32")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "x.json").read_text())
    assert len(doc["images"]) == 4 and {im["width"] for im in doc["images"]} == {32}
    assert doc["annotations"] and all("attribute_ids" in a for a in doc["annotations"])


def test_prepare_writes_a_cache(cli_synth: Path, tmp_path: Path) -> None:
    result = zoo("prepare", str(cli_synth), "--out", str(tmp_path / "cache"), "--max-size", "48", "--workers", "2")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "cache" / "zoo_cache.json").read_text())
    assert manifest["images"] == 4 and manifest["max_size"] == 48
    assert len(list((tmp_path / "cache" / "images").iterdir())) == 4


def test_in_process_clean_check_and_one_line_errors(cli_synth: Path, tmp_path: Path) -> None:
    from zoo.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["data", "check", str(cli_synth)]).exit_code == 0
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "missing: no such file or folder" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["data", "export", str(cli_synth), "--format", "yaml", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "unknown format 'yaml'" in result.output
