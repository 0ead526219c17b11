"""What every tracker shares: its protocol, track states, the track store and the Kalman loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.core.detections import Detections
from crossview.track.association import iou_matrix
from crossview.track.kalman import BoxKalmanFilter

Array = NDArray[np.float64]
Index = NDArray[np.int64]
HISTORY = 4  # observations kept per track: enough for OC-SORT's 3-frame direction estimate


class TrackState(IntEnum):
    """Life cycle of a track. Removed tracks are dropped from the store."""

    TENTATIVE = 0  # seen, not yet trusted: its rows get no id
    CONFIRMED = 1  # matched in the last frame
    LOST = 2  # confirmed, then missed; kept to be found again until ``max_age``


# Plain ints for the hot loop: attribute access on an Enum class costs a microsecond each.
TENTATIVE, CONFIRMED, LOST = int(TrackState.TENTATIVE), int(TrackState.CONFIRMED), int(TrackState.LOST)


@runtime_checkable
class Tracker(Protocol):
    """Follows objects of one camera over time.

    ``update`` takes one frame's detections (frames in order) and returns the *same rows*
    with ``tracker_id`` filled: the id of the confirmed track each row belongs to, or -1.
    Kalman trackers also add ``data["track_xyxy"]``: the filter's estimate of each matched
    row's box (the detection's own box elsewhere), steadier than a jittery detector's.
    Each tracker instance owns its id counter; ids start at 1.
    """

    def update(self, detections: Detections) -> Detections: ...

    def reset(self) -> None: ...


class TrackerConfig(BaseModel):
    """Settings every Kalman tracker shares; times are in frames at ``frame_rate``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frame_rate: float = Field(
        default=30.0, gt=0, description="the camera's frame rate; buffers scale with it"
    )
    max_age: int = Field(default=30, ge=0, description="frames a lost track is kept at 30 fps")
    min_hits: int = Field(default=2, ge=1, description="matches before a track is confirmed and gets an id")
    new_track_score: float = Field(default=0.5, ge=0, le=1, description="min score to start a track")
    position_weight: float = Field(default=1.0 / 20, gt=0, description="Kalman position noise / box size")
    velocity_weight: float = Field(default=1.0 / 160, gt=0, description="Kalman velocity noise / box size")
    appearance_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of appearance in the cost when detections carry embeddings",
    )
    appearance_proximity: float = Field(
        default=0.2, ge=0, le=1, description="min IoU for appearance to count"
    )
    appearance_momentum: float = Field(default=0.9, ge=0, lt=1, description="EMA factor of track embeddings")

    @property
    def lost_frames(self) -> int:
        """``max_age`` at the configured frame rate."""
        return max(1, round(self.max_age * self.frame_rate / 30.0))


@dataclass(slots=True)
class TrackStore:
    """Columnar state of all live tracks of one tracker (mutable, private to it)."""

    mean: Array
    covariance: Array
    track_id: Index
    state: NDArray[np.int8]
    hits: Index
    lost_for: Index  # frames since the last match
    score: Array
    last_box: Array  # last observed xyxy
    last_seen: Index  # frame number of the last observation
    class_id: Index  # the class of the first detection; tracks only take detections of their class
    history: Array  # (T, H, 4) the last H observed boxes, newest last
    history_seen: Index  # (T, H) their frame numbers (-1 = none)
    velocity: Array  # (T, 2) unit direction of motion between observations (OC-SORT)
    anchor_mean: Array  # (T, 8) state right after the last observation (for re-updates)
    anchor_covariance: Array  # (T, 4, 3), see BoxKalmanFilter
    embedding: NDArray[np.float32] | None

    @classmethod
    def empty(cls) -> TrackStore:
        return cls(
            mean=np.zeros((0, 8)),
            covariance=np.zeros((0, 4, 3)),
            track_id=np.zeros(0, np.int64),
            state=np.zeros(0, np.int8),
            hits=np.zeros(0, np.int64),
            lost_for=np.zeros(0, np.int64),
            score=np.zeros(0),
            last_box=np.zeros((0, 4)),
            last_seen=np.zeros(0, np.int64),
            class_id=np.zeros(0, np.int64),
            history=np.zeros((0, HISTORY, 4)),
            history_seen=np.zeros((0, HISTORY), np.int64),
            velocity=np.zeros((0, 2)),
            anchor_mean=np.zeros((0, 8)),
            anchor_covariance=np.zeros((0, 4, 3)),
            embedding=None,
        )

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def keep(self, mask: NDArray[np.bool_]) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[mask])

    def append(self, other: TrackStore) -> None:
        if self.embedding is None and other.embedding is not None and len(self) == 0:
            self.embedding = np.zeros((0, other.embedding.shape[1]), np.float32)
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None or theirs is None:
                setattr(self, name, None)
            else:
                setattr(self, name, np.concatenate([mine, theirs]))


