"""Bad input through the real CLI (``python -m cli`` as a subprocess): every case ends in exactly one
``error:`` line naming the file, row or key (exit 2), or in a counted skip printed in the output,
and never in a traceback, a crash or a silent change to the data.

Four kinds, one test each, parametrised over its cases: ordinary mistakes the CLI's error
boundary must turn into one line; data the readers used to change silently; values that
type-check but make no sense; and ``zoo data check`` agreeing with the readers.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from zoo.data.rle import encode_kaggle_rle, mask_to_coco_rle

REPO = Path(__file__).resolve().parents[1]
LABELS = {"categories": [{"id": 1, "name": "shirt"}, {"id": 2, "name": "pants"}],
          "attributes": [{"id": 10, "name": "plain"}]}
UNWRITABLE = Path("/sys/zoo-bad-input")  # a folder no process may create, root or not


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO),
           "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def assert_one_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, exactly one ``error:`` line, naming every string of ``names``; no traceback."""
    text = output(proc)
    assert "Traceback" not in text and proc.returncode >= 0, text[-3000:]  # < 0: killed by a signal
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, text[-3000:]
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def assert_counted(proc: subprocess.CompletedProcess, pattern: str) -> str:
    """Exit 0 with the count ``pattern`` (a regex) in the output; no traceback."""
    text = output(proc)
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]
    assert re.search(pattern, text), text[-3000:]
    return text


# ---------------------------------------------------------------- datasets
def blob(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def write_imat(folder: Path, rows: list[list], photos: dict[str, Callable[[Path], None]] | None = None,
               labels: dict | None = None) -> Path:
    """An iMaterialist folder: ``rows`` of train.csv (ImageId, EncodedPixels, Height, Width, ClassId)
    and a photo per ImageId (a 32x48 grey JPEG unless ``photos`` writes it)."""
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "label_descriptions.json").write_text(json.dumps(labels or LABELS))
    lines = ["ImageId,EncodedPixels,Height,Width,ClassId"] + [",".join(map(str, r)) for r in rows]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    for name in dict.fromkeys(r[0] for r in rows):
        write = (photos or {}).get(name)
        if write is not None:
            write(folder / "train" / name)
        else:
            Image.new("RGB", (48, 32), (90, 90, 90)).save(folder / "train" / name)
    return folder


def good_row(name: str = "a.jpg", h: int = 32, w: int = 48, class_id: str = "1") -> list:
    return [name, encode_kaggle_rle(blob(h, w, (4, 4, 20, 20))), h, w, class_id]


