"""zoo: train, evaluate and compare instance-segmentation models on fashion photos."""

__version__ = "0.1.0"
