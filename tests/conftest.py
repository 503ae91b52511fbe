"""Shared fixtures. Importing ``adapters`` fills the registry, as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo.adapters  # noqa: F401  (registers every adapter)

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def shared_fixture_path(*parts: str) -> Path:
    """A file under ``../shared/fixtures`` (real public data), or skip when it is absent."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real-data fixture {path} is absent (../shared is not part of a fresh clone)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset (12 images of 128 px) in the iMaterialist 2019 layout."""
    from zoo.data.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth"), n=12, size=128, seed=0)


@pytest.fixture
def shared_fixtures() -> Path:
    """``../shared/fixtures`` (real public data), or skip the test when it is absent."""
    return shared_fixture_path()


def imaterialist_rows(tmp_path: Path) -> Path:
    """The 28 real iMaterialist 2019 rows as a dataset folder (the JPEGs themselves are not public
    here), or skip when ``../shared`` is absent."""
    import shutil

    fixture = shared_fixture_path("imaterialist2019")
    folder = tmp_path / "imat"
    folder.mkdir()
    shutil.copy(fixture / "train_rows_prefix.csv", folder / "train.csv")
    shutil.copy(fixture / "label_descriptions.json", folder / "label_descriptions.json")
    return folder


class OpNames:
    """Records the name of every operator dispatched inside ``with OpNames() as ops`` in
    ``ops.names`` (e.g. ``torchvision.nms.default``)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        names: list[str] = []

        class _Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                names.append(str(func))
                return func(*args, **(kwargs or {}))

        self.names, self._mode = names, _Recorder()

    def __enter__(self) -> "OpNames":
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)


def write_imaterialist_folder(folder: Path, images: list[dict]) -> Path:
    """Write a hand-built iMaterialist 2019 folder.

    Each item of ``images``: ``name``, ``pixels`` uint8 ``[H, W, 3]`` (saved as JPEG), ``masks`` a
    list of ``(mask [h, w] bool, ClassId str)`` encoded on the grid ``csv_hw`` (default the image's
    size); an item without masks gets one row with an empty EncodedPixels.
    """
    import csv
    import json

    from PIL import Image

    from zoo.data.rle import encode_kaggle_rle
    from zoo.data.synth import label_descriptions

    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "label_descriptions.json").write_text(json.dumps(label_descriptions()))
    with open(folder / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])
        for item in images:
            Image.fromarray(item["pixels"]).save(folder / "train" / item["name"], quality=95)
            h, w = item.get("csv_hw", item["pixels"].shape[:2])
            for mask, class_id in item["masks"]:
                writer.writerow([item["name"], encode_kaggle_rle(mask), h, w, class_id])
            if not item["masks"]:
                writer.writerow([item["name"], "", h, w, ""])
    return folder


@pytest.fixture
def imat_writer():
    """:func:`write_imaterialist_folder`, as a fixture for tests that build odd datasets."""
    return write_imaterialist_folder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--recipe-set", action="append", default=[], metavar="KEY=VALUE",
                     help="an override added last to the attribute and Mask R-CNN learning tests' training recipes, "
                          "to measure another setting with them (benchmarks/attribute_weight_probe.py)")


@pytest.fixture
def recipe_overrides(request: pytest.FixtureRequest) -> list[str]:
    """``--recipe-set`` overrides (none in a plain run: the tests then train their own recipe)."""
    return list(request.config.getoption("--recipe-set"))
