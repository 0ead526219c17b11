"""Where a run's results go: per-camera MOT files, one multi-camera file, a search index and a
best-view thumbnail per global identity. Each is a ``Sink`` of the runtime (``engine.Sink``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.io.formats._text import format_number
from crossview.io.formats.mtmc import MtmcTable
from crossview.multicam.tracklets import whole_boxes
from crossview.runtime.engine import FinishedTrack, Sink, TrackedFrame
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, VectorIndex

__all__ = ["IndexSink", "MotSink", "MtmcSink", "ThumbnailSink", "track_entry"]

THUMBNAIL_SIDE: Final = 256


class MotSink(Sink):
    """``DIR/<camera>.txt``: MOTChallenge rows ``frame,id,x,y,w,h,conf,class,-1,-1`` (frames from 1),
    tracked rows only, written as frames come (nothing is kept in memory)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, TextIO] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        handle = self._files.get(tracked.camera_id)
        if handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = self._files[tracked.camera_id] = (self.folder / f"{tracked.camera_id}.txt").open("w")
        detections = tracked.detections
        frame = tracked.index + 1
        for row in np.flatnonzero(detections.tracker_id >= 0).tolist():
            x, y, w, h = (format_number(float(v)) for v in detections.xywh[row])
            handle.write(
                f"{frame},{int(detections.tracker_id[row])},{x},{y},{w},{h},"
                f"{format_number(float(detections.confidence[row]))},{int(detections.class_id[row])},-1,-1\n"
            )

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


