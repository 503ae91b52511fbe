"""Architectures. Each module registers one adapter; importing this package registers them all."""
from adapters import unet  # noqa: F401
from adapters import yolact  # noqa: F401
from adapters import maskrcnn  # noqa: F401
