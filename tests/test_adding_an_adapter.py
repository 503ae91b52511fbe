"""README's "Adding an architecture", step by step: a throw-away adapter file, its two YAML presets
and its import make a model that passes the contract test and trains with `zoo train`.

The adapter is torchvision's LR-ASPP (MobileNetV3-Large), wrapped by hand on zoo's semantic path:
it supplies only its network and its parameter groups. Nothing outside the temporary folder
changes, and the registry is the same afterwards.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import textwrap
from pathlib import Path

import pytest

import test_adapter_contract as contract
import zoo.adapter
import zoo.train.api
from zoo.adapter import available_adapters, get_adapter, missing_capabilities
from zoo.build import build_adapter
from zoo.compare import CompareSettings

REPO = Path(__file__).resolve().parents[1]
NAME = "tv_lraspp"

ADAPTER_FILE = '''
"""torchvision's LR-ASPP segmentation network on zoo's semantic path."""

from __future__ import annotations

from dataclasses import dataclass

import torchvision
from torch import Tensor, nn

from zoo.adapter import register
from zoo.semantic import SemanticAdapter, SemanticConfig, backbone_groups


@dataclass(frozen=True)
class LrasppConfig(SemanticConfig):
    network: str = "lraspp_mobilenet_v3_large"  # a torchvision segmentation builder


class OutLogits(nn.Module):
    """torchvision segmentation models return ``{"out": logits}``; the semantic path wants the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]


@register("tv_lraspp")
class LrasppAdapter(SemanticAdapter):
    config_cls = LrasppConfig
    backbone_option = "network"

    def build_network(self) -> nn.Module:
        model = torchvision.models.get_model(self.cfg.network, weights=None, weights_backbone=None,
                                             num_classes=self.num_classes)
        return OutLogits(model)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.net.model.backbone)
'''

PRESET = '''
adapter: tv_lraspp
model:
  network: lraspp_mobilenet_v3_large
  input_size: null
  min_area: 4
data:
  max_size: {size}
optim:
  name: adamw
stages:
  - name: all
    epochs: 1
    lr: 0.001
    layers: all
batch_size: 2
'''


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def contract_checks() -> list:
    """The contract test's per-adapter checks (each takes a freshly built ``adapter``)."""
    return [fn for name, fn in vars(contract).items()
            if name.startswith("test_") and list(inspect.signature(fn).parameters) == ["adapter"]]


def test_readme_names_every_step_this_test_takes() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Adding an architecture"):]
    for step in ("@register(", "<name>.yaml", "<name>-gpu.yaml", "adapters/__init__.py", "SemanticAdapter",
                 "build_network()", "param_groups()", "compare.models"):
        assert step in section, step


def test_a_throw_away_adapter_file_passes_the_contract_and_trains(
        tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = textwrap.dedent(ADAPTER_FILE)
    assert code_lines(source) <= 80
    before = available_adapters()
    repo_files = sorted(p.name for d in ("adapters", "configs") for p in (REPO / d).iterdir())
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / f"{NAME}.py").write_text(source)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / f"{NAME}.yaml").write_text(PRESET.format(size=64))
    (configs / f"{NAME}-gpu.yaml").write_text(PRESET.format(size=512))
    with monkeypatch.context() as mp:
        mp.setattr(zoo.adapter, "_REGISTRY", dict(zoo.adapter._REGISTRY))  # restored on leaving
        mp.setattr(zoo.train.api, "CONFIG_DIR", configs)
        # What the import line in adapters/__init__.py does, for a file outside the package
        spec = importlib.util.spec_from_file_location(NAME, tmp_path / "pkg" / f"{NAME}.py")
        module = importlib.util.module_from_spec(spec)
        mp.setitem(sys.modules, NAME, module)
        spec.loader.exec_module(module)
        cls = get_adapter(NAME)
        assert available_adapters() == sorted(before + [NAME])
        assert missing_capabilities(cls) == []
        checks = contract_checks()
        assert len(checks) >= 5
        for check in checks:
            check(build_adapter(NAME, num_classes=contract.NUM_CLASSES))
        for preset in ("cpu", "gpu"):  # what tests/test_config.py asks of every adapter
            assert isinstance(zoo.train.api.load_train_config(NAME, preset=preset).model, cls.config_cls)
        run = tmp_path / "run"
        train_one_step(run, synth_dir)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["global_step"] == 1 and summary["final_loss"] is not None
        assert NAME not in CompareSettings().models  # `make demo` compares the same three
    assert available_adapters() == before and NAME not in sys.modules
    assert sorted(p.name for d in ("adapters", "configs") for p in (REPO / d).iterdir()) == repo_files


def train_one_step(run: Path, data: Path) -> None:
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["train", NAME, "--data", str(data), "--out", str(run), "--steps-per-epoch",
                                      "1", "--device", "cpu", "--set", "eval_limit=2"])
    assert result.exit_code == 0, result.output
