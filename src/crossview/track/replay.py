"""Track precomputed detections (MOTChallenge ``det.txt``) and write results in the same format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from crossview.core.detections import Detections
from crossview.io.formats.mot import MotTable
from crossview.track.base import Tracker

BoxSource = Literal["track", "detection"]


def detections_by_frame(
    table: MotTable, num_frames: int | None = None, *, camera_id: str | None = None
) -> Iterator[Detections]:
    """One ``Detections`` per frame ``1..num_frames`` (empty where the file has none), in order.

    ``frame_index`` is the MOT frame number minus one, as ``Frame.index`` counts from 0.
    """
    last = int(table.frame.max(initial=0)) if num_frames is None else num_frames
    order = np.argsort(table.frame, kind="stable")
    frames = table.frame[order]
    bounds = np.searchsorted(frames, np.arange(1, last + 2))
    for frame in range(1, last + 1):
        rows = order[bounds[frame - 1] : bounds[frame]]
        yield Detections.from_xywh(
            table.xywh[rows], confidence=table.score[rows], camera_id=camera_id, frame_index=frame - 1
        )


def tracked_rows(tracked: Detections, *, box: BoxSource = "track") -> MotTable:
    """MOTChallenge result rows for one frame's rows that belong to a track.

    ``box="track"`` writes the tracker's filtered box (``data["track_xyxy"]``) where it has one.
    """
    keep = tracked.tracker_id >= 0
    rows = tracked[keep]
    if box == "track" and "track_xyxy" in rows.data:
        xyxy = rows.data["track_xyxy"].astype(np.float64)
    else:
        xyxy = rows.xyxy.astype(np.float64)
    n = len(rows)
    frame = (rows.frame_index or 0) + 1
    return MotTable(
        frame=np.full(n, frame, np.int64),
        track_id=rows.tracker_id.copy(),
        xywh=np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]),
        score=rows.confidence.astype(np.float64),
        extra=np.full((n, 3), -1.0),
    )


def track_table(
    table: MotTable, tracker: Tracker, *, num_frames: int | None = None, box: BoxSource = "track"
) -> MotTable:
    """Run ``tracker`` over every frame of a detection table; the result rows of all frames."""
    parts = [
        tracked_rows(tracker.update(detections), box=box)
        for detections in detections_by_frame(table, num_frames)
    ]
    return MotTable.concatenate(parts)
