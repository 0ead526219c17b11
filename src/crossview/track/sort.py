"""SORT (Bewley et al., 2016): Kalman prediction and one optimal IoU matching per frame."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from crossview.track.association import assign
from crossview.track.base import Array, Index, KalmanTracker, TrackerConfig


class SortConfig(TrackerConfig):
    """SORT's settings. Defaults keep weak detections (score >= 0.1) in play, as a detector
    of unknown strength needs; raise ``min_score`` for a detector with many false alarms."""

    min_score: float = Field(default=0.1, ge=0, le=1, description="detections below are ignored")
    new_track_score: float = Field(default=0.4, ge=0, le=1, description="min score to start a track")
    match_iou: float = Field(default=0.3, gt=0, le=1, description="min IoU between prediction and detection")
    min_hits: int = Field(default=2, ge=1)


class SortTracker(KalmanTracker):
    """SORT with size-aware Kalman noise, lost-track memory and optional appearance.

    >>> from crossview import Detections
    >>> tracker = SortTracker()
    >>> out = tracker.update(Detections(xyxy=[[0, 0, 10, 20]], confidence=[0.9], frame_index=0))
    >>> out.tracker_id.tolist()
    [1]
    """

    config: SortConfig

    def __init__(self, config: SortConfig | None = None) -> None:
        super().__init__(config or SortConfig())

    def _associate(
        self, boxes: Array, scores: Array, embeddings: NDArray[np.float32] | None
    ) -> tuple[Index, Index]:
        det_rows = np.flatnonzero(scores >= self.config.min_score)
        track_rows = np.arange(len(self._tracks))
        cost = self._fused_cost(track_rows, det_rows, boxes, embeddings)
        matched_tracks, matched_dets, _, _ = assign(cost, 1.0 - self.config.match_iou)
        return track_rows[matched_tracks], det_rows[matched_dets]
