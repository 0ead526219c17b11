"""Letterbox pre-processing for detectors: resize keeping aspect ratio, pad, and map boxes back.

A letterbox scales a frame by ``r = min(input_height / height, input_width / width)`` so that it
fits the network input, and fills the rest with a constant grey (114 in YOLOX and ultralytics).
Two conventions exist and models are trained with one of them, so both are reproduced exactly:

- YOLOX (``yolox/data/data_augment.py::preproc``): resized size ``int(side * r)`` (truncated),
  image at the **top-left**, padding right and bottom only. A box maps back as ``xy / r``.
- ultralytics (``ultralytics/data/augment.py::LetterBox``, defaults ``center=True``,
  ``auto=False`` as for a fixed-size export): resized size ``round(side * r)``, image **centred**
  with ``left = round(dw / 2 - 0.1)`` (``dw`` the total horizontal padding; the odd pixel goes
  right/bottom, which equals ``dw // 2``). A box maps back as ``(xy - (left, top)) / r``.

Both resize with ``cv2.INTER_LINEAR``. ``to_tensor`` then stacks letterboxed images into an
``N x 3 x H x W`` float tensor in the channel order and value scale the model expects.

>>> import numpy as np
>>> style = Letterbox(width=64, height=64, centered=True, size_rounding="nearest")
>>> canvas, mapping = style.apply(np.zeros((62, 128, 3), np.uint8))
>>> canvas.shape, mapping.scale, mapping.pad_x, mapping.pad_y
((64, 64, 3), 0.5, 0, 16)
>>> mapping.to_source(np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)).tolist()
[[20.0, 8.0, 60.0, 48.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

PAD_VALUE = 114
"""The grey both YOLOX and ultralytics pad with."""


@dataclass(frozen=True, slots=True)
class BoxMapping:
    """Where one frame landed inside the network input, to map boxes back to the frame.

    Input coordinates relate to frame coordinates by ``input = frame * scale + (pad_x, pad_y)``;
    ``source_width`` and ``source_height`` are the frame's size, to clip to.
    """

    scale: float
    pad_x: int
    pad_y: int
    source_width: int
    source_height: int

    def to_source(self, xyxy: NDArray[np.floating]) -> NDArray[np.float32]:
        """``(N, 4)`` boxes in input pixels to frame pixels, clipped to the frame."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float64)
        limits = np.array(
            [self.source_width, self.source_height, self.source_width, self.source_height], np.float64
        )
        mapped = np.clip((boxes - offset) / self.scale, 0.0, limits)
        return mapped.astype(np.float32)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """A letterbox convention for a network input of ``width`` x ``height`` pixels.

    ``centered`` places the resized image in the middle (ultralytics) instead of the top-left
    corner (YOLOX); ``size_rounding`` is how the resized side is rounded: ``"floor"`` (YOLOX's
    ``int(side * r)``) or ``"nearest"`` (ultralytics' ``round(side * r)``).
    """

    width: int
    height: int
    centered: bool
    size_rounding: Literal["floor", "nearest"]
    pad_value: int = PAD_VALUE

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"letterbox size must be positive, got {self.width}x{self.height}")
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"letterbox pad_value must be in [0, 255], got {self.pad_value}")

    def mapping(self, source_width: int, source_height: int) -> tuple[BoxMapping, int, int]:
        """The mapping for a frame of this size, and the resized ``(width, height)`` inside."""
        scale = min(self.height / source_height, self.width / source_width)
        if self.size_rounding == "floor":
            width, height = int(source_width * scale), int(source_height * scale)
        else:
            width, height = round(source_width * scale), round(source_height * scale)
        width, height = min(max(width, 1), self.width), min(max(height, 1), self.height)
        pad_x = (self.width - width) // 2 if self.centered else 0
        pad_y = (self.height - height) // 2 if self.centered else 0
        return BoxMapping(scale, pad_x, pad_y, source_width, source_height), width, height

    def apply(
        self, image: NDArray[np.uint8], out: NDArray[np.uint8] | None = None
    ) -> tuple[NDArray[np.uint8], BoxMapping]:
        """Letterbox an ``H x W x 3`` image; the padded canvas and how to map boxes back.

        ``out`` (``height x width x 3`` uint8), when given, receives the canvas, so a batch can
        be filled in place.
        """
        source_height, source_width = image.shape[:2]
        mapping, width, height = self.mapping(source_width, source_height)
        canvas = np.empty((self.height, self.width, 3), np.uint8) if out is None else out
        if canvas.shape != (self.height, self.width, 3):
            raise ValueError(
                f"letterbox output must have shape {(self.height, self.width, 3)}, got {canvas.shape}"
            )
        canvas.fill(self.pad_value)
        resized = image
        if (width, height) != (source_width, source_height):
            resized = np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)
        canvas[mapping.pad_y : mapping.pad_y + height, mapping.pad_x : mapping.pad_x + width] = resized
        return canvas, mapping


def to_tensor(
    images: NDArray[np.uint8], *, rgb: bool, divisor: float, dtype: type[np.floating] = np.float32
) -> NDArray[np.floating]:
    """``N x H x W x 3`` BGR uint8 images to a contiguous ``N x 3 x H x W`` float tensor.

    ``rgb`` swaps BGR to RGB; every value is then divided by ``divisor`` (255 for ultralytics'
    0-1 inputs, 1 for YOLOX's 0-255 ones), as a division so the values equal the reference's.
    """
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    channels = images[..., ::-1] if rgb else images
    tensor: NDArray[np.floating] = np.ascontiguousarray(channels.transpose(0, 3, 1, 2), dtype=dtype)
    if divisor != 1.0:
        tensor /= dtype(divisor)
    return tensor


def letterbox_batch(
    images: Sequence[NDArray[np.uint8]], style: Letterbox
) -> tuple[NDArray[np.uint8], list[BoxMapping]]:
    """Letterbox several images into one ``N x height x width x 3`` array, with their mappings."""
    batch = np.empty((len(images), style.height, style.width, 3), np.uint8)
    mappings = [style.apply(image, out=batch[i])[1] for i, image in enumerate(images)]
    return batch, mappings
