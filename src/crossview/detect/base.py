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


@runtime_checkable
class PerCameraState(Protocol):
    """A detector that keeps state per camera (a background model, ...) that can be freed.

    ``reset(camera_id)`` forgets one camera's state (every camera's with ``None``); the camera's
    next frame starts it afresh. A service calls it when a camera goes idle, so that memory
    follows the cameras that are sending, not every camera ever seen.
    """

    def reset(self, camera_id: str | None = None) -> None: ...
