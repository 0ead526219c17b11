"""The detector protocol every implementation follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crossview.core.detections import Detections
from crossview.core.frame import Frame


@runtime_checkable
class Detector(Protocol):
    """Finds objects in frames, batched.

    ``detect`` returns one ``Detections`` per frame, in order, each carrying the frame's
    ``camera_id``, ``frame_index`` (``Frame.index``) and ``timestamp``; boxes are in the
    frame's pixel coordinates. An empty result is ``Detections.empty(...)``, never ``None``.
    """

    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...
