"""The dataset index gives exactly the records, errors and counted skips of the record readers."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import imaterialist_rows, shared_fixture_path
from zoo.data.index import IndexedRecords, index_coco, index_imaterialist, index_location, read_meta
from zoo.data.rle import encode_kaggle_rle
from zoo.data.sources import Source, read_coco, read_imaterialist
from zoo.errors import DataError

LABELS = Path(__file__).resolve().parents[1] / "zoo" / "data" / "label_descriptions.json"


class Collect:
    """A collecting report (as ``zoo data check`` uses): every defect, none raised."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, kind: str, message: str) -> None:
        self.items.append((kind, message))


def assert_same(expected: Source, got: Source) -> None:
    assert isinstance(got.records, IndexedRecords)
    assert (got.kind, got.path, got.rle_base, got.skipped) == (expected.kind, expected.path, expected.rle_base,
                                                               expected.skipped)
    assert got.categories == expected.categories and got.attributes == expected.attributes
    assert len(got.records) == len(expected.records)
    assert list(got.records) == list(expected.records)  # names, paths, sizes, ids, every instance field
    for i, record in enumerate(expected.records):
        assert got.records.category_ids(i).tolist() == [inst.category_id for inst in record.instances]


def write_csv(folder: Path, rows: list[tuple[str, str, int, int, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(LABELS, folder / "label_descriptions.json")
    lines = ["ImageId,EncodedPixels,Height,Width,ClassId"] + [",".join(map(str, r)) for r in rows]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder


def touching_rows() -> list[tuple[str, str, int, int, str]]:
    """Masks whose runs touch (end of one run = start of the next, across columns), interleaved
    images, an image without masks, a repeated row and attribute suffixes."""
    h, w = 6, 5
    a = np.zeros((h, w), bool)
    a[2:, 1:3] = True  # column runs that touch down the column boundary
    b = np.zeros((h, w), bool)
    b[:, 3] = True
    b[0, 4] = True  # the run of column 3 ends where column 4's starts: one merged run
    c = np.zeros((4, 4), bool)
    c[:] = True  # one run over the whole image
    return [
        ("a.jpg", encode_kaggle_rle(a), h, w, "1_3_20"),
        ("c.jpg", encode_kaggle_rle(c), 4, 4, "6"),
        ("a.jpg", encode_kaggle_rle(b), h, w, "31"),
        ("empty.jpg", "", 9, 7, ""),
        ("a.jpg", encode_kaggle_rle(a), h, w, "1_3_20"),  # a repeated row: left out, counted
        ("c.jpg", "1 2 3 4", 4, 4, "10_0"),  # two runs that touch (pixels 1-2 and 3-6)
    ]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))


def test_synthetic_dataset(synth_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "synth"
    shutil.copytree(synth_dir, folder)
    expected = read_imaterialist(folder)
    first = index_imaterialist(folder, rle_base=expected.rle_base)
    assert_same(expected, first)
    assert (folder / ".zoo-index" / "train.csv" / "meta.json").is_file()  # written beside the data
    assert (folder / ".zoo-index" / "train.csv").stat().st_mode & 0o005 == 0o005  # other users may read it
    assert_same(expected, index_imaterialist(folder, rle_base=expected.rle_base))  # mapped, not rebuilt


def test_real_imaterialist_rows(tmp_path: Path) -> None:
    folder = imaterialist_rows(tmp_path)
    expected = read_imaterialist(folder)
    assert_same(expected, index_imaterialist(folder, rle_base=expected.rle_base))


def test_generated_csv_with_touching_runs(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "touch", touching_rows())
    expected = read_imaterialist(folder)
    assert expected.skipped == {"duplicate row": 1} and [r.name for r in expected.records] == ["a.jpg", "c.jpg",
                                                                                             "empty.jpg"]
    got = index_imaterialist(folder, rle_base=1)
    assert_same(expected, got)
    assert [len(r.instances) for r in got.records] == [2, 2, 0]
    assert got.records[0].instances[1].where.endswith("train.csv row 4")


@pytest.mark.parametrize("rows, needle", [
    ([("a.jpg", "1 3", 4, 4, "1"), ("a.jpg", "5 2", 4, 5, "1")], "is 4x5 here but 4x4"),
    ([("a.jpg", "1 3", 4, 4, "999")], "category 999 is not in the label file"),
    ([("a.jpg", "1 3", 4, 4, "1_500")], "attribute 500 is not in the label file"),
    ([("a.jpg", "1 3", 0, 4, "1")], "must be positive integers"),
    ([("../a.jpg", "1 3", 4, 4, "1")], "escapes the image folder"),
    ([("a.jpg", "1 3", 4, 4, "x_1")], "is not category[_attribute...] integers"),
    ([], "no rows"),
])
def test_bad_rows_fail_with_the_readers_message(tmp_path: Path, rows: list, needle: str) -> None:
    folder = write_csv(tmp_path / "bad", rows)
    with pytest.raises(DataError) as expected:
        read_imaterialist(folder)
    with pytest.raises(DataError) as got:
        index_imaterialist(folder, rle_base=1)
    assert needle in str(expected.value) and str(got.value) == str(expected.value)
    assert read_meta(index_location(folder / "train.csv")) is None  # nothing half-built is left as an index


def test_a_collecting_report_gets_every_defect(tmp_path: Path) -> None:
    rows = touching_rows() + [("a.jpg", "1 3", 4, 4, "1"), ("d.jpg", "", 3, 3, "7"), ("e.jpg", "1 2", 5, 5, "77")]
    folder = write_csv(tmp_path / "many", rows)
    expected, got = Collect(), Collect()
    reference = read_imaterialist(folder, report=expected)
    indexed = index_imaterialist(folder, rle_base=1, report=got)
    assert got.items == expected.items and len(expected.items) == 4
    assert list(indexed.records) == list(reference.records)
    assert not index_location(folder / "train.csv").exists()  # a checked dataset is not indexed for later


def test_header_errors_match(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "hdr", [])
    (folder / "train.csv").write_text("ImageId,EncodedPixels,Height\na.jpg,1 2,4\n")
    with pytest.raises(DataError, match="missing column.*Width, ClassId"):
        index_imaterialist(folder, rle_base=1)
    (folder / "train.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        index_imaterialist(folder, rle_base=1)


def test_changed_source_is_rebuilt(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "chg", touching_rows())
    csv = folder / "train.csv"
    assert len(index_imaterialist(folder, rle_base=1).records) == 3
    stamp = read_meta(index_location(csv))["stamps"][0]
    csv.write_text(csv.read_text() + "new.jpg,1 2,4 ,4,1\n".replace(" ,", ","))
    got = index_imaterialist(folder, rle_base=1)
    assert [r.name for r in got.records][-1] == "new.jpg"
    assert read_meta(index_location(csv))["stamps"][0] != stamp
    # Same size and mtime, other bytes: the sampled hash sees it.
    text = csv.read_text()
    before = csv.stat()
    csv.write_text(text.replace("new.jpg", "old.jpg"))
    os.utime(csv, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [r.name for r in index_imaterialist(folder, rle_base=1).records][-1] == "old.jpg"
    # The label file is part of the stamp too: a category removed there is an error now.
    labels = json.loads((folder / "label_descriptions.json").read_text())
    labels["categories"] = [c for c in labels["categories"] if c["id"] != 31]
    (folder / "label_descriptions.json").write_text(json.dumps(labels))
    with pytest.raises(DataError, match="category 31 is not in the label file"):
        index_imaterialist(folder, rle_base=1)


@pytest.mark.parametrize("fixture, file", [("fashionpedia-sample", "sample.json"), ("ccp-sample", "annotations.json")])
def test_coco_fixture_sources(tmp_path: Path, fixture: str, file: str) -> None:
    folder = shared_fixture_path(fixture)
    path = tmp_path / file
    shutil.copy(folder / file, path)
    expected = read_coco(path, images=str(folder / "images"))
    assert_same(expected, index_coco(path, images=str(folder / "images")))


def test_coco_with_crowd_bbox_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "coco.json"
    doc = {"images": [{"id": 7, "file_name": "x.jpg", "height": 4, "width": 5},
                      {"id": 3, "file_name": "y.jpg", "height": 2, "width": 2}],
           "categories": [{"id": 2, "name": "b"}, {"id": 1, "name": "a", "supercategory": "s"}],
           "attributes": [{"id": 10, "name": "p"}],
           "annotations": [
               {"id": 5, "image_id": 7, "category_id": 2, "segmentation": [[0, 0, 3, 0, 3, 3]], "area": 4.5,
                "bbox": [0, 0, 3, 3], "attribute_ids": [10]},
               {"id": 6, "image_id": 7, "category_id": 1, "iscrowd": 1,
                "segmentation": {"size": [4, 5], "counts": [2, 3, 15]}},
               {"image_id": 3, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]}]}
    path.write_text(json.dumps(doc))
    expected = read_coco(path)
    got = index_coco(path)
    assert_same(expected, got)
    assert got.skipped == {"crowd annotation": 1} and got.records[0].crowd[0].ann_id == 6
    assert got.records[1].instances[0].ann_id is None and got.records[0].instances[0].bbox == [0.0, 0.0, 3.0, 3.0]


def test_prepare_cache_reads_the_same(synth_dir: Path, tmp_path: Path) -> None:
    from zoo.data.prepare import prepare_cache
    from zoo.data.sources import CACHE_ANNOTATIONS

    cache = prepare_cache(synth_dir, tmp_path / "cache", max_size=64, workers=1)
    expected = read_coco(cache / CACHE_ANNOTATIONS, images=str(cache / "images"), kind="cache")
    got = index_coco(cache / CACHE_ANNOTATIONS, images=str(cache / "images"), kind="cache")
    assert_same(expected, got)
    assert (cache / ".zoo-index" / CACHE_ANNOTATIONS / "meta.json").is_file()  # the index lives in the cache


def test_records_pickle_as_paths_and_subset(synth_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "synth"
    shutil.copytree(synth_dir, folder)
    source = index_imaterialist(folder, rle_base=1)
    blob = pickle.dumps(source.records)
    assert len(blob) < 2000  # paths and positions, not the records
    again = pickle.loads(blob)
    assert list(again) == list(source.records)
    picked = source.records.take([5, 2])
    assert [r.name for r in picked] == [source.records[5].name, source.records[2].name]
    assert [r.name for r in source.records[3:5]] == [source.records[3].name, source.records[4].name]


def test_read_only_data_folder_indexes_under_zoo_home(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "ro", touching_rows())
    folder.chmod(0o555)  # read-only, as a shared dataset mount (root may still write: zoo must not)
    try:
        location = index_location(folder / "train.csv")
        assert location.is_relative_to(tmp_path / "home" / "index")
        assert_same(read_imaterialist(folder), index_imaterialist(folder, rle_base=1))
        assert read_meta(location) is not None and not (folder / ".zoo-index").exists()
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------- workers and ranks share it
class PidItems:
    """``dataset[(index, epoch)]``: the worker's pid and the item (no records: no masks counted)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, item: tuple[int, int]) -> tuple[int, dict]:
        return os.getpid(), {"item": item}


def test_training_loader_keeps_its_workers_across_epochs() -> None:
    from zoo.train.loader import EpochLoaders, EpochSampler

    loaders = EpochLoaders(batch_size=2, workers=2, pin=False, max_side=64)
    seen = []
    for epoch in range(2):
        sampler = EpochSampler(list(range(10)), seed=3, epoch=epoch)
        loader = loaders.loader(True, PidItems, sampler, seed=epoch)
        batches = list(loader)
        assert [t["item"] for _, targets in batches for t in targets] == sampler.items
        seen.append((loader, {pid for pids, _ in batches for pid in pids}))
    assert seen[0][0] is seen[1][0] and seen[0][1] == seen[1][1] and len(seen[0][1]) == 2  # same workers
    assert os.getpid() not in seen[0][1]
    other = loaders.loader(False, PidItems, EpochSampler(list(range(10)), seed=3, epoch=2), seed=2)
    assert other is not seen[0][0]  # another view (augmentation off): new workers
    loaders.close()


def test_shared_memory_too_small_fails_before_training(tmp_path: Path) -> None:
    from zoo.errors import UserError
    from zoo.train.loader import check_shared_memory, shared_memory_need

    assert shared_memory_need(16, 8, 1024, 20) == 16 * 2 * 8 * 1024 * 1024 * 32
    free = shutil.disk_usage(tmp_path).free
    side = int((free / (2 * 2 * 2 * 13)) ** 0.5) + 64  # 2 workers, batch 2, 1 mask: just over what is free
    with pytest.raises(UserError, match=r"--shm-size=\d+g.*lower data.workers") as err:
        check_shared_memory(2, 2, side, 1.0, shm=str(tmp_path))
    assert "\n" not in str(err.value) and f"{side} px" in str(err.value)
    check_shared_memory(2, 2, side - 128, 1.0, shm=str(tmp_path))  # fits: nothing raised
    check_shared_memory(0, 2, side * 10, 1.0, shm=str(tmp_path))  # no workers: no shared memory used


def test_instance_counts_from_the_index(tmp_path: Path) -> None:
    from zoo.data.dataset import InstanceDataset
    from zoo.data.decode import ResizeSpec
    from zoo.train.loader import instance_counts

    folder = write_csv(tmp_path / "counts", touching_rows())
    source = index_imaterialist(folder, rle_base=1)
    assert source.records.instance_counts().tolist() == [2, 2, 0]
    assert instance_counts(InstanceDataset(source, ResizeSpec(64, "max_side"))).tolist() == [2, 2, 0]


def _rank_opens(rank: int, world: int, folder: str, port: int, queue) -> None:  # noqa: ANN001
    import time

    import torch.distributed as dist

    from zoo.train.distributed import DistInfo, local_leader_first

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    location = index_location(Path(folder) / "train.csv")
    with local_leader_first(DistInfo(rank=rank, world_size=world, local_rank=rank)):
        existed = read_meta(location) is not None
        if rank == 0:
            time.sleep(1.0)  # a slow build: the other rank must still wait for it
        source = index_imaterialist(Path(folder), rle_base=1)
    queue.put((rank, existed, len(source.records), read_meta(location)["stamps"][0]["mtime_ns"],
               (location / "meta.json").stat().st_mtime_ns))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_build_the_index_once_and_map_it(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as tmp

    folder = write_csv(tmp_path / "ddp", touching_rows())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = tmp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_opens, args=(r, 2, str(folder), port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[1] for r in results] == [False, True]  # rank 0 built it; rank 1 found it complete
    assert [r[2] for r in results] == [3, 3]
    assert results[0][4] == results[1][4]  # one meta.json: built once, not once per rank


def test_attribute_usage_from_the_index_equals_the_records(synth_dir: Path, tmp_path: Path) -> None:
    from zoo.data.index import record_attribute_usage

    folder = write_csv(tmp_path / "attrs", touching_rows())
    for source in (index_imaterialist(folder, rle_base=1), index_imaterialist(synth_dir, rle_base=1)):
        expected = record_attribute_usage(list(source.records))
        assert record_attribute_usage(source.records) == expected and expected[0]
        assert record_attribute_usage(source.records.take([1, 0])) == record_attribute_usage(
            [source.records[1], source.records[0]])
    assert record_attribute_usage(index_imaterialist(folder, rle_base=1).records) == ({1, 10}, {0, 3, 20})
