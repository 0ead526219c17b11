"""Box overlap shared by the metrics, written to match the reference implementations bit for bit."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_EPS = np.finfo(np.float64).eps


def iou_xywh_pairs(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of row-aligned box pairs ``a[i]`` and ``b[i]``, boxes as ``(x, y, w, h)``.

    Degenerate boxes (area <= eps) and empty unions give 0. The arithmetic follows
    TrackEval's ``_calculate_box_ious`` step for step (corners first, areas from the corners),
    so results agree to the last bit, not just to a tolerance.
    """
    ax1, ay1 = a[:, 0], a[:, 1]
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0], b[:, 1]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    width = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0)
    height = np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0)
    intersection = width * height
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    union = area_a + area_b - intersection
    degenerate = (area_a <= _EPS) | (area_b <= _EPS) | (union <= _EPS)
    intersection = np.where(degenerate, 0.0, intersection)
    union = np.where(union <= _EPS, 1.0, union)
    return intersection / union


def iou_xywh(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pairwise IoU matrix ``(len(a), len(b))`` of ``(x, y, w, h)`` boxes."""
    rows = np.repeat(np.arange(len(a)), len(b))
    cols = np.tile(np.arange(len(b)), len(a))
    return iou_xywh_pairs(a[rows], b[cols]).reshape(len(a), len(b))


def overlapping_pairs(
    a_frame: NDArray[np.int64],
    a_xywh: NDArray[np.float64],
    b_frame: NDArray[np.int64],
    b_xywh: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Index pairs ``(i, j)`` with ``a_frame[i] == b_frame[j]`` whose boxes share positive area.

    A sweep over ``x`` done with two ``searchsorted`` calls for all frames at once: the
    work grows with the number of boxes and true overlaps, not with boxes squared.
    Pairs come out ordered by ``i``; boxes with non-positive width or height never pair.
    """
    empty = np.zeros(0, np.int64)
    if len(a_frame) == 0 or len(b_frame) == 0:
        return empty, empty
    a_x1, a_x2 = a_xywh[:, 0], a_xywh[:, 0] + a_xywh[:, 2]
    b_x1, b_x2 = b_xywh[:, 0], b_xywh[:, 0] + b_xywh[:, 2]
    low = min(float(a_x1.min()), float(b_x1.min()))
    widest = float(max(np.max(b_xywh[:, 2]), 0.0))
    scale = max(float(a_x2.max()), float(b_x2.max())) - low + widest + 1.0
    order = np.lexsort((b_x1, b_frame))
    keys = b_frame[order] * scale + (b_x1[order] - low)
    start = np.searchsorted(keys, a_frame * scale + (a_x1 - low - widest), side="left")
    end = np.searchsorted(keys, a_frame * scale + (a_x2 - low), side="left")
    counts = np.maximum(end - start, 0)
    first = np.cumsum(counts) - counts
    rows = np.repeat(np.arange(len(a_frame), dtype=np.int64), counts)
    cols = order[start[rows] + (np.arange(len(rows), dtype=np.int64) - first[rows])]
    a_y1, a_y2 = a_xywh[rows, 1], a_xywh[rows, 1] + a_xywh[rows, 3]
    b_y1, b_y2 = b_xywh[cols, 1], b_xywh[cols, 1] + b_xywh[cols, 3]
    overlap = (
        (b_frame[cols] == a_frame[rows])
        & (b_x2[cols] > a_x1[rows])
        & (b_x1[cols] < a_x2[rows])
        & (b_y2 > a_y1)
        & (b_y1 < a_y2)
    )
    return rows[overlap], cols[overlap].astype(np.int64)