class MtmcSink(Sink):
    """Every box of every associated track with its global id and ground position: AI City rows
    ``camera obj frame x y w h xworld yworld`` (ids and frames from 1; -1 where not located).

    With a ``path`` the rows are written as tracks finish (in that order, nothing kept); with
    ``keep`` they are also gathered into ``table`` at the end.
    """

    def __init__(self, path: Path | None = None, *, keep: bool | None = None) -> None:
        self.path = path
        self.keep = path is None if keep is None else keep
        self._file: TextIO | None = None
        self._cameras: list[str] = []
        self._rows: list[NDArray[np.float64]] = []
        self.table = MtmcTable.from_rows([], np.zeros((0, 8)))

    def finished(self, track: FinishedTrack) -> None:
        if track.global_id is None or len(track.frames) == 0:
            return
        world = np.where(np.isfinite(track.ground), track.ground, -1.0)
        boxes = track.boxes
        block = np.column_stack(
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
        camera = track.tracklet.camera_id
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("w")
            for row in block:
                numbers = " ".join(format_number(value) for value in row[2:])
                self._file.write(f"{camera} {int(row[0])} {int(row[1])} {numbers}\n")
        if self.keep:
            self._rows.append(block)
            self._cameras.extend([camera] * len(block))

    def close(self) -> None:
        if self.path is not None and self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        if self._file is not None:
            self._file.close()
        if self._rows:
            self.table = MtmcTable.from_rows(self._cameras, np.concatenate(self._rows))


class IndexSink(Sink):
    """Each finished track's appearance with its summary (``track_entry``: camera, times, class,
    global id, ground position, best view) in a search index, searchable with ``crossview search``.

    ``index`` is an open ``VectorIndex``, left open (its opener closes it), or the folder of a
    durable FAISS index of ``dim``-vectors made here and closed with the run. New entries take
    the ids after the largest stored one. With ``new_identities`` the run's global ids also start
    after the largest stored one: a run appending to an index that earlier runs filled does not
    give its objects the numbers of theirs (its associator never saw them).
    """

    def __init__(
        self,
        index: VectorIndex | Path,
        dim: int | None = None,
        model: str | None = None,
        *,
        new_identities: bool = False,
    ) -> None:
        if isinstance(index, Path):
            if dim is None:
                raise ValueError(f"an index sink writing to the folder {index} needs the vectors' dim")
            self.index: VectorIndex = FaissIndex(index, dim, factory="Flat", model=model)
        else:
            self.index = index
        self._owned = isinstance(index, Path)
        largest_id, largest_global = self.index.largest_ids()
        self._next = largest_id + 1
        self.global_offset = largest_global + 1 if new_identities else 0
        self.added: Counter[str] = Counter()  # entries written, per camera

    def finished(self, track: FinishedTrack) -> None:
        entry = track_entry(track)
        if track.global_id is not None and self.global_offset:
            entry = entry.model_copy(update={"global_id": track.global_id + self.global_offset})
        vector = np.asarray(track.tracklet.embedding, np.float32)[None, :]
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            self.index.add([self._next], vector / norm, [entry])
            self._next += 1
            self.added[entry.camera_id] += 1

    def close(self) -> None:
        if self._owned:
            self.index.close()


def track_entry(track: FinishedTrack) -> Entry:
    """A finished track's search entry: camera, track, global id (-1: none), majority class, time
    span, median ground position (None where never located) and its best view as
    ``camera/frame/x1,y1,x2,y2``: the largest of its whole boxes (of all its boxes when none is
    whole), from which a query crop can be cut."""
    tracklet = track.tracklet
    located = track.ground[np.all(np.isfinite(track.ground), axis=1)]
    x, y = (float(v) for v in np.median(located, axis=0)) if len(located) else (None, None)
    return Entry(
        camera_id=tracklet.camera_id,
        track_id=tracklet.track_id,
        global_id=-1 if track.global_id is None else track.global_id,
        class_id=tracklet.class_id,
        t_start=tracklet.t_start,
        t_end=tracklet.t_end,
        x=x,
        y=y,
        crop=_best_view(track),
    )


def _best_view(track: FinishedTrack) -> str:
    boxes = track.boxes
    if len(boxes) == 0:
        return ""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    whole = track.tracklet.clear
    if whole is not None and len(whole) == len(boxes) and whole.any():
        area = np.where(whole, area, -np.inf)
    row = int(np.argmax(area))
    box = ",".join(f"{float(v):.0f}" for v in boxes[row])
    return f"{track.tracklet.camera_id}/{int(track.frames[row])}/{box}"


@dataclass(slots=True)
class _View:
    score: float
    crop: NDArray[np.uint8]


class ThumbnailSink(Sink):
    """``DIR/<global id>.jpg``: the best view of each global identity, the largest whole box of
    its tracks (weighted by confidence), at most 256 px a side, written when a track finishes with
    a better view. Memory: one crop per live track and one number per identity."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tracks: dict[tuple[str, int], _View] = {}
        self._identities: dict[int, float] = {}  # global id -> score of the view written

    def frame(self, tracked: TrackedFrame) -> None:
        detections, image = tracked.detections, tracked.image
        if len(detections) == 0 or image is None:
            return
        height, width = image.shape[:2]
        whole = whole_boxes(detections.xyxy, width, height)
        for row in np.flatnonzero((detections.tracker_id >= 0) & whole).tolist():
            x1, y1, x2, y2 = (round(float(v)) for v in detections.xyxy[row])
            score = max(0, x2 - x1) * max(0, y2 - y1) * float(detections.confidence[row])
            key = (tracked.camera_id, int(detections.tracker_id[row]))
            best = self._tracks.get(key)
            if score <= 0 or (best is not None and best.score >= score):
                continue
            crop = image[max(0, y1) : y2, max(0, x1) : x2]
            self._tracks[key] = _View(score, _shrunk(crop))

    def finished(self, track: FinishedTrack) -> None:
        view = self._tracks.pop((track.tracklet.camera_id, track.tracklet.track_id), None)
        if view is None or track.global_id is None:
            return
        if view.score > self._identities.get(track.global_id, 0.0):
            self._identities[track.global_id] = view.score
            self.folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(self.folder / f"{track.global_id + 1}.jpg"), view.crop)


def _shrunk(crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
    side = max(crop.shape[:2])
    if side <= THUMBNAIL_SIDE:
        return np.ascontiguousarray(crop)
    scale = THUMBNAIL_SIDE / side
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)
