"""Cutting boxes out of frames as fixed-size crops, and the batching every crop embedder shares.

``crop_boxes`` turns one image's boxes into an ``(N, height, width, 3)`` stack: boxes are clipped
to the image, boxes thinner than ``min_side`` pixels (degenerate, or lying on or beyond the border)
are widened around their centre and moved inside the image, so every box yields a crop and none
raises. ``embed_detections`` runs a crop embedder over the boxes of many frames in chunks of a
fixed number of crops (bounded memory, whatever the number of frames) and hands back the same rows
with ``embedding`` filled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.core.detections import Detections
from crossview.core.frame import Frame

#: ``(N, height, width, 3)`` uint8 BGR crops in, ``(N, dim)`` float32 out.
CropFunction = Callable[[NDArray[np.uint8]], NDArray[np.float32]]

MIN_SIDE: Final = 8


def crop_boxes(
    image: NDArray[np.uint8], xyxy: ArrayLike, size: tuple[int, int], *, min_side: int = MIN_SIDE
) -> NDArray[np.uint8]:
    """The ``xyxy`` boxes of ``image`` resized to ``size`` (``(height, width)``): ``(N, h, w, 3)`` uint8.

    Box edges are rounded outwards to whole pixels and clipped to the image. A box narrower or
    lower than ``min_side`` pixels (after clipping; this includes empty boxes and boxes outside
    the image) is widened to ``min_side`` around its centre and shifted inside the image, so a
    crop is always taken. Shrinking uses area averaging (no aliasing), enlarging bilinear
    interpolation.

    >>> image = np.zeros((50, 80, 3), np.uint8)
    >>> crop_boxes(image, [[10, 5, 30, 45], [79, 49, 80, 50], [-20, -9, -10, -1]], (16, 8)).shape
    (3, 16, 8, 3)
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"crop size must be positive (height, width), got {size}")
    if min_side < 1:
        raise ValueError(f"min_side must be at least 1, got {min_side}")
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    crops = np.empty((boxes.shape[0], height, width, 3), np.uint8)
    if boxes.shape[0] == 0:
        return crops
    image_height, image_width = image.shape[:2]
    x1, x2 = _span(boxes[:, 0], boxes[:, 2], image_width, min_side)
    y1, y2 = _span(boxes[:, 1], boxes[:, 3], image_height, min_side)
    for row, (left, top, right, bottom) in enumerate(zip(x1, y1, x2, y2, strict=True)):
        crops[row] = _resize(image[top:bottom, left:right], size)
    return crops


