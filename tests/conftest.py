"""Shared fixtures. Importing ``adapters`` fills the registry, as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

import adapters  # noqa: F401  (registers every adapter)

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
