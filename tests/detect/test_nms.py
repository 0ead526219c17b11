"""Per-class NMS against a plain reference and OpenCV's ``NMSBoxesBatched``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.detect.nms import box_iou, non_max_suppression


def reference_nms(
    boxes: NDArray[Any], scores: NDArray[Any], classes: NDArray[Any], threshold: float
) -> list[int]:
    """Textbook greedy NMS, one box at a time, per class."""

    def iou(a: NDArray[Any], b: NDArray[Any]) -> float:
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = width * height
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable: ties keep order
    keep: list[int] = []
    for i in order:
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i]) <= threshold for k in keep):
            keep.append(i)
    return keep


def _random_boxes(n: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, 4, n)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_matches_reference(seed: int, threshold: float) -> None:
    boxes, scores, classes = _random_boxes(300, seed)
    keep = non_max_suppression(boxes, scores, classes, threshold)
    assert keep.tolist() == reference_nms(boxes, scores, classes, threshold)


@pytest.mark.parametrize("seed", range(4))
def test_matches_opencv_batched_nms(seed: int) -> None:
    boxes, scores, classes = _random_boxes(300, seed + 100)
    keep = non_max_suppression(boxes, scores, classes, 0.45)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    opencv = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), 0.0, 0.45)
    assert sorted(keep.tolist()) == sorted(np.asarray(opencv).reshape(-1).tolist())


def test_classes_are_suppressed_separately_unless_agnostic() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 1, 0])
    assert non_max_suppression(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert non_max_suppression(boxes, scores, None, 0.5).tolist() == [0]


def test_ties_keep_input_order_and_threshold_is_exclusive() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    # IoU of box 2 with box 0 is exactly 1/3: kept at threshold 1/3 (only IoU > threshold drops).
    keep = non_max_suppression(boxes, np.array([0.5, 0.5, 0.4]), np.zeros(3, int), 1 / 3)
    assert keep.tolist() == [0, 2]


def test_max_detections_is_a_prefix_of_the_full_result() -> None:
    boxes, scores, classes = _random_boxes(200, 7)
    full = non_max_suppression(boxes, scores, classes, 0.5)
    assert non_max_suppression(boxes, scores, classes, 0.5, max_detections=5).tolist() == full[:5].tolist()


def test_empty_and_misaligned_inputs() -> None:
    empty = non_max_suppression(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5)
    assert empty.shape == (0,)
    assert empty.dtype == np.intp
    with pytest.raises(ValueError, match="scores has 2 rows, expected 1"):
        non_max_suppression(np.zeros((1, 4)), np.zeros(2), None, 0.5)


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 20, 20]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])
