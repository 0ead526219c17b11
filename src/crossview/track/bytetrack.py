"""ByteTrack (Zhang et al., ECCV 2022): associate every detection box, high scores first."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from crossview.track.association import assign
from crossview.track.base import CONFIRMED, TENTATIVE, Array, Index, KalmanTracker, TrackerConfig


class ByteTrackConfig(TrackerConfig):
    """ByteTrack's settings; the score split decides which detections may start tracks."""

    high_score: float = Field(default=0.3, ge=0, le=1, description="first-round detections")
    low_score: float = Field(default=0.1, ge=0, le=1, description="second-round floor; below is ignored")
    new_track_score: float = Field(default=0.4, ge=0, le=1, description="min score to start a track")
    match_iou: float = Field(default=0.2, gt=0, le=1, description="first round: min IoU")
    low_match_iou: float = Field(default=0.5, gt=0, le=1, description="second round (low scores): min IoU")
    tentative_match_iou: float = Field(default=0.3, gt=0, le=1, description="unconfirmed tracks: min IoU")
    fuse_score: bool = Field(default=True, description="weight first-round IoU by detection score")


class ByteTrackTracker(KalmanTracker):
    """ByteTrack: confident detections match all tracks, weak ones rescue tracks left over.

    Weak detections never start tracks but keep occluded objects alive, which is where
    ByteTrack's gain over SORT comes from.
    """

    config: ByteTrackConfig

    def __init__(self, config: ByteTrackConfig | None = None) -> None:
        super().__init__(config or ByteTrackConfig())

    def _associate(
        self, boxes: Array, scores: Array, embeddings: NDArray[np.float32] | None
    ) -> tuple[Index, Index]:
        config = self.config
        state = self._tracks.state
        high = np.flatnonzero(scores >= config.high_score)
        low = np.flatnonzero((scores >= config.low_score) & (scores < config.high_score))
        pool = np.flatnonzero(state != TENTATIVE)

        cost = self._fused_cost(pool, high, boxes, embeddings)
        if config.fuse_score and cost.size:
            cost = 1.0 - (1.0 - cost) * scores[high][None, :]
        first_t, first_d, rest_t, rest_d = assign(cost, 1.0 - config.match_iou)
        tracks_out, dets_out = [pool[first_t]], [high[first_d]]

        leftover = pool[rest_t]
        tracked = leftover[state[leftover] == CONFIRMED]
        second_t, second_d, _, _ = assign(self._motion_cost(tracked, low), 1.0 - config.low_match_iou)
        tracks_out.append(tracked[second_t])
        dets_out.append(low[second_d])

        unconfirmed = np.flatnonzero(state == TENTATIVE)
        remaining = high[rest_d]
        cost = self._fused_cost(unconfirmed, remaining, boxes, embeddings)
        if config.fuse_score and cost.size:
            cost = 1.0 - (1.0 - cost) * scores[remaining][None, :]
        third_t, third_d, _, _ = assign(cost, 1.0 - config.tentative_match_iou)
        tracks_out.append(unconfirmed[third_t])
        dets_out.append(remaining[third_d])
        return np.concatenate(tracks_out), np.concatenate(dets_out)
