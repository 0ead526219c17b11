"""Output formats ("heads") of ONNX detectors: how to feed them and how to read them.

A head knows the pixels its model wants (letterbox convention, channel order, value scale),
checks that an output shape is its own (refusing anything else with the expected and actual
shapes), and decodes one frame's raw output into boxes (``x1, y1, x2, y2`` in input pixels)
and per-class scores. Selection (threshold, NMS) is shared and lives in the detector.

Both YOLO families predict on three feature maps with strides 8, 16 and 32, so a ``W x H``
input has ``A = Σ (H // s) · (W // s)`` anchors (3549 at 416x416, 8400 at 640x640).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from crossview.detect.preprocess import Letterbox

STRIDES: Final = (8, 16, 32)

Dimension = int | str | None
"""An ONNX tensor dimension: a number, a symbolic name, or unknown."""


@dataclass(frozen=True, slots=True)
class InputFormat:
    """The pixels a model wants: letterboxed ``letterbox``, channels ``rgb`` or BGR, values / ``divisor``."""

    letterbox: Letterbox
    rgb: bool
    divisor: float


class Head(Protocol):
    """One detector output format, for one input size."""

    @property
    def input_format(self) -> InputFormat: ...

    def num_classes(self, output_shape: Sequence[Dimension]) -> int:
        """The number of classes an output of this shape holds; ``ValueError`` if it is not this head's."""
        ...

    def decode(self, output: NDArray[np.floating]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """One frame's raw output to ``(A, 4)`` xyxy boxes in input pixels and ``(A, C)`` scores."""
        ...


def anchor_count(width: int, height: int, strides: Sequence[int] = STRIDES) -> int:
    """Predictions of a ``width x height`` input: one per cell of each stride's grid."""
    return sum((height // stride) * (width // stride) for stride in strides)


def _shape_text(shape: Sequence[Dimension]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _known(dimension: Dimension) -> int | None:
    return dimension if isinstance(dimension, int) and dimension > 0 else None


def _check_rank3(shape: Sequence[Dimension], expected: str) -> None:
    if len(shape) != 3:
        raise ValueError(f"model output has shape {_shape_text(shape)}, expected {expected}")


def _cxcywh_to_xyxy(center: NDArray[np.float32], size: NDArray[np.float32]) -> NDArray[np.float32]:
    half = size * np.float32(0.5)
    return np.concatenate([center - half, center + half], axis=1)


class YoloxHead:
    """YOLOX's raw grid output ``N x A x (5 + C)``: per anchor ``x, y, log w, log h``, objectness, classes.

    Decoding follows YOLOX's ``demo_postprocess``: ``xy = (out_xy + grid_xy) · stride``,
    ``wh = exp(out_wh) · stride``, with the grids of strides 8, 16 and 32 in that order, each
    row-major (``x`` fastest); score = objectness · class probability (both already sigmoids in
    the exported graph). Input: BGR, 0-255, no normalisation, letterboxed top-left with 114.

    >>> head = YoloxHead(416, 416)
    >>> head.num_classes((1, 3549, 85))
    80
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.anchors = anchor_count(width, height)
        grids, strides = [], []
        for stride in STRIDES:
            columns, rows = width // stride, height // stride
            x, y = np.meshgrid(np.arange(columns), np.arange(rows))
            grids.append(np.stack([x.reshape(-1), y.reshape(-1)], axis=1))
            strides.append(np.full((columns * rows, 1), stride))
        self._grid = np.concatenate(grids).astype(np.float32)
        self._stride = np.concatenate(strides).astype(np.float32)

    @property
    def input_format(self) -> InputFormat:
        return InputFormat(Letterbox(self.width, self.height, False, "floor"), rgb=False, divisor=1.0)

    def num_classes(self, output_shape: Sequence[Dimension]) -> int:
        expected = f"(N, {self.anchors}, 5 + classes) for YOLOX at {self.width}x{self.height}"
        _check_rank3(output_shape, expected)
        anchors, channels = _known(output_shape[1]), _known(output_shape[2])
        if anchors not in (None, self.anchors) or channels is None or channels < 6:
            raise ValueError(f"model output has shape {_shape_text(output_shape)}, expected {expected}")
        return channels - 5

    def decode(self, output: NDArray[np.floating]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        raw = np.asarray(output, dtype=np.float32)
        with np.errstate(over="ignore"):  # exp of a junk anchor may overflow; it is clipped later
            size = np.exp(raw[:, 2:4]) * self._stride
        center = (raw[:, :2] + self._grid) * self._stride
        scores = raw[:, 4:5] * raw[:, 5:]
        return _cxcywh_to_xyxy(center, size), scores


class YoloV8Head:
    """The YOLOv8 / YOLO11 detection head ``N x (4 + C) x A``: ``cx, cy, w, h`` in input pixels, classes.

    No objectness: a box's score is its class score. Input: RGB, 0-1 (divided by 255),
    letterboxed centred with 114 (ultralytics' ``LetterBox`` defaults).

    ``layout="anchors_first"`` reads the transposed ``N x A x (4 + C)`` that some exports
    produce. It is never guessed from the shape, because a transposed output cannot be told
    from YOLOX's ``N x A x (5 + C)`` (YOLOX-Nano's ``1 x 3549 x 85`` would read as 81 classes):
    it must be asked for.

    >>> YoloV8Head(640, 640).num_classes((1, 84, 8400))
    80
    """

    def __init__(
        self, width: int, height: int, layout: Literal["channels_first", "anchors_first"] = "channels_first"
    ) -> None:
        self.width, self.height, self.layout = width, height, layout
        self.anchors = anchor_count(width, height)

    @property
    def input_format(self) -> InputFormat:
        return InputFormat(Letterbox(self.width, self.height, True, "nearest"), rgb=True, divisor=255.0)

    def num_classes(self, output_shape: Sequence[Dimension]) -> int:
        if self.layout == "channels_first":
            expected = f"(N, 4 + classes, {self.anchors}) for YOLOv8 at {self.width}x{self.height}"
            anchor_axis, channel_axis = 2, 1
        else:
            expected = f"(N, {self.anchors}, 4 + classes) for transposed YOLOv8 at {self.width}x{self.height}"
            anchor_axis, channel_axis = 1, 2
        _check_rank3(output_shape, expected)
        anchors, channels = _known(output_shape[anchor_axis]), _known(output_shape[channel_axis])
        if anchors not in (None, self.anchors) or channels is None or channels < 5:
            raise ValueError(f"model output has shape {_shape_text(output_shape)}, expected {expected}")
        return channels - 4

    def decode(self, output: NDArray[np.floating]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        raw = np.asarray(output, dtype=np.float32)
        if self.layout == "channels_first":
            raw = raw.T
        return _cxcywh_to_xyxy(raw[:, :2], raw[:, 2:4]), raw[:, 4:]
