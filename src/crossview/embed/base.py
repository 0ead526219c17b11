"""The embedder protocol every implementation follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from crossview.core.detections import Detections
from crossview.core.frame import Frame


@runtime_checkable
class Embedder(Protocol):
    """Turns image crops into L2-normalised appearance vectors of a fixed dimension.

    ``embed`` returns the same rows it was given, in order, with ``embedding`` filled
    (``(N, dim)`` float32, unit length); crops of all frames are batched together.
    ``embed_images`` embeds whole images that are already crops (a search query, say).
    """

    @property
    def dim(self) -> int: ...

    def embed(self, frames: Sequence[Frame], detections: Sequence[Detections]) -> list[Detections]: ...

    def embed_images(self, images: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]: ...
