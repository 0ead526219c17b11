"""From tracked detections to search entries: one aggregated embedding per track.

``TrackGallery`` watches the tracked detections of any number of cameras and keeps, per track, a
quality-weighted mean of its embeddings (weight = detection confidence times how well the box is
inside the frame and not tiny), a few *key* embeddings that cover how the object looked (greedy
farthest-point picks among the best crops), its first and last timestamps, class, and a
reference to its best crop. ``entries()`` returns what to index; tracks end after ``max_idle``
seconds without a detection, or when ``finish`` is called.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from crossview.core.detections import Detections
from crossview.search.index import Entry


@dataclass(slots=True)
class _TrackAccumulator:
    camera_id: str
    track_id: int
    class_id: int
    t_start: float
    t_end: float
    weighted_sum: NDArray[np.float64]
    weight: float = 0.0
    best_quality: float = -1.0
    best_frame: int = -1
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    samples: list[tuple[float, NDArray[np.float32]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """One finished (or current) track: its gallery entry and embeddings."""

    entry: Entry
    embedding: NDArray[np.float32]  # (D,) unit-norm aggregate
    keys: NDArray[np.float32]  # (K, D) unit-norm key embeddings, K <= max_keys


def box_quality(
    xyxy: NDArray[np.float32],
    confidence: NDArray[np.float32],
    size: tuple[int, int] | None,
    min_height: float = 32.0,
) -> NDArray[np.float64]:
    """Confidence, times a penalty for boxes cut by the frame edge and for small boxes."""
    quality = confidence.astype(np.float64).copy()
    heights = xyxy[:, 3] - xyxy[:, 1]
    quality *= np.clip(heights / min_height, 0.0, 1.0)
    if size is not None:
        width, height = size
        margin = 2.0
        cut = (
            (xyxy[:, 0] <= margin)
            | (xyxy[:, 1] <= margin)
            | (xyxy[:, 2] >= width - margin)
            | (xyxy[:, 3] >= height - margin)
        )
        quality[cut] *= 0.5
    return quality


class TrackGallery:
    """Aggregates tracked, embedded detections into per-track gallery entries.

    >>> import numpy as np
    >>> gallery = TrackGallery()
    >>> rows = Detections(xyxy=[[0, 0, 20, 60]], tracker_id=[3], embedding=[[1.0, 0.0]], camera_id="c1",
    ...                   frame_index=0, timestamp=0.0)
    >>> gallery.update(rows)
    []
    >>> [s.entry.track_id for s in gallery.finish()]
    [3]
    """

    def __init__(
        self, *, max_idle: float = 5.0, max_keys: int = 4, max_samples: int = 32, min_height: float = 32.0
    ) -> None:
        if max_keys < 1 or max_samples < max_keys:
            raise ValueError("need max_keys >= 1 and max_samples >= max_keys")
        self.max_idle = max_idle
        self.max_keys = max_keys
        self.max_samples = max_samples
        self.min_height = min_height
        self._tracks: dict[tuple[str, int], _TrackAccumulator] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, detections: Detections, frame_size: tuple[int, int] | None = None) -> list[TrackSummary]:
        """Add one frame's tracked rows (rows without a track or embedding are ignored).

        Returns the tracks of this camera that ended (idle longer than ``max_idle``).
        """
        if detections.camera_id is None or detections.timestamp is None:
            raise ValueError("gallery updates need detections with camera_id and timestamp")
        camera, now = detections.camera_id, float(detections.timestamp)
        tracked = detections[detections.tracker_id >= 0]
        if len(tracked) and tracked.embedding is None:
            raise ValueError("gallery updates need embeddings (run an Embedder before tracking)")
        if len(tracked):
            assert tracked.embedding is not None
            quality = box_quality(tracked.xyxy, tracked.confidence, frame_size, self.min_height)
            for row in range(len(tracked)):
                self._add(camera, now, detections.frame_index or 0, tracked, row, float(quality[row]))
        return self._expire(camera, now)

    def finish(self) -> list[TrackSummary]:
        """End every open track and return them all."""
        done = [self._summarise(track) for track in self._tracks.values() if track.weight > 0]
        self._tracks.clear()
        return done

    def current(self) -> Iterator[TrackSummary]:
        """Summaries of the open tracks, without ending them."""
        return (self._summarise(track) for track in self._tracks.values() if track.weight > 0)

    # ---------------------------------------------------------------------------------- internals
    def _add(self, camera: str, now: float, frame: int, rows: Detections, row: int, quality: float) -> None:
        assert rows.embedding is not None
        key = (camera, int(rows.tracker_id[row]))
        vector = rows.embedding[row]
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _TrackAccumulator(
                camera_id=camera,
                track_id=key[1],
                class_id=int(rows.class_id[row]),
                t_start=now,
                t_end=now,
                weighted_sum=np.zeros(vector.shape[0]),
            )
        track.t_end = max(track.t_end, now)
        track.t_start = min(track.t_start, now)
        weight = max(quality, 1e-3)
        track.weighted_sum += weight * vector
        track.weight += weight
        if quality > track.best_quality:
            track.best_quality = quality
            track.best_frame = frame
            x1, y1, x2, y2 = (float(v) for v in rows.xyxy[row])
            track.best_box = (x1, y1, x2, y2)
        track.samples.append((quality, vector.copy()))
        if len(track.samples) > self.max_samples:
            track.samples.sort(key=lambda sample: -sample[0])
            del track.samples[self.max_samples :]

    def _expire(self, camera: str, now: float) -> list[TrackSummary]:
        ended = [
            key
            for key, track in self._tracks.items()
            if track.camera_id == camera and now - track.t_end > self.max_idle
        ]
        return [self._summarise(self._tracks.pop(key)) for key in ended]

    def _summarise(self, track: _TrackAccumulator) -> TrackSummary:
        mean = track.weighted_sum / max(track.weight, 1e-12)
        embedding = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        box = ",".join(f"{v:.0f}" for v in track.best_box)
        entry = Entry(
            camera_id=track.camera_id,
            track_id=track.track_id,
            class_id=track.class_id,
            t_start=track.t_start,
            t_end=track.t_end,
            crop=f"{track.camera_id}/{track.best_frame}/{box}",
        )
        return TrackSummary(
            entry=entry, embedding=embedding, keys=_key_embeddings(track.samples, self.max_keys)
        )


def _key_embeddings(samples: list[tuple[float, NDArray[np.float32]]], count: int) -> NDArray[np.float32]:
    """Greedy farthest-point picks, starting from the best-quality sample: views that differ."""
    ordered = sorted(samples, key=lambda sample: -sample[0])
    vectors = np.stack([vector for _, vector in ordered]).astype(np.float32)
    chosen = [0]
    nearest = 1.0 - vectors @ vectors[0]
    while len(chosen) < min(count, len(vectors)):
        pick = int(np.argmax(nearest))
        if nearest[pick] <= 1e-6:
            break
        chosen.append(pick)
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[pick])
    keys: NDArray[np.float32] = vectors[chosen]
    return keys
