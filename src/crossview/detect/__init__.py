"""Detectors: one ``Detector`` protocol; ONNX (YOLOX, YOLOv8/11 heads) and motion for fixed cameras."""

from crossview.detect.base import Detector

__all__ = ["Detector"]
