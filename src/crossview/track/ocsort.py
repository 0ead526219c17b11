"""OC-SORT (Cao et al., CVPR 2023): observation-centric SORT.

Three additions to SORT, each trusting observations over the filter when the filter has been
running blind: *observation-centric re-update* (ORU) replays a lost track's gap along a straight
line between its last and new observation before updating, so the velocity learnt while lost does
not persist; *observation-centric momentum* (OCM) adds to the IoU a term rewarding detections that
continue the track's observed direction of motion; *observation-centric recovery* (OCR) gives
unmatched tracks a second chance against their last observed box rather than their prediction.
Weak detections get a BYTE-style second round, as in the authors' code.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from crossview.track.association import assign, iou_matrix
from crossview.track.base import HISTORY, Array, Index, KalmanTracker, TrackerConfig


class OcSortConfig(TrackerConfig):
    """OC-SORT's settings."""

    high_score: float = Field(default=0.6, ge=0, le=1, description="first-round detections")
    low_score: float = Field(default=0.1, ge=0, le=1, description="BYTE round floor; below is ignored")
    new_track_score: float = Field(default=0.4, ge=0, le=1, description="min score to start a track")
    match_iou: float = Field(default=0.3, gt=0, le=1, description="min IoU in every round")
    momentum_weight: float = Field(default=0.2, ge=0, description="weight of the direction term (inertia)")
    delta_frames: int = Field(default=3, ge=1, le=HISTORY - 1, description="frames spanned by directions")
    min_hits: int = Field(default=2, ge=1)


class OcSortTracker(KalmanTracker):
    """OC-SORT: SORT made robust to occlusion and non-linear motion by trusting observations."""

    config: OcSortConfig
    keeps_history = True

    def __init__(self, config: OcSortConfig | None = None) -> None:
        super().__init__(config or OcSortConfig())

    def _associate(
        self, boxes: Array, scores: Array, embeddings: NDArray[np.float32] | None
    ) -> tuple[Index, Index]:
        config = self.config
        tracks = self._tracks
        high = np.flatnonzero(scores >= config.high_score)
        low = np.flatnonzero((scores >= config.low_score) & (scores < config.high_score))
        every = np.arange(len(tracks))
        self._frame_reference = self._reference_box(every, self._frame, self.config.delta_frames)

        # Round 1: IoU with the prediction plus agreement with the observed direction.
        iou = 1.0 - self._fused_cost(every, high, boxes, embeddings)
        momentum = self._momentum(every, boxes[high]) * scores[high][None, :]
        first_t, first_d, rest_t, rest_d = assign(-(iou + momentum), admissible=iou >= config.match_iou)
        tracks_out, dets_out = [every[first_t]], [high[first_d]]

        # Round 2 (BYTE): weak detections for tracks still unmatched.
        leftover = every[rest_t]
        low_iou = 1.0 - self._motion_cost(leftover, low)
        second_t, second_d, rest2_t, _ = assign(-low_iou, admissible=low_iou >= config.match_iou)
        tracks_out.append(leftover[second_t])
        dets_out.append(low[second_d])

        # Round 3 (OCR): last observed boxes against the confident detections left over.
        leftover = leftover[rest2_t]
        remaining = high[rest_d]
        last_iou = 1.0 - self._gate_classes(
            1.0 - iou_matrix(tracks.last_box[leftover], boxes[remaining]), leftover, remaining
        )
        third_t, third_d, _, _ = assign(-last_iou, admissible=last_iou >= config.match_iou)
        tracks_out.append(leftover[third_t])
        dets_out.append(remaining[third_d])
        return np.concatenate(tracks_out), np.concatenate(dets_out)

    def _momentum(self, track_rows: Index, boxes: Array) -> Array:
        """How well each detection continues each track's observed direction, in [-w/2, w/2].

        The angle between the track's direction of motion and the direction from its observation
        ``delta_frames`` ago to the detection, mapped to ``arcsin(cos(angle)) / pi`` (OC-SORT's
        ``(pi/2 - angle) / pi``) and weighted; 0 for tracks with no direction yet.
        """
        tracks = self._tracks
        if len(track_rows) == 0 or len(boxes) == 0:
            return np.zeros((len(track_rows), len(boxes)))
        start = self._frame_reference[track_rows]
        dx = np.subtract.outer(-(start[:, 0] + start[:, 2]) / 2, -(boxes[:, 0] + boxes[:, 2]) / 2)
        dy = np.subtract.outer(-(start[:, 1] + start[:, 3]) / 2, -(boxes[:, 1] + boxes[:, 3]) / 2)
        velocity = tracks.velocity[track_rows]
        cosine = (velocity[:, :1] * dx + velocity[:, 1:] * dy) / np.maximum(np.hypot(dx, dy), 1e-6)
        np.clip(cosine, -1.0, 1.0, out=cosine)
        result: Array = np.arcsin(cosine) * (self.config.momentum_weight / np.pi)
        return result

    def _observation_reference(self, track_rows: Index) -> Array:
        return self._frame_reference[track_rows]

    def _on_matched(
        self,
        track_rows: Index,
        boxes: Array,
        scores: Array,
        embeddings: NDArray[np.float32] | None,
        det_rows: Index,
    ) -> None:
        gap = self._frame - self._tracks.last_seen[track_rows]
        refound = gap > 1
        if refound.any():
            self._replay_gaps(track_rows[refound], boxes[refound], gap[refound])
        super()._on_matched(track_rows, boxes, scores, embeddings, det_rows)

    def _replay_gaps(self, rows: Index, boxes: Array, gaps: Index) -> None:
        """ORU: restart re-found tracks from their last observed state and update them along
        straight virtual paths to the new observations."""
        tracks = self._tracks
        mean, covariance = tracks.anchor_mean[rows], tracks.anchor_covariance[rows]  # copies
        self._filter.replay(mean, covariance, tracks.last_box[rows], boxes, gaps)
        tracks.mean[rows], tracks.covariance[rows] = mean, covariance
