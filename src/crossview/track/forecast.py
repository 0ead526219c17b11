"""Where each track will be: Kalman extrapolation with growing uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crossview.track.base import TrackView

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Forecast:
    """Predicted boxes of tracks at future frames.

    ``xyxy[t, s]`` is track ``track_id[t]``'s box ``steps[s]`` frames after the tracker's last
    update; ``std[t, s]`` the standard deviation of its ``cx, cy, w, h`` (pixels), which grows
    with the horizon and with how long the track has gone unobserved.
    """

    track_id: NDArray[np.int64]
    steps: tuple[int, ...]
    xyxy: Array
    std: Array

    def center(self) -> Array:
        """Box centres ``(T, S, 2)``."""
        result: Array = (self.xyxy[..., :2] + self.xyxy[..., 2:]) / 2
        return result


def forecast(view: TrackView, steps: int | Sequence[int]) -> Forecast:
    """Extrapolate every track of ``view`` ``steps`` frames ahead (one horizon or several).

    >>> from crossview import Detections
    >>> from crossview.track import SortTracker
    >>> tracker = SortTracker()
    >>> for frame in range(20):  # a box moving 4 px per frame to the right
    ...     _ = tracker.update(Detections(xyxy=[[4 * frame, 0, 4 * frame + 40, 80]], frame_index=frame))
    >>> ahead = forecast(tracker.active_tracks(), [0, 5])
    >>> [round(float(x)) for x in ahead.center()[0, :, 0]]  # now at x = 96, then about 20 px on
    [96, 116]
    """
    horizons = (steps,) if isinstance(steps, int) else tuple(steps)
    if any(h < 0 for h in horizons):
        raise ValueError(f"forecast steps must be >= 0, got {horizons}")
    order = sorted(set(horizons))
    boxes: dict[int, tuple[Array, Array]] = {}
    mean, covariance = view.mean, view.covariance
    done = 0
    for horizon in order:
        mean, covariance = view.filter.predict(mean, covariance, horizon - done)
        done = horizon
        boxes[horizon] = (view.filter.boxes(mean), view.filter.box_std(covariance))
    n = len(view)
    xyxy = np.stack([boxes[h][0] for h in horizons], axis=1) if n else np.zeros((0, len(horizons), 4))
    std = np.stack([boxes[h][1] for h in horizons], axis=1) if n else np.zeros((0, len(horizons), 4))
    return Forecast(track_id=view.track_id, steps=horizons, xyxy=xyxy, std=std)
