"""Architectures. Each module registers one adapter; importing this package registers them all."""
from zoo.adapters import unet  # noqa: F401
from zoo.adapters import yolact  # noqa: F401
from zoo.adapters import maskrcnn  # noqa: F401