class KalmanTracker(ABC):
    """The shared loop: predict, associate (the subclass's part), update, age, create, label.

    Subclasses implement ``_associate`` and may override ``_spawn`` and ``_on_matched``.
    """

    keeps_history = False
    """Whether matches record observation history, directions and anchors (OC-SORT needs them)."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._filter = BoxKalmanFilter(config.position_weight, config.velocity_weight)
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1."""
        self._tracks = TrackStore.empty()
        self._next_id = 1
        self._frame = 0
        self._last_index: int | None = None
        self._det_class = np.zeros(0, np.int64)
        self._mixed_classes = False
        self._track_classes: set[int] = set()
        self._iou = np.zeros((0, 0))

    # ---------------------------------------------------------------------------- the loop
    def update(self, detections: Detections) -> Detections:
        steps = self._advance(detections.frame_index)
        tracks = self._tracks
        if len(tracks):
            self._filter.predict_in_place(tracks.mean, tracks.covariance, steps)
            tracks.lost_for += steps
        boxes = detections.xyxy.astype(np.float64)
        scores = detections.confidence.astype(np.float64)
        self._det_class = detections.class_id
        self._mixed_classes = self._has_mixed_classes()
        # Every round of every tracker reads this one matrix: prediction-to-detection IoU.
        self._iou = iou_matrix(self._filter.boxes(tracks.mean), boxes)
        track_rows, det_rows = self._associate(boxes, scores, detections.embedding)
        if len(track_rows):
            self._on_matched(track_rows, boxes[det_rows], scores[det_rows], detections.embedding, det_rows)
        ids = np.full(len(detections), -1, np.int64)
        live = self._tracks.state[track_rows] == CONFIRMED
        ids[det_rows[live]] = self._tracks.track_id[track_rows[live]]
        smoothed = boxes.copy()
        if len(track_rows):
            smoothed[det_rows] = self._filter.boxes(self._tracks.mean[track_rows])
        self._retire()
        unmatched = np.ones(len(detections), bool)
        unmatched[det_rows] = False
        created = self._spawn(
            boxes, scores, detections.embedding, unmatched & (scores >= self.config.new_track_score)
        )
        if created is not None:
            new_rows, new_ids = created
            ids[new_rows] = new_ids
        return detections.with_tracker_ids(ids, track_xyxy=smoothed.astype(np.float32))

    def _has_mixed_classes(self) -> bool:
        """Whether this frame's detections and the live tracks may span more than one class.

        ``_track_classes`` holds every class a track was ever started with, so the answer can be
        a cautious yes (the class gate is then applied and changes nothing); never a wrong no.
        """
        classes = self._det_class
        if len(classes) == 0:
            return len(self._track_classes) > 1
        first = int(classes[0])
        if (classes != first).any():
            return True
        return bool(self._track_classes - {first})

    def _advance(self, frame_index: int | None) -> int:
        """Frames elapsed since the last update (1 when frames carry no index)."""
        steps = 1
        if frame_index is not None and self._last_index is not None:
            steps = max(1, frame_index - self._last_index)
        if frame_index is not None:
            self._last_index = frame_index
        self._frame += steps
        return steps

    @abstractmethod
    def _associate(
        self, boxes: Array, scores: Array, embeddings: NDArray[np.float32] | None
    ) -> tuple[Index, Index]:
        """Pairs (track row, detection row): each tracker's own association."""

    def _on_matched(
        self,
        track_rows: Index,
        boxes: Array,
        scores: Array,
        embeddings: NDArray[np.float32] | None,
        det_rows: Index,
    ) -> None:
        tracks = self._tracks
        mean, covariance = tracks.mean[track_rows], tracks.covariance[track_rows]  # copies
        self._filter.update_in_place(mean, covariance, boxes)
        tracks.mean[track_rows], tracks.covariance[track_rows] = mean, covariance
        tracks.hits[track_rows] += 1
        tracks.lost_for[track_rows] = 0
        tracks.score[track_rows] = scores
        if self.keeps_history:  # before last_box moves on: directions start from the previous observation
            self._record_observation(track_rows, boxes)
        tracks.last_box[track_rows] = boxes
        tracks.last_seen[track_rows] = self._frame
        if embeddings is not None and tracks.embedding is not None:
            momentum = self.config.appearance_momentum
            blended = momentum * tracks.embedding[track_rows] + (1 - momentum) * embeddings[det_rows]
            tracks.embedding[track_rows] = blended / np.linalg.norm(blended, axis=1, keepdims=True)
        state = tracks.state[track_rows]
        promote = (state == LOST) | ((state == TENTATIVE) & (tracks.hits[track_rows] >= self.config.min_hits))
        newly = track_rows[(state == TENTATIVE) & promote]
        tracks.track_id[newly] = np.arange(self._next_id, self._next_id + len(newly))
        self._next_id += len(newly)
        tracks.state[track_rows[promote]] = CONFIRMED

    def _record_observation(self, track_rows: Index, boxes: Array) -> None:
        """Keep the observation history, motion direction and post-update anchor state."""
        tracks = self._tracks
        tracks.velocity[track_rows] = _direction(self._observation_reference(track_rows), boxes)
        tracks.history[track_rows] = np.concatenate(
            [tracks.history[track_rows, 1:], boxes[:, None, :]], axis=1
        )
        tracks.history_seen[track_rows] = np.concatenate(
            [tracks.history_seen[track_rows, 1:], np.full((len(track_rows), 1), self._frame)], axis=1
        )
        tracks.anchor_mean[track_rows] = tracks.mean[track_rows]
        tracks.anchor_covariance[track_rows] = tracks.covariance[track_rows]

    def _observation_reference(self, track_rows: Index) -> Array:
        """The observation each matched track's new direction of motion is measured from."""
        return self._reference_box(track_rows, self._frame)

    def _reference_box(self, track_rows: Index, frame: int, delta: int = HISTORY - 1) -> Array:
        """Each track's observation from about ``delta`` frames before ``frame``.

        The oldest kept observation no more than ``delta`` frames old, else the last one.
        """
        tracks = self._tracks
        age = frame - tracks.history_seen[track_rows]
        usable: NDArray[np.bool_] = (tracks.history_seen[track_rows] >= 0) & (age <= delta) & (age > 0)
        pick = np.argmax(np.where(usable, age, -1), axis=1)
        chosen = tracks.history[track_rows, pick]
        any_usable = np.any(usable, axis=1, keepdims=True)
        result: Array = np.where(any_usable, chosen, tracks.last_box[track_rows])
        return result

    def _retire(self) -> None:
        """Missed tentative tracks die; missed confirmed tracks are lost, then dropped."""
        tracks = self._tracks
        missed = tracks.lost_for > 0
        tentative = tracks.state == TENTATIVE
        tracks.state[missed & ~tentative] = LOST
        dead = (missed & tentative) | (tracks.lost_for > self.config.lost_frames)
        if dead.any():
            tracks.keep(~dead)

    def _spawn(
        self,
        boxes: Array,
        scores: Array,
        embeddings: NDArray[np.float32] | None,
        candidates: NDArray[np.bool_],
    ) -> tuple[Index, Index] | None:
        """Start tentative tracks for the ``candidates`` rows.

        On the very first frame tracks are confirmed at once (there is no history to wait
        for); returns those rows and their new ids.
        """
        rows = np.flatnonzero(candidates)
        if len(rows) == 0:
            return None
        first_frame = self._frame == 1 or self.config.min_hits <= 1
        mean, covariance = self._filter.initiate(boxes[rows])
        n = len(rows)
        ids = np.arange(self._next_id, self._next_id + n) if first_frame else np.full(n, -1)
        if first_frame:
            self._next_id += n
        embedding = None
        if embeddings is not None:
            embedding = embeddings[rows].astype(np.float32)
        found = boxes[rows]
        new_classes = self._det_class[rows]
        self._track_classes.update(np.unique(new_classes).tolist())
        history = np.zeros((n, HISTORY, 4))
        history[:, -1] = found
        history_seen = np.full((n, HISTORY), -1, np.int64)
        history_seen[:, -1] = self._frame
        self._tracks.append(
            TrackStore(
                mean=mean,
                covariance=covariance,
                track_id=ids.astype(np.int64),
                state=np.full(n, CONFIRMED if first_frame else TENTATIVE, np.int8),
                hits=np.ones(n, np.int64),
                lost_for=np.zeros(n, np.int64),
                score=scores[rows],
                last_box=found,
                last_seen=np.full(n, self._frame, np.int64),
                class_id=new_classes,
                history=history,
                history_seen=history_seen,
                velocity=np.zeros((n, 2)),
                anchor_mean=mean.copy(),
                anchor_covariance=covariance.copy(),
                embedding=embedding,
            )
        )
        return (rows, ids.astype(np.int64)) if first_frame else None

    # ---------------------------------------------------------------------------- helpers
    def _motion_cost(self, track_rows: Index, det_rows: Index) -> Array:
        """``1 - IoU`` between the tracks' predicted boxes and the detections (this frame's)."""
        cost: Array = 1.0 - self._iou[track_rows[:, None], det_rows]
        return self._gate_classes(cost, track_rows, det_rows)

    def _gate_classes(self, cost: Array, track_rows: Index, det_rows: Index) -> Array:
        """A detection of another class costs the maximum: tracks never change class."""
        if self._mixed_classes and cost.size:
            cost[self._tracks.class_id[track_rows][:, None] != self._det_class[det_rows]] = 1.0
        return cost

    def _fused_cost(
        self,
        track_rows: Index,
        det_rows: Index,
        boxes: Array,
        embeddings: NDArray[np.float32] | None,
    ) -> Array:
        """IoU cost, blended with appearance distance for pairs close enough to be the same object.

        The blend is DeepSORT's weighted sum; the proximity gate (as in BoT-SORT) keeps a
        look-alike far away from stealing a track.
        """
        from crossview.track.association import cosine_distance

        cost = self._motion_cost(track_rows, det_rows)
        tracks = self._tracks
        weight = self.config.appearance_weight
        if weight == 0 or embeddings is None or tracks.embedding is None or cost.size == 0:
            return cost
        appearance = cosine_distance(tracks.embedding[track_rows], embeddings[det_rows])
        close = cost <= 1.0 - self.config.appearance_proximity
        fused: Array = np.where(close, (1 - weight) * cost + weight * np.minimum(appearance, 1.0), cost)
        return fused

    def active_tracks(self) -> TrackView:
        """Confirmed and lost tracks with their Kalman state, for forecasting and display."""
        tracks = self._tracks
        alive = tracks.state != TENTATIVE
        return TrackView(
            track_id=tracks.track_id[alive].copy(),
            state=tracks.state[alive].copy(),
            mean=tracks.mean[alive].copy(),
            covariance=tracks.covariance[alive].copy(),
            lost_for=tracks.lost_for[alive].copy(),
            filter=self._filter,
        )


@dataclass(frozen=True, slots=True)
class TrackView:
    """A read-only snapshot of a tracker's live tracks."""

    track_id: Index
    state: NDArray[np.int8]
    mean: Array
    covariance: Array
    lost_for: Index
    filter: BoxKalmanFilter

    def __len__(self) -> int:
        return int(self.track_id.shape[0])


def _direction(start: Array, end: Array) -> Array:
    """Unit vectors from the centres of ``start`` boxes to those of ``end`` (zero if they coincide)."""
    delta = (end[:, :2] + end[:, 2:]) / 2 - (start[:, :2] + start[:, 2:]) / 2
    norm = np.linalg.norm(delta, axis=1, keepdims=True)
    result: Array = np.where(norm > 1e-6, delta / np.maximum(norm, 1e-6), 0.0)
    return result
