"""Pictures of a run: one frame per camera with every box labelled by its global id and its
track's class, and a map of the site with each identity's path on the ground, in the same colours,
with a legend. ``SnapshotSink`` makes both (``crossview run --snapshot N``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.io.sinks import colour_of, draw_tracks
from crossview.multicam.geometry import GroundProjector, camera_centre
from crossview.runtime.engine import FinishedTrack, Sink, TrackedFrame

__all__ = ["IdentityPath", "SnapshotSink", "label_by_identity", "site_map"]

MAP_SIZE: Final = 900
MARGIN: Final = 40
LEGEND_WIDTH: Final = 320


@dataclass(frozen=True, slots=True)
class IdentityPath:
    """One global identity on the map: each member track's ground points, its class and cameras."""

    global_id: int
    ground: tuple[NDArray[np.float64], ...]
    class_name: str
    cameras: tuple[str, ...]


def label_by_identity(detections: Detections, identities: Mapping[int, tuple[int, int]]) -> Detections:
    """The rows relabelled for drawing: ``tracker_id`` the global id (1-based, -1 when none) and
    ``class_id`` the track's class (``identities``: track id -> (global id, class id))."""
    global_ids = np.array(
        [identities[t][0] + 1 if t in identities else -1 for t in detections.tracker_id.tolist()], np.int64
    )
    classes = np.array(
        [
            identities[t][1] if t in identities else c
            for t, c in zip(detections.tracker_id.tolist(), detections.class_id.tolist(), strict=True)
        ],
        np.int64,
    )
    return detections.replace(tracker_id=global_ids, class_id=classes)


