"""Detectors by name: one visible table from a spec's prefix to a constructor.

A spec is ``"<name>"`` or ``"<name>:<argument>"``, e.g. ``"yolox:models/yolox_nano.onnx"``; the
constructor receives the argument (the text after the first colon, ``""`` when there is none)
and the keyword options, which fill the detector's typed config. Nothing registers itself:
to add a detector, add one line to ``DETECTORS``. Constructors import their module when
called, so reading this table loads no model runtime.

>>> sorted(DETECTORS)
['motion', 'yolo11', 'yolov8', 'yolox']
>>> parse_spec("yolox:/models/yolox_nano.onnx")
('yolox', '/models/yolox_nano.onnx')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from crossview.detect.base import Detector

DetectorMaker = Callable[..., Detector]
"""Builds a detector from a spec's argument (positional) and keyword options."""


def _yolox(model: str, **options: Any) -> Detector:
    from crossview.detect.onnx import OnnxDetectorConfig, YoloxDetector

    return YoloxDetector(_model_path(model, "yolox"), OnnxDetectorConfig(**options))


def _yolov8(model: str, **options: Any) -> Detector:
    from crossview.detect.onnx import YoloV8Config, YoloV8Detector

    return YoloV8Detector(_model_path(model, "yolov8"), YoloV8Config(**options))


def _motion(argument: str, **options: Any) -> Detector:
    from crossview.detect.motion import MotionConfig, MotionDetector

    if argument:
        raise ValueError(f"the motion detector takes no model, got 'motion:{argument}'")
    return MotionDetector(MotionConfig(**options))


DETECTORS: Final[Mapping[str, DetectorMaker]] = {
    "motion": _motion,
    "yolox": _yolox,
    "yolov8": _yolov8,
    "yolo11": _yolov8,  # same head as YOLOv8
}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"name:argument"`` to ``(name, argument)``; the name is lower-cased, the argument kept."""
    name, _, argument = spec.partition(":")
    return name.strip().lower(), argument


def make_detector(spec: str, **options: Any) -> Detector:
    """The detector a spec names, its config filled from ``options``.

    >>> make_detector("nonsense:x")
    Traceback (most recent call last):
    ...
    ValueError: unknown detector 'nonsense' in 'nonsense:x'; known: motion, yolo11, yolov8, yolox
    """
    name, argument = parse_spec(spec)
    maker = DETECTORS.get(name)
    if maker is None:
        raise ValueError(f"unknown detector {name!r} in {spec!r}; known: {', '.join(sorted(DETECTORS))}")
    return maker(argument, **options)


def _model_path(argument: str, name: str) -> str:
    if not argument:
        raise ValueError(f"detector {name!r} needs a model path: '{name}:/path/to/model.onnx'")
    return argument
