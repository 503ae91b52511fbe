"""Frozen means frozen: after a ``heads`` stage, every parameter outside the heads and every
running statistic of their normalisation layers is bit-identical, for every registered adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _NormBase

import zoo.adapters  # noqa: F401  (fills the registry)
from zoo.adapter import available_adapters, get_adapter, trainable_groups
from zoo.data.dataset import open_dataset
from zoo.data.split import split_three
from zoo.train.api import load_train_config
from zoo.train.distributed import DistInfo
from zoo.train.loop import Trainer

HEADS_STAGE = "stages=[{name: heads, epochs: 1, steps: 2, lr: 0.01, layers: heads}]"


def frozen_tensors(adapter: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters outside the heads and the buffers of norms holding only those."""
    frozen = {id(p) for g, ps in adapter.param_groups().items() if g not in trainable_groups("heads") for p in ps}
    out = {n: p.detach().clone() for n, p in adapter.named_parameters() if id(p) in frozen}
    for name, m in adapter.named_modules():
        own = list(m.parameters(recurse=False))
        if isinstance(m, _NormBase) and m.track_running_stats and own and all(id(p) in frozen for p in own):
            out.update({f"{name}.{b}": t.detach().clone() for b, t in m.named_buffers(recurse=False)})
    return out


@pytest.mark.parametrize("name", available_adapters())
def test_a_heads_stage_leaves_frozen_groups_and_their_norm_statistics_unchanged(name: str, tmp_path: Path) -> None:
    from zoo.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "data", n=6, size=64, seed=1)
    cfg = load_train_config(name, overrides=[f"data.source={data}", "data.max_size=64", "batch_size=2",
                                             "device=cpu", "eval_limit=1", HEADS_STAGE])
    from zoo.compare_plan import with_input_size

    cfg, _ = with_input_size(cfg, 64)
    dataset = open_dataset(cfg.data)
    split = split_three(dataset.label_sets(), 0.2, 0.0, 0)
    torch.manual_seed(0)
    adapter = get_adapter(name)(cfg.model, len(dataset.categories))
    before = frozen_tensors(adapter)
    norms = [k for k in before if k.endswith("running_mean")]
    assert norms, f"{name}: no normalisation layer with running statistics outside the heads to check"
    heads_before = {n: p.detach().clone() for n, p in adapter.named_parameters() if n not in before}
    Trainer(cfg, adapter, dataset, split, tmp_path / "run", torch.device("cpu"), DistInfo()).run()
    after = frozen_tensors(adapter)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"{name}: {len(changed)} frozen tensors changed, e.g. {changed[:3]}"
    # The stage did train: the heads moved.
    assert any(not torch.equal(p, dict(adapter.named_parameters())[n]) for n, p in heads_before.items())
