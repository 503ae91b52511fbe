"""YOLACT-style instance segmentation (prototypes x coefficients, Fast NMS); registers ``yolact``."""

from zoo.adapters.yolact.adapter import YolactAdapter, YolactConfig

__all__ = ["YolactAdapter", "YolactConfig"]
