"""Letterbox pre-processing against the two reference implementations, reproduced here.

``yolox_preproc`` follows YOLOX's ``yolox/data/data_augment.py::preproc`` and
``ultralytics_letterbox`` ultralytics' ``LetterBox.__call__`` (``center=True``, ``auto=False``,
``scaleup=True``) followed by its predictor's ``[..., ::-1]``, CHW and ``/ 255``; both line by line.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.detect.preprocess import BoxMapping, Letterbox, letterbox_batch, to_tensor

SIZES = [(62, 128), (576, 768), (128, 16), (100, 100), (31, 47), (417, 300), (20, 1000), (640, 480)]


def yolox_preproc(image: NDArray[np.uint8], height: int, width: int) -> tuple[NDArray[np.float32], float]:
    padded = np.ones((height, width, 3), dtype=np.uint8) * 114
    r = min(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(
        image, (int(image.shape[1] * r), int(image.shape[0] * r)), interpolation=cv2.INTER_LINEAR
    ).astype(np.uint8)
    padded[: int(image.shape[0] * r), : int(image.shape[1] * r)] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), r


def ultralytics_letterbox(
    image: NDArray[np.uint8], height: int, width: int
) -> tuple[NDArray[np.float32], float, tuple[int, int]]:
    shape = image.shape[:2]
    r = min(height / shape[0], width / shape[1])
    new_unpad = round(shape[1] * r), round(shape[0] * r)
    dw, dh = (width - new_unpad[0]) / 2, (height - new_unpad[1]) / 2
    img = image
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    tensor = np.ascontiguousarray(img[None][..., ::-1].transpose(0, 3, 1, 2)).astype(np.float32)
    tensor /= 255
    return tensor[0], r, (left, top)


def _image(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(("net_height", "net_width"), [(416, 416), (64, 64), (384, 640)])
def test_yolox_style_equals_reference_preproc(
    height: int, width: int, net_height: int, net_width: int
) -> None:
    image = _image(height, width)
    style = Letterbox(net_width, net_height, centered=False, size_rounding="floor")
    canvas, mapping = style.apply(image)
    tensor = to_tensor(canvas[None], rgb=False, divisor=1.0)[0]
    expected, ratio = yolox_preproc(image, net_height, net_width)
    np.testing.assert_array_equal(tensor, expected)
    assert (mapping.scale, mapping.pad_x, mapping.pad_y) == (ratio, 0, 0)


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(("net_height", "net_width"), [(640, 640), (64, 64), (384, 640)])
def test_ultralytics_style_equals_reference_letterbox(
    height: int, width: int, net_height: int, net_width: int
) -> None:
    image = _image(height, width, seed=1)
    style = Letterbox(net_width, net_height, centered=True, size_rounding="nearest")
    canvas, mapping = style.apply(image)
    tensor = to_tensor(canvas[None], rgb=True, divisor=255.0)[0]
    expected, ratio, (left, top) = ultralytics_letterbox(image, net_height, net_width)
    assert tensor.shape == expected.shape == (3, net_height, net_width)
    np.testing.assert_array_equal(tensor, expected)
    assert (mapping.scale, mapping.pad_x, mapping.pad_y) == (ratio, left, top)


def test_odd_padding_goes_bottom_and_right() -> None:
    # 128x62 into 64x64: resized 64x31, 33 rows of padding: 16 above, 17 below (ultralytics' split).
    canvas, mapping = Letterbox(64, 64, True, "nearest").apply(np.zeros((62, 128, 3), np.uint8))
    rows = np.flatnonzero((canvas == 114).all(axis=(1, 2)))
    assert rows.tolist() == [*range(16), *range(47, 64)]
    assert (mapping.pad_x, mapping.pad_y, mapping.scale) == (0, 16, 0.5)


def test_top_left_padding_fills_right_and_bottom_only() -> None:
    canvas, mapping = Letterbox(64, 64, False, "floor").apply(np.zeros((62, 128, 3), np.uint8))
    assert (canvas[:31] == 0).all() and (canvas[31:] == 114).all()
    assert (mapping.pad_x, mapping.pad_y) == (0, 0)


def test_mapping_inverts_the_letterbox_and_clips() -> None:
    mapping = BoxMapping(scale=0.5, pad_x=28, pad_y=0, source_width=16, source_height=128)
    boxes = np.array([[30, 10, 34, 20], [0, -5, 100, 70], [20, 0, 27, 5]], np.float32)
    expected = [[4, 20, 12, 40], [0, 0, 16, 128], [0, 0, 0, 10]]
    np.testing.assert_array_equal(mapping.to_source(boxes), np.float32(expected))
    assert mapping.to_source(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_letterbox_batch_stacks_frames_of_different_sizes() -> None:
    images = [_image(62, 128), _image(128, 16, seed=3), _image(64, 64, seed=4)]
    style = Letterbox(64, 64, True, "nearest")
    batch, mappings = letterbox_batch(images, style)
    assert batch.shape == (3, 64, 64, 3)
    for image, canvas, mapping in zip(images, batch, mappings, strict=True):
        single, single_mapping = style.apply(image)
        np.testing.assert_array_equal(canvas, single)
        assert mapping == single_mapping
    np.testing.assert_array_equal(batch[2], images[2])  # same size: copied, not resampled


def test_extreme_aspect_ratio_keeps_at_least_one_row() -> None:
    # YOLOX's own preproc asks OpenCV for a 0-row image here (and fails); one row is kept instead.
    canvas, mapping = Letterbox(64, 64, False, "floor").apply(_image(10, 1000))
    assert (canvas[0] != 114).any() and (canvas[1:] == 114).all()
    assert mapping.scale == 0.064


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Letterbox(0, 64, True, "nearest")
    with pytest.raises(ValueError, match="pad_value"):
        Letterbox(64, 64, True, "nearest", pad_value=300)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        to_tensor(np.zeros((64, 64, 3), np.uint8), rgb=True, divisor=255.0)