def write_coco(folder: Path, images: list, annotations, categories: list | None = None) -> Path:
    """A COCO file ``folder/data.json`` with a 32x48 JPEG ``images/<file_name>`` per image entry."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image in images:
        if isinstance(image, dict) and "file_name" in image:
            Image.new("RGB", (48, 32), (90, 90, 90)).save(folder / "images" / image["file_name"])
    doc = {"images": images, "annotations": annotations,
           "categories": categories or [{"id": 1, "name": "shirt"}]}
    path = folder / "data.json"
    path.write_text(json.dumps(doc))  # NaN stays NaN, as Python's json writes it
    return path


IMAGE = {"id": 1, "file_name": "a.jpg", "height": 32, "width": 48}
RLE = mask_to_coco_rle(blob(32, 48, (4, 4, 20, 20)))


def ann(**kw) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "segmentation": RLE, "iscrowd": 0, **kw}


def exif_photo(upright: np.ndarray, orientation: int = 6) -> Callable[[Path], None]:
    """Writes the JPEG a phone writes: the bitmap stored turned, with the EXIF orientation that
    turns it upright (6: rotate 90 degrees clockwise to display)."""
    def write(path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(path, exif=exif.tobytes(), quality=95)
    return write


def png16(value: int, h: int = 32, w: int = 48) -> Callable[[Path], None]:
    """Writes a 16-bit greyscale PNG of one value (0..65535)."""
    def write(path: Path) -> None:
        Image.fromarray(np.full((h, w), value, np.uint16)).save(path.with_suffix(".png"))
        path.with_suffix(".png").rename(path)
    return write


def bomb_png(path: Path, side: int = 20000) -> None:
    """A tiny PNG file whose header claims ``side x side`` pixels (over Pillow's bomb limit)."""
    buf = path.with_suffix(".tmp.png")
    Image.new("L", (1, 1)).save(buf)
    data = bytearray(buf.read_bytes())
    buf.unlink()
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", side, side)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- kind 1: ordinary mistakes
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unet run trained for one step on 4 synthetic images of 64 px."""
    from zoo.data.synth import write_synthetic
    from zoo.train.api import load_train_config, train

    root = tmp_path_factory.mktemp("bad-input-run")
    data = write_synthetic(root / "tiny", n=4, size=64, seed=1)
    overrides = {"data.source": str(data), "data.max_size": 64, "steps_per_epoch": 1, "batch_size": 2,
                 "eval_limit": 1, "device": "cpu", "stages": [{"name": "all", "epochs": 1, "lr": 0.01}]}
    cfg = load_train_config("unet", overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    return train(cfg, root / "run")


def _results_case(tmp: Path, rows: list) -> list[str]:
    gt = write_coco(tmp / "gt", [IMAGE], [ann()])
    (tmp / "results.json").write_text(json.dumps(rows))
    return ["eval", "--gt", str(gt), "--pred", str(tmp / "results.json")]


def _imat(t: Path) -> Path:
    return write_imat(t / "d", [good_row()])


def _coco_export(t: Path, images: list, annotations) -> list[str]:
    return ["data", "export", str(write_coco(t, images, annotations)), "--out", str(t / "o.json")]


# case -> (CLI arguments, what the one error line must name), built in a fresh folder
MISTAKES: dict[str, Callable[[Path], tuple[list[str], list[str]]]] = {
    # --out that is an existing file, or a folder that cannot be written
    "export --out is a folder": lambda t: (["data", "export", str(_imat(t)), "--out", str(t / "d")], [str(t / "d")]),
    "export --out under a file": lambda t: (["data", "export", str(_imat(t)), "--out",
                                             str(t / "d" / "train.csv" / "x.json")], [str(t / "d" / "train.csv")]),
    "export --out unwritable": lambda t: (["data", "export", str(_imat(t)), "--out", str(UNWRITABLE / "x.json")],
                                          [str(UNWRITABLE)]),
    "prepare --out is a file": lambda t: (["data", "prepare", str(_imat(t)), "--out", str(t / "d" / "train.csv"),
                                           "--workers", "1"], [str(t / "d" / "train.csv")]),
    "train --out is a file": lambda t: (["train", "unet", "--data", str(_imat(t)), "--out", str(t / "d" / "train.csv"),
                                         "--steps-per-epoch", "1", "--set", "data.max_size=32",
                                         "--set", "data.val_fraction=0.0"], [str(t / "d" / "train.csv")]),
    "train --config is a photo": lambda t: (["train", "unet", "--config", str(_imat(t) / "train" / "a.jpg")],
                                            [str(t / "d" / "train" / "a.jpg"), "not a YAML file"]),
    # COCO files of the wrong shape
    "annotations not a list": lambda t: (_coco_export(t, [IMAGE], {"0": ann()}),
                                         ["data.json", "'annotations' must be a list"]),
    "empty segmentation list": lambda t: (_coco_export(t, [IMAGE], [ann(segmentation=[])]),
                                          ["annotations[0] (id 1)", "empty list"]),
    "string polygon": lambda t: (_coco_export(t, [IMAGE], [ann(segmentation=[["1", "2", "3", "4", "5", "6"]])]),
                                 ["annotations[0] (id 1)", "'1'"]),
    # results files
    "results: NaN score": lambda t: (_results_case(t, [{"image_id": 1, "category_id": 1, "score": float("nan"),
                                                        "segmentation": RLE}]), ["results.json", "row 0", "score"]),
    "results: row not an object": lambda t: (_results_case(t, [5]), ["results.json", "row 0", "not an object"]),
    "results: a row without its mask": lambda t: (_results_case(t, [{"image_id": 1, "category_id": 1, "score": 0.9,
                                                                    "segmentation": RLE},
                                                                   {"image_id": 1, "category_id": 1, "score": 0.8,
                                                                    "bbox": [1, 1, 5, 5]}]),
                                                  ["results.json", "row 1", "segmentation"]),
    "results: boxes only": lambda t: (_results_case(t, [{"image_id": 1, "category_id": 1, "score": 0.9,
                                                         "bbox": [1, 1, 5, 5]}]), ["results.json", "row 0", "masks"]),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_ordinary_mistakes_are_one_error_line(case: str, tmp_path: Path) -> None:
    args, names = MISTAKES[case](tmp_path)
    assert_one_error(zoo(*args, cwd=tmp_path), *names)


def test_predict_skips_a_bomb_photo_and_refuses_an_out_file(run_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(photos / "good.jpg")
    bomb_png(photos / "bomb.png")
    out = tmp_path / "out"
    text = assert_counted(zoo("predict", str(run_dir), str(photos), "--out", str(out), cwd=tmp_path),
                          r"1 photos, \d+ instances, 1 skipped")
    assert "bomb.png" in text and "decompression bomb" in text
    assert [im["file_name"] for im in json.loads((out / "predictions.json").read_text())["images"]] == ["good.jpg"]
    assert_one_error(zoo("predict", str(run_dir), str(photos), "--out", str(photos / "good.jpg"), cwd=tmp_path),
                     str(photos / "good.jpg"))


def test_resume_removes_the_temp_file_of_a_killed_checkpoint_write(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    orphan = run / "checkpoints" / ".last.pt.k1ll3d"  # what save_atomic leaves when SIGKILLed mid-write
    orphan.write_bytes(b"half a checkpoint")
    proc = zoo("train", "unet", "--out", str(run), "--resume", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in output(proc), output(proc)[-3000:]
    assert not orphan.exists() and (run / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------- kind 2: no silent change to the data
def _export(t: Path, data: Path) -> subprocess.CompletedProcess:
    return zoo("data", "export", str(data), "--out", str(t / "o.json"), cwd=t)


def _prepare(t: Path, data: Path, max_size: int = 64) -> subprocess.CompletedProcess:
    return zoo("data", "prepare", str(data), "--out", str(t / "cache"), "--max-size", str(max_size),
               "--workers", "1", cwd=t)


def _cached(t: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The cached photo ``[H, W]`` (grey) and its first mask ``[H, W]`` bool, as a COCO tool reads them."""
    from pycocotools import mask as mask_util

    doc = json.loads((t / "cache" / "annotations.json").read_text())
    rle = doc["annotations"][0]["segmentation"]
    mask = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    return np.asarray(Image.open(t / "cache" / "images" / name).convert("L"), np.float64), mask


def exif_upright() -> tuple[np.ndarray, np.ndarray]:
    """An upright 64x32 photo with a bright garment at rows 8-28, columns 4-14, and its mask."""
    mask = blob(64, 32, (4, 8, 14, 28))
    photo = np.full((64, 32, 3), 30, np.uint8)
    photo[mask] = 230
    return photo, mask


def case_duplicate_image_id(t: Path) -> None:
    data = write_coco(t, [IMAGE, {**IMAGE, "file_name": "b.jpg"}], [ann()])
    assert_one_error(_export(t, data), "data.json images[1]", "id 1")


def case_rle_size_differs(t: Path) -> None:
    data = write_coco(t, [IMAGE], [ann(segmentation=mask_to_coco_rle(blob(10, 10, (1, 1, 5, 5))))])
    assert_one_error(_export(t, data), "annotations[0] (id 1)", "RLE size 10x10", "32x48")


def case_exif_rotated_photo_is_read_upright(t: Path) -> None:
    photo, mask = exif_upright()
    data = write_imat(t / "d", [["a.jpg", encode_kaggle_rle(mask), 64, 32, "1"]], {"a.jpg": exif_photo(photo)})
    assert _prepare(t, data).returncode == 0
    pixels, cached = _cached(t, "a.jpg")
    assert pixels.shape == (64, 32) and cached.shape == (64, 32)
    # The mask covers the garment (transposed, it covered 0 % of it).
    assert pixels[cached].mean() > 200 and pixels[~cached].mean() < 60


def case_16_bit_png_is_scaled(t: Path) -> None:
    data = write_imat(t / "d", [good_row("a.png")], {"a.png": png16(20000)})
    assert _prepare(t, data).returncode == 0
    pixels, _ = _cached(t, "a.png")
    assert np.allclose(pixels, round(20000 * 255 / 65535), atol=1)  # not saturated to 255


def case_rows_disagree_on_size(t: Path) -> None:
    rows = [good_row(), ["a.jpg", encode_kaggle_rle(blob(30, 48, (1, 1, 5, 5))), 30, 48, "2"]]
    assert_one_error(_export(t, write_imat(t / "d", rows)), "train.csv row 3", "30x48", "32x48")


def case_height_zero(t: Path) -> None:
    rows = [["a.jpg", "1 5", 0, 48, "1"]]
    assert_one_error(_export(t, write_imat(t / "d", rows)), "train.csv row 2", "Height/Width '0'/'48'")


def case_prepare_after_annotations_changed(t: Path) -> None:
    data = write_imat(t / "d", [good_row()])
    assert _prepare(t, data).returncode == 0
    (data / "train.csv").write_text((data / "train.csv").read_text().replace(",1\n", ",2\n"))
    assert_one_error(_prepare(t, data), str(t / "cache"), "annotations", "changed")


def case_crowd_annotations_are_counted(t: Path) -> None:
    crowd = ann(id=2, iscrowd=1, segmentation=mask_to_coco_rle(blob(32, 48, (30, 10, 40, 30))))
    assert_counted(_export(t, write_coco(t, [IMAGE], [ann(), crowd])), r"skipped: 1 crowd annotation\(s\)")
    assert len(json.loads((t / "o.json").read_text())["annotations"]) == 1


SILENT = {name.removeprefix("case_"): fn for name, fn in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(SILENT))
def test_no_silent_change_to_the_data(case: str, tmp_path: Path) -> None:
    SILENT[case](tmp_path)


# ---------------------------------------------------------------- kind 3: values that make no sense
def _empty_config(t: Path) -> str:
    (t / "empty.yaml").write_text("")
    return str(t / "empty.yaml")


NONSENSE: dict[str, Callable[[Path], tuple[list[str], list[str]]]] = {
    "stages.0.epochs=0": lambda t: (["train", "unet", "--set", "stages.0.epochs=0"], ["stages.0.epochs", "0"]),
    "--epochs -1": lambda t: (["train", "unet", "--epochs", "-1"], ["stages.0.epochs", "-1"]),
    "data.max_size=0": lambda t: (["train", "unet", "--set", "data.max_size=0"], ["data.max_size", "0"]),
    "optim.accumulate=0": lambda t: (["train", "unet", "--set", "optim.accumulate=0"], ["optim.accumulate"]),
    "batch_size=0": lambda t: (["train", "unet", "--set", "batch_size=0"], ["batch_size"]),
    "empty --config": lambda t: (["train", "unet", "--config", _empty_config(t)], ["empty.yaml", "empty"]),
    "bench --threads -3": lambda t: (["bench", "unet", "--threads", "-3"], ["--threads", "-3"]),
    "header and no rows": lambda t: (["data", "export", str(write_imat(t / "d", [])), "--out", str(t / "o.json")],
                                     ["train.csv", "no rows"]),
}


@pytest.mark.parametrize("case", sorted(NONSENSE))
def test_values_that_make_no_sense_are_refused(case: str, tmp_path: Path) -> None:
    args, names = NONSENSE[case](tmp_path)
    assert_one_error(zoo(*args, cwd=tmp_path), *names)


# ---------------------------------------------------------------- kind 4: check and the readers agree
# case -> (rows of train.csv, photos, the defect kind check prints, its level, what the reader prints);
# each case on its own image, so one `zoo data check` of all of them lists every kind.
CSV_CASES: dict[str, tuple[list[list], dict, str, str, list[str]]] = {
    "EXIF stored orientation": ([["exif.jpg", encode_kaggle_rle(exif_upright()[1].T), 32, 64, "1"]],
                                {"exif.jpg": exif_photo(exif_upright()[0])},
                                "annotation in the stored orientation of an EXIF-rotated photo", "error", ["exif.jpg"]),
    "annotation size is not the photo's": ([good_row("tall.jpg", h=40)], {}, "size mismatch", "error",
                                           ["tall.jpg", "40x48", "32x48"]),
    "run out of bounds": ([["oob.jpg", "1530 100", 32, 48, "1"]], {}, "run out of bounds", "error",
                          ["train.csv row 2"]),
    "unknown attribute": ([good_row("attr.jpg", class_id="1_99")], {}, "unknown attribute", "error",
                          ["train.csv row 2", "99"]),
    "duplicate row": ([good_row("dup.jpg"), good_row("dup.jpg")], {}, "duplicate row", "skipped",
                      [r"skipped: 1 duplicate row\(s\)"]),
    "16-bit PNG": ([good_row("deep.png")], {"deep.png": png16(20000)}, "16-bit image", "warning",
                   [r"wrote .*o\.json: 1 images, 1 annotations"]),
}
# case -> (images, annotations, categories added, kind, level, what the reader's error names)
COCO_CASES: dict[str, tuple[list, list, list, str, str, list[str]]] = {
    "NaN polygon": ([{**IMAGE, "id": 11, "file_name": "nan.jpg"}],
                    [ann(id=11, image_id=11, segmentation=[[1, 1, float("nan"), 1, 9, 9]])], [],
                    "bad polygon", "error", ["annotations[0] (id 11)", "nan"]),
    "negative bbox width": ([{**IMAGE, "id": 12, "file_name": "box.jpg"}], [ann(id=12, image_id=12, bbox=[4, 4, -16, 16])],
                            [], "bad bbox", "error", ["annotations[0] (id 12)", "negative width"]),
    "duplicate category id": ([IMAGE], [ann()], [{"id": 1, "name": "top"}], "duplicate category id", "error",
                              ["categories[1]", "id 1"]),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``zoo data check`` of one iMaterialist folder holding every CSV case and of one COCO file
    holding every COCO case: their output."""
    root = tmp_path_factory.mktemp("check-all")
    csv_data = write_imat(root / "imat", [r for rows, *_ in CSV_CASES.values() for r in rows],
                          {k: v for _, photos, *_ in CSV_CASES.values() for k, v in photos.items()})
    coco_data = write_coco(root / "coco", [im for ims, *_ in COCO_CASES.values() for im in ims],
                           [a for _, anns, *_ in COCO_CASES.values() for a in anns],
                           [{"id": 1, "name": "shirt"}] + [c for *_, cats, _, _, _ in COCO_CASES.values() for c in cats])
    texts = {}
    for fmt, data in (("csv", csv_data), ("coco", coco_data)):
        proc = zoo("data", "check", str(data), cwd=root)
        texts[fmt] = output(proc)
        assert proc.returncode == 1 and "Traceback" not in texts[fmt], texts[fmt][-3000:]
    return texts


@pytest.mark.parametrize("case", sorted(CSV_CASES) + sorted(COCO_CASES))
def test_check_and_the_readers_agree(case: str, checked: dict[str, str], tmp_path: Path) -> None:
    """What check calls an error the reader (``zoo data export``) refuses; what check lists as
    skipped or as a warning the reader leaves out and counts, or reads by its rule."""
    if case in CSV_CASES:
        rows, photos, kind, level, names = CSV_CASES[case]
        data, text = write_imat(tmp_path / "d", rows, photos), checked["csv"]
    else:
        images, annotations, categories, kind, level, names = COCO_CASES[case]
        data, text = write_coco(tmp_path, images, annotations, [{"id": 1, "name": "shirt"}] + categories), \
            checked["coco"]
    assert re.search(rf"{re.escape(kind)}[^│|\n]*[│|] {level} ", text), (kind, text[-3000:])
    if level == "error":
        assert_one_error(_export(tmp_path, data), *names)
    else:
        assert_counted(_export(tmp_path, data), names[0])
