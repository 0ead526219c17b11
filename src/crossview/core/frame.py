"""A single decoded image from one camera."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from one camera.

    ``image`` is ``H x W x 3`` ``uint8`` in BGR order, as OpenCV and PyAV's ``bgr24`` give it.
    ``timestamp`` is in seconds on the source's clock (presentation time for files,
    arrival time for live streams); ``index`` counts frames from 0 within the source.

    >>> import numpy as np
    >>> frame = Frame(np.zeros((4, 6, 3), np.uint8), camera_id="gate", index=0, timestamp=0.0)
    >>> frame.size
    (6, 4)
    """

    image: NDArray[np.uint8]
    camera_id: str
    index: int
    timestamp: float

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray):
            raise TypeError(f"Frame.image must be a numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Frame.image must have shape (H, W, 3), got {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"Frame.image must be uint8, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"Frame.image must not be empty, got shape {image.shape}")
        if self.index < 0:
            raise ValueError(f"Frame.index must be >= 0, got {self.index}")
        if not np.isfinite(self.timestamp):
            raise ValueError(f"Frame.timestamp must be finite, got {self.timestamp}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, the order OpenCV's size arguments use."""
        return self.width, self.height
