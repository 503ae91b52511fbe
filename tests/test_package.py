"""zoo installs like a package: a wheel built from this checkout, installed in a fresh virtual
environment (which reuses this environment's torch and the rest through a .pth line, so nothing
is downloaded), has every module under the one name ``zoo``, its presets as package data, and
trains from outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("zoo", "adapters", "configs", "cli.py", "setup.py", "pyproject.toml", "README.md")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the checkout (the build leaves the checkout itself untouched)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         str(src), "-w", str(root / "dist")], cwd=root)
    (found,) = (root / "dist").glob("zoo-*.whl")
    return found


def test_wheel_holds_everything_under_zoo(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"zoo"}
    for module in ("zoo/cli.py", "zoo/adapters/__init__.py", "zoo/adapters/yolact/adapter.py",
                   "zoo/configs/maskrcnn.yaml", "zoo/configs/maskrcnn-study.yaml", "zoo/data/label_descriptions.json"):
        assert module in names, module
    presets = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("zoo/configs/") and n.endswith(".yaml")} == presets
    packages = {str(p.parent.relative_to(REPO)) for p in REPO.glob("zoo/**/__init__.py")}
    packages |= {"zoo/" + str(p.parent.relative_to(REPO)) for p in REPO.glob("adapters/**/__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names}  # no subpackage left out


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_lists_and_trains(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=tmp_path).stdout.strip())
    # torch, torchvision, timm, ...: this environment's, as a line in a .pth file (its own .pth
    # files, among them the editable install's finder, are not run from there).
    (site / "reuse_test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZOO_CONFIGS")}
    env.update(OMP_NUM_THREADS="1", ZOO_HOME=str(tmp_path / "zoo-home"))
    where = run([str(python), "-c", "import zoo, zoo.adapters, zoo.cli, zoo.train.api as a; "
                 "import importlib.util as u; print(zoo.__file__); print(a.CONFIG_DIR); "
                 "print(u.find_spec('adapters'), u.find_spec('cli'))"], cwd=tmp_path, env=env).stdout.split("\n")
    assert where[0].startswith(str(site)) and where[1].startswith(str(site)) and where[2] == "None None"
    zoo = str(venv / "bin" / "zoo")
    assert run([zoo, "--version"], cwd=tmp_path, env=env).stdout.strip() == f"zoo {version()}"
    listing = run([zoo, "list"], cwd=tmp_path, env=env).stdout
    assert all(name in listing for name in ("maskrcnn", "unet", "yolact"))
    run([zoo, "train", "maskrcnn", "--out", str(tmp_path / "run"), "--epochs", "1", "--steps-per-epoch", "2",
         "--device", "cpu", "--set", "eval_limit=2", "--set", "data.synth_n=6", "--set", "data.synth_size=64",
         "--set", "data.max_size=64"], cwd=tmp_path, env=env)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def version() -> str:
    import zoo

    return zoo.__version__
