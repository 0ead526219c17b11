"""Where a run's results go: per-camera MOT files, one multi-camera file, a search index and a
best-view thumbnail per global identity. Each is a ``Sink`` of the runtime (``engine.Sink``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.io.formats.mot import MotTable, write_mot
from crossview.io.formats.mtmc import MtmcTable, write_mtmc
from crossview.multicam.tracklets import whole_boxes
from crossview.runtime.engine import FinishedTrack, Sink, TrackedFrame
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry

__all__ = ["IndexSink", "MotSink", "MtmcSink", "ThumbnailSink"]

THUMBNAIL_SIDE: Final = 256


class MotSink(Sink):
    """``DIR/<camera>.txt``: MOTChallenge rows ``frame,id,x,y,w,h,conf,class,-1,-1`` (frames from 1),
    tracked rows only; written at the end of the run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._rows: dict[str, list[NDArray[np.float64]]] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        detections = tracked.detections
        keep = detections.tracker_id >= 0
        if not np.any(keep):
            self._rows.setdefault(tracked.camera_id, [])
            return
        rows = detections[keep]
        block = np.column_stack(
            [
                np.full(len(rows), tracked.frame.index + 1),
                rows.tracker_id,
                rows.xywh,
                rows.confidence,
                rows.class_id,
                np.full((len(rows), 2), -1.0),
            ]
        )
        self._rows.setdefault(tracked.camera_id, []).append(block.astype(np.float64))

    def close(self) -> None:
        for camera_id, blocks in self._rows.items():
            array = np.concatenate(blocks) if blocks else np.zeros((0, 10))
            write_mot(self.folder / f"{camera_id}.txt", MotTable.from_array(array))


class MtmcSink(Sink):
    """Every box of every associated track with its global id and ground position: AI City rows
    ``camera obj frame x y w h xworld yworld`` (ids and frames from 1; -1 where not located)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._cameras: list[str] = []
        self._rows: list[NDArray[np.float64]] = []
        self.table = MtmcTable.from_rows([], np.zeros((0, 8)))

    def finished(self, track: FinishedTrack) -> None:
        if track.global_id is None or len(track.frames) == 0:
            return
        world = np.where(np.isfinite(track.ground), track.ground, -1.0)
        boxes = track.boxes
        self._rows.append(
            np.column_stack(
                [
                    np.full(len(track.frames), track.global_id + 1),
                    track.frames + 1,
                    boxes[:, 0],
                    boxes[:, 1],
                    boxes[:, 2] - boxes[:, 0],
                    boxes[:, 3] - boxes[:, 1],
                    world,
                ]
            )
        )
        self._cameras.extend([track.tracklet.camera_id] * len(track.frames))

    def close(self) -> None:
        if self._rows:
            self.table = MtmcTable.from_rows(self._cameras, np.concatenate(self._rows))
        if self.path is not None:
            write_mtmc(self.path, self.table)


class IndexSink(Sink):
    """Each finished track's appearance, with its camera, times, class, global id and ground
    position, in a durable FAISS index (searchable with ``crossview search``)."""

    def __init__(self, folder: Path, dim: int, model: str | None = None) -> None:
        self.index = FaissIndex(folder, dim, factory="Flat", model=model)
        self._next = self.index.count() + 1

    def finished(self, track: FinishedTrack) -> None:
        tracklet = track.tracklet
        located = track.ground[np.all(np.isfinite(track.ground), axis=1)]
        x, y = (float(v) for v in np.median(located, axis=0)) if len(located) else (None, None)
        entry = Entry(
            camera_id=tracklet.camera_id,
            track_id=tracklet.track_id,
            global_id=-1 if track.global_id is None else track.global_id,
            class_id=tracklet.class_id,
            t_start=tracklet.t_start,
            t_end=tracklet.t_end,
            x=x,
            y=y,
        )
        vector = np.asarray(tracklet.embedding, np.float32)[None, :]
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            self.index.add([self._next], vector / norm, [entry])
            self._next += 1

    def close(self) -> None:
        self.index.close()


@dataclass(slots=True)
class _View:
    score: float
    crop: NDArray[np.uint8]


class ThumbnailSink(Sink):
    """``DIR/<global id>.jpg``: the best view of each global identity, the largest whole box of
    its tracks (weighted by confidence), at most 256 px a side. Memory: one crop per live track."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tracks: dict[tuple[str, int], _View] = {}
        self._identities: dict[int, _View] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        detections = tracked.detections
        if len(detections) == 0:
            return
        height, width = tracked.frame.image.shape[:2]
        whole = whole_boxes(detections.xyxy, width, height)
        for row in np.flatnonzero((detections.tracker_id >= 0) & whole).tolist():
            x1, y1, x2, y2 = (round(float(v)) for v in detections.xyxy[row])
            score = max(0, x2 - x1) * max(0, y2 - y1) * float(detections.confidence[row])
            key = (tracked.camera_id, int(detections.tracker_id[row]))
            best = self._tracks.get(key)
            if score <= 0 or (best is not None and best.score >= score):
                continue
            crop = tracked.frame.image[max(0, y1) : y2, max(0, x1) : x2]
            self._tracks[key] = _View(score, _shrunk(crop))

    def finished(self, track: FinishedTrack) -> None:
        view = self._tracks.pop((track.tracklet.camera_id, track.tracklet.track_id), None)
        if view is None or track.global_id is None:
            return
        best = self._identities.get(track.global_id)
        if best is None or view.score > best.score:
            self._identities[track.global_id] = view

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for global_id, view in sorted(self._identities.items()):
            cv2.imwrite(str(self.folder / f"{global_id + 1}.jpg"), view.crop)

    @property
    def identities(self) -> Mapping[int, NDArray[np.uint8]]:
        return {global_id: view.crop for global_id, view in self._identities.items()}


def _shrunk(crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
    side = max(crop.shape[:2])
    if side <= THUMBNAIL_SIDE:
        return np.ascontiguousarray(crop)
    scale = THUMBNAIL_SIDE / side
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)
