"""Typed, strict configuration: YAML in, dataclasses out, helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.adapter import available_adapters, get_adapter
from zoo.config import ConfigError, TrainConfig, apply_override, from_dict, train_config_from_dict
from zoo.train.api import CONFIG_DIR, load_train_config


def test_unknown_key_names_the_path_and_suggests():
    with pytest.raises(ConfigError, match=r"optim\.wieght_decay: unknown key \(did you mean 'weight_decay'\?\)"):
        from_dict(TrainConfig, {"optim": {"wieght_decay": 0.1}})


def test_wrong_type_and_literal_are_errors():
    with pytest.raises(ConfigError, match=r"batch_size: expected int"):
        from_dict(TrainConfig, {"batch_size": "two"})
    with pytest.raises(ConfigError, match=r"amp: 'fp8' is not one of"):
        from_dict(TrainConfig, {"amp": "fp8"})


def test_lists_become_tuples_and_stages_are_typed():
    cfg = from_dict(TrainConfig, {"stages": [{"name": "heads", "layers": "heads", "lr": 1}]})
    assert cfg.stages[0].lr == 1.0 and isinstance(cfg.stages, tuple)


def test_override_into_a_list_item():
    data = {"stages": [{"lr": 0.1}, {"lr": 0.2}]}
    apply_override(data, "stages.1.lr=3e-4")
    cfg = from_dict(TrainConfig, data)
    assert cfg.stages[1].lr == 3e-4  # `3e-4` is a string to PyYAML; float fields accept it
    with pytest.raises(ConfigError, match="no item '5'"):
        apply_override(data, "stages.5.lr=1")


@pytest.mark.parametrize("name", available_adapters())
def test_every_adapter_has_cpu_and_gpu_presets_that_parse(name):
    for preset in ("cpu", "gpu"):
        cfg = load_train_config(name, preset=preset)
        assert cfg.adapter == name and isinstance(cfg.model, get_adapter(name).config_cls)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_parses_strictly(path: Path):
    import yaml

    data = yaml.safe_load(path.read_text())
    cfg = train_config_from_dict(data, get_adapter(data["adapter"]).config_cls, f"{path.name}:")
    assert cfg.stages


@pytest.mark.parametrize("name", available_adapters())
def test_a_bare_yaml_off_is_the_word_off(name: str, tmp_path: Path) -> None:
    """YAML 1.1 reads ``attributes: off`` as false; the config takes it as the choice it spells."""
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  attributes: off\n")
    assert load_train_config(name, path).model.attributes == "off"
    assert load_train_config(name, overrides=["model.attributes=off"]).model.attributes == "off"
    with pytest.raises(ConfigError, match="model.attributes: True is not one of"):
        load_train_config(name, overrides=["model.attributes=on"])  # only "auto" and "off" exist