def resize_images(images: Sequence[NDArray[np.uint8]], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Whole images (already crops, any sizes) resized to ``size``: ``(N, height, width, 3)`` uint8.

    Raises ``ValueError`` naming the image that is not ``(H, W, 3)`` uint8 with pixels.
    """
    height, width = size
    out = np.empty((len(images), height, width, 3), np.uint8)
    for row, image in enumerate(images):
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"images[{row}] must have shape (H, W, 3) with H, W > 0, got {array.shape}")
        if array.dtype != np.uint8:
            raise ValueError(f"images[{row}] must be uint8 (BGR), got {array.dtype}")
        out[row] = _resize(array, size)
    return out


def embed_in_chunks(
    crops: Iterator[NDArray[np.uint8]], embed_crops: CropFunction, dim: int, chunk_size: int
) -> NDArray[np.float32]:
    """Feed stacks of crops to ``embed_crops`` exactly ``chunk_size`` at a time (the last may be smaller).

    ``crops`` yields ``(n, h, w, 3)`` stacks of any ``n`` (one frame's boxes, say); they are
    regrouped so the model sees full chunks while at most one chunk plus one stack is held.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    results: list[NDArray[np.float32]] = []
    pending: list[NDArray[np.uint8]] = []
    held = 0
    for stack in crops:
        if stack.shape[0] == 0:
            continue
        pending.append(stack)
        held += stack.shape[0]
        while held >= chunk_size:
            batch = np.concatenate(pending) if len(pending) > 1 else pending[0]
            results.append(_checked(embed_crops(batch[:chunk_size]), chunk_size, dim))
            rest = batch[chunk_size:]
            pending = [rest] if rest.shape[0] else []
            held = rest.shape[0]
    if held:
        batch = np.concatenate(pending) if len(pending) > 1 else pending[0]
        results.append(_checked(embed_crops(batch), held, dim))
    if not results:
        return np.zeros((0, dim), np.float32)
    return np.concatenate(results)


def embed_detections(
    frames: Sequence[Frame],
    detections: Sequence[Detections],
    embed_crops: CropFunction,
    *,
    size: tuple[int, int],
    dim: int,
    chunk_size: int,
    min_side: int = MIN_SIDE,
) -> list[Detections]:
    """The ``Embedder.embed`` contract over a crop function: same rows, ``embedding`` filled.

    Crops of all frames are batched together in chunks of ``chunk_size``. ``frames`` and
    ``detections`` must pair up one to one; where both name a camera or frame index they must
    agree (a mismatched pair would embed the wrong pixels).
    """
    if len(frames) != len(detections):
        raise ValueError(f"got {len(frames)} frames but {len(detections)} Detections; they pair one to one")
    for position, (frame, table) in enumerate(zip(frames, detections, strict=True)):
        if table.camera_id is not None and table.camera_id != frame.camera_id:
            raise ValueError(
                f"detections[{position}] belong to camera {table.camera_id!r}, "
                f"frames[{position}] to {frame.camera_id!r}"
            )
        if table.frame_index is not None and table.frame_index != frame.index:
            raise ValueError(
                f"detections[{position}] belong to frame {table.frame_index}, "
                f"frames[{position}] is frame {frame.index}"
            )
    stacks = (
        crop_boxes(frame.image, table.xyxy, size, min_side=min_side)
        for frame, table in zip(frames, detections, strict=True)
    )
    embeddings = embed_in_chunks(stacks, embed_crops, dim, chunk_size)
    bounds = np.cumsum([len(table) for table in detections])[:-1]
    parts = np.split(embeddings, bounds) if len(detections) else []
    return [table.replace(embedding=part) for table, part in zip(detections, parts, strict=True)]


def l2_normalised(features: NDArray[Any], source: str) -> NDArray[np.float32]:
    """Rows scaled to unit length, float32; ``ValueError`` naming ``source`` for NaN or all-zero rows."""
    array = np.asarray(features, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        rows = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
        raise ValueError(f"{source} produced non-finite features for crops {rows[:10].tolist()}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(
            f"{source} produced all-zero features for crops {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()}"
        )
    normalised: NDArray[np.float32] = np.ascontiguousarray(array / norms, dtype=np.float32)
    return normalised


# ------------------------------------------------------------------------------ internals
def _span(
    low: NDArray[np.float64], high: NDArray[np.float64], limit: int, min_side: int
) -> tuple[list[int], list[int]]:
    """Whole-pixel ``[start, stop)`` ranges inside ``[0, limit)``, each at least ``min_side`` long."""
    side = min(min_side, limit)
    start = np.floor(np.clip(low, 0, limit))
    stop = np.ceil(np.clip(high, 0, limit))
    thin = stop - start < side
    centre = (np.clip(low, 0, limit) + np.clip(high, 0, limit)) / 2
    start = np.where(thin, np.clip(np.round(centre - side / 2), 0, limit - side), start)
    stop = np.where(thin, start + side, stop)
    return start.astype(np.int64).tolist(), stop.astype(np.int64).tolist()


def _resize(image: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.uint8]:
    height, width = size
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, (width, height), interpolation=interpolation), dtype=np.uint8)


def _checked(features: NDArray[np.float32], rows: int, dim: int) -> NDArray[np.float32]:
    if features.shape != (rows, dim):
        raise ValueError(f"crop embedder returned shape {features.shape}, expected ({rows}, {dim})")
    return features
