"""Greedy non-maximum suppression, per class, vectorised over boxes.

The convention is torchvision's and ultralytics' (and OpenCV's ``NMSBoxesBatched`` with
``eta=1``): boxes are continuous ``x1, y1, x2, y2`` (area ``(x2 - x1) * (y2 - y1)``, no ``+1``),
candidates are visited in decreasing score (ties keep their input order), and a candidate is
dropped when its IoU with an already kept box *of the same class* is greater than the threshold.

Classes are kept apart by shifting each class's boxes to its own region of the plane
(torchvision's ``batched_nms`` trick), so one greedy pass handles every class at once.

>>> import numpy as np
>>> boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], np.float32)
>>> non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5).tolist()
[0, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def box_iou(boxes: NDArray[np.floating], others: NDArray[np.floating]) -> NDArray[np.float64]:
    """Pairwise IoU ``(N, M)`` of ``(N, 4)`` and ``(M, 4)`` xyxy boxes (0 where both are empty)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(others, dtype=np.float64).reshape(1, -1, 4)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    iou: NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def non_max_suppression(
    boxes: NDArray[np.floating],
    scores: NDArray[np.floating],
    class_ids: NDArray[np.integer[Any]] | None,
    iou_threshold: float,
    max_detections: int | None = None,
) -> NDArray[np.intp]:
    """Indices of the boxes kept, in decreasing score.

    ``class_ids`` ``None`` suppresses across classes (class-agnostic). At most
    ``max_detections`` indices are returned; the pass stops as soon as that many are kept.
    """
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    score = np.asarray(scores).reshape(-1)
    if score.shape[0] != xyxy.shape[0]:
        raise ValueError(f"scores has {score.shape[0]} rows, expected {xyxy.shape[0]} (rows of boxes)")
    limit = xyxy.shape[0] if max_detections is None else max_detections
    if xyxy.shape[0] == 0 or limit <= 0:
        return np.zeros(0, np.intp)
    if class_ids is not None:
        classes = np.asarray(class_ids).reshape(-1)
        if classes.shape[0] != xyxy.shape[0]:
            raise ValueError(f"class_ids has {classes.shape[0]} rows, expected {xyxy.shape[0]}")
        # Shift every class to its own square, one span apart, so boxes of different classes never overlap.
        low = xyxy.min()
        span = xyxy.max() - low + 1.0
        xyxy = xyxy - low + (classes.astype(np.float64) * span)[:, None]
    x1, y1, x2, y2 = xyxy.T
    area = (x2 - x1) * (y2 - y1)
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        union = area[best] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
