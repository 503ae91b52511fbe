"""The test split is read by nothing but scoring: not by training steps, not by selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.data.dataset import open_dataset
from zoo.data.split import split_indices, split_three
from zoo.train.api import _prepare_run, _write_run_header, load_train_config
from zoo.train.distributed import DistInfo
from zoo.train.loop import Trainer


class ReadLog(torch.utils.data.Dataset):
    """A dataset that records every index read from it (training and validation read items)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.read = dataset, []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        self.read.append(int(index))
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:  # categories, label_sets, image_ids, ...
        return getattr(self.__dict__["dataset"], name)


def test_training_and_selection_never_read_a_test_image(tmp_path: Path) -> None:
    from zoo.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "data", n=15, size=64, seed=2)
    cfg = load_train_config("unet", overrides=[f"data.source={data}", "data.max_size=64", "data.test_fraction=0.2",
                                               "device=cpu", "eval_limit=null", "best_metric=segm_AP",
                                               "stages=[{name: all, epochs: 2, steps: 8, lr: 0.002}]"])
    dataset, split = _prepare_run(cfg, DistInfo())
    _write_run_header(cfg, tmp_path / "run", dataset, split)
    on_disk = json.loads((tmp_path / "run" / "split.json").read_text())
    train, val, test = (set(on_disk[k]) for k in ("train", "val", "test"))
    assert test and val and not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(len(dataset)))
    assert on_disk["test_image_ids"] == [dataset.image_ids[i] for i in on_disk["test"]]
    logged = ReadLog(dataset)
    summary = Trainer(cfg, get_adapter_for(cfg, dataset), logged, split, tmp_path / "run", torch.device("cpu"),
                      DistInfo()).run()
    assert summary["images_seen"] == 16 and summary["global_step"] == summary["planned_steps"] == 8
    read = set(logged.read)
    assert not read & test, f"test images read during training or selection: {sorted(read & test)}"
    assert read & train and val <= read  # steps read training images; selection read every val image


def get_adapter_for(cfg: Any, dataset: Any) -> Any:
    from zoo.adapter import get_adapter

    return get_adapter(cfg.adapter)(cfg.model, len(dataset.categories))


def test_without_a_test_fraction_the_split_is_the_two_way_split_of_older_runs() -> None:
    sets = [{i % 4, 5} for i in range(40)]
    train, val = split_indices(sets, 0.2, 3)
    assert split_three(sets, 0.2, 0.0, 3) == {"train": train, "val": val, "test": []}
    three = split_three(sets, 0.2, 0.2, 3)
    assert (len(three["train"]), len(three["val"]), len(three["test"])) == (24, 8, 8)


def test_a_two_way_run_folder_still_loads(tmp_path: Path) -> None:
    from zoo.config import dump_yaml
    from zoo.data.synth import write_synthetic
    from zoo.train.run import load_run

    data = write_synthetic(tmp_path / "data", n=6, size=64, seed=2)
    cfg = load_train_config("unet", overrides=[f"data.source={data}", "data.max_size=64", "device=cpu"])
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    dump_yaml(cfg, run / "config.yaml")
    (run / "split.json").write_text(json.dumps({"method": "stratified", "seed": 0, "train": [0, 1, 2, 3, 4],
                                                "val": [5]}))
    adapter = get_adapter_for(cfg, open_dataset(cfg.data))
    torch.save(adapter.state_dict(), run / "checkpoints" / "last.pt")
    loaded = load_run(run)
    assert loaded.split == {"train": [0, 1, 2, 3, 4], "val": [5], "test": []}