def site_map(
    cameras: Sequence[Camera],
    paths: Sequence[IdentityPath],
    *,
    max_range_m: float = 40.0,
    size: int = MAP_SIZE,
) -> NDArray[np.uint8]:
    """A top view of the site: each calibrated camera's visible ground (outlined, named) and
    position, each identity's path in its colour (the colour its boxes have), and a legend."""
    polygons = {camera.id: GroundProjector(camera).visible_ground(max_range_m) for camera in cameras}
    points = [polygon for polygon in polygons.values() if len(polygon)]
    points += [track[np.all(np.isfinite(track), axis=1)] for path in paths for track in path.ground]
    stacked = (
        np.concatenate([p for p in points if len(p)]) if any(len(p) for p in points) else np.zeros((1, 2))
    )
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    span = max(float(np.max(high - low)), 1.0)
    scale = (size - 2 * MARGIN) / span
    canvas = np.full((size, size + LEGEND_WIDTH, 3), 250, np.uint8)

    def to_pixels(ground: NDArray[np.float64]) -> NDArray[np.int32]:
        x = MARGIN + (ground[:, 0] - low[0]) * scale
        y = size - MARGIN - (ground[:, 1] - low[1]) * scale  # ground +y points up the map
        return np.round(np.column_stack([x, y])).astype(np.int32)

    _grid(canvas, low, high, scale, size)
    for camera in cameras:
        polygon = polygons[camera.id]
        if len(polygon) >= 3:
            outline = to_pixels(polygon)
            cv2.polylines(canvas, [outline.reshape(-1, 1, 2)], True, (150, 150, 150), 1, cv2.LINE_AA)
            corner = outline.min(axis=0)
            cv2.putText(
                canvas,
                camera.id,
                (int(corner[0]) + 3, int(corner[1]) + 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (90, 90, 90),
                1,
                cv2.LINE_AA,
            )
        if camera.intrinsics is not None:
            ((x, y),) = to_pixels(camera_centre(camera)[None, :2])
            cv2.drawMarker(canvas, (int(x), int(y)), (60, 60, 60), cv2.MARKER_TRIANGLE_UP, 12, 2)
    for path in paths:
        colour = colour_of(path.global_id + 1)
        for track in path.ground:  # one line per camera's track: each view's own estimate
            finite = track[np.all(np.isfinite(track), axis=1)]
            if len(finite) == 0:
                continue
            pixels = to_pixels(finite)
            if len(pixels) > 1:
                cv2.polylines(canvas, [pixels.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
            cv2.circle(canvas, tuple(int(v) for v in pixels[-1]), 4, colour, -1, cv2.LINE_AA)
    _legend(canvas, paths, size)
    return canvas


def _grid(
    canvas: NDArray[np.uint8], low: NDArray[np.float64], high: NDArray[np.float64], scale: float, size: int
) -> None:
    """Grid lines every 1, 2, 5 or 10 m (whichever gives about ten), labelled in metres."""
    span = float(np.max(high - low))
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100) if span / s <= 12)
    for axis in (0, 1):
        for value in np.arange(math.floor(low[axis] / step) * step, high[axis] + step, step):
            offset = MARGIN + (value - low[axis]) * scale
            if not MARGIN <= offset <= size - MARGIN:
                continue
            position = round(float(offset if axis == 0 else size - offset))
            start, end = (
                ((position, MARGIN), (position, size - MARGIN))
                if axis == 0
                else ((MARGIN, position), (size - MARGIN, position))
            )
            cv2.line(canvas, start, end, (225, 225, 225), 1)
            label_at = (position + 2, size - MARGIN + 14) if axis == 0 else (4, position - 2)
            cv2.putText(
                canvas,
                f"{value:g} m",
                label_at,
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (140, 140, 140),
                1,
                cv2.LINE_AA,
            )


def _legend(canvas: NDArray[np.uint8], paths: Sequence[IdentityPath], size: int) -> None:
    x = size + 10
    cv2.putText(
        canvas,
        "global id: class, cameras",
        (x, 24),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (40, 40, 40),
        1,
        cv2.LINE_AA,
    )
    for row, path in enumerate(sorted(paths, key=lambda p: p.global_id)[: (size - 50) // 18]):
        y = 46 + 18 * row
        cv2.rectangle(canvas, (x, y - 10), (x + 12, y + 2), colour_of(path.global_id + 1), -1)
        text = f"{path.global_id + 1}: {path.class_name}, {' '.join(path.cameras)}"
        cv2.putText(
            canvas, text[:48], (x + 18, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40), 1, cv2.LINE_AA
        )


class SnapshotSink(Sink):
    """At frame ``index`` of every camera, a picture labelled by global id and class; at the end,
    ``DIR/<camera>.jpg`` and ``DIR/map.png`` (the site map of every identity's path)."""

    def __init__(
        self,
        folder: Path,
        index: int,
        cameras: Sequence[Camera],
        class_names: Mapping[int, str] | None = None,
        *,
        max_range_m: float = 40.0,
    ) -> None:
        self.folder = folder
        self.index = index
        self.cameras = list(cameras)
        self.class_names = dict(class_names or {})
        self.max_range_m = max_range_m
        self.frames: dict[str, tuple[NDArray[np.uint8], Detections]] = {}
        self._tracks: dict[tuple[str, int], tuple[int, int]] = {}  # (camera, track) -> (global id, class)
        self._ground: dict[int, list[NDArray[np.float64]]] = {}
        self._classes: dict[int, list[int]] = {}
        self._cameras_seen: dict[int, set[str]] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        if tracked.index == self.index and tracked.image is not None:
            self.frames[tracked.camera_id] = (tracked.image, tracked.detections)

    def finished(self, track: FinishedTrack) -> None:
        tracklet = track.tracklet
        if track.global_id is None:
            return
        self._tracks[(tracklet.camera_id, tracklet.track_id)] = (track.global_id, tracklet.class_id)
        self._ground.setdefault(track.global_id, []).append(track.ground)
        self._classes.setdefault(track.global_id, []).append(tracklet.class_id)
        self._cameras_seen.setdefault(track.global_id, set()).add(tracklet.camera_id)

    def paths(self) -> list[IdentityPath]:
        found = []
        for global_id, tracks in sorted(self._ground.items()):
            classes = self._classes[global_id]
            majority = max(set(classes), key=classes.count)
            found.append(
                IdentityPath(
                    global_id,
                    tuple(tracks),
                    self.class_names.get(majority, str(majority)),
                    tuple(sorted(self._cameras_seen[global_id])),
                )
            )
        return found

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for camera_id, (image, detections) in self.frames.items():
            identities = {
                track: value for (camera, track), value in self._tracks.items() if camera == camera_id
            }
            drawn = draw_tracks(image, label_by_identity(detections, identities), self.class_names)
            cv2.imwrite(str(self.folder / f"{camera_id}.jpg"), drawn)
        if self.cameras or self._ground:
            cv2.imwrite(
                str(self.folder / "map.png"),
                site_map(self.cameras, self.paths(), max_range_m=self.max_range_m),
            )
