"""Build adapters by name, with their default or overridden model config."""

from __future__ import annotations

import dataclasses
from typing import Any

from zoo.adapter import Adapter, available_adapters, get_adapter
from zoo.config import from_dict, to_dict

# iMaterialist 2019 has 46 categories; a freshly built model for benchmarks uses that count.
DEFAULT_NUM_CLASSES = 46


def model_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The adapter's config dataclass with ``overrides`` applied strictly (unknown key = error)."""
    cls = get_adapter(name).config_cls
    base = to_dict(cls())
    base.update(overrides or {})
    return from_dict(cls, base, "model")


def build_adapter(name: str, overrides: dict[str, Any] | None = None,
                  num_classes: int = DEFAULT_NUM_CLASSES) -> Adapter:
    """A freshly initialised adapter ``name`` (random weights unless the config names a file)."""
    return get_adapter(name)(model_config(name, overrides), num_classes)


def print_adapters() -> None:
    """`zoo list`: every registered adapter with its default model config."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="registered adapters")
    table.add_column("name")
    table.add_column("kind")
    table.add_column("default model config")
    for name in available_adapters():
        cls = get_adapter(name)
        cfg = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cls.config_cls()).items())
        table.add_row(name, "instance" if cls.instance_native else "semantic -> instances", cfg)
    Console().print(table)
