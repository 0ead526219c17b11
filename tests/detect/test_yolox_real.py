"""YOLOX-Nano on real frames of ``vtest.avi`` (768x576 street scene), checked against hand-made facts.

The facts below were read off frames 50 and 200 (viewed annotated, enlarged): the pedestrians'
boxes are hand-drawn around each person; two vehicles are parked at the top right (a white van
and the front of a light blue car cut by the right edge); a blue lectern-shaped sign on the
grass at about (31, 110)-(48, 142) is *not* a person, though YOLOX-Nano calls it one (score
about 0.5 in every frame), so it is kept out of the person checks. A second, independent method
(background subtraction, ``MotionDetector``) must agree: every sizeable moving region is
covered by a person box.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.factory import make_detector
from crossview.detect.motion import MotionDetector
from crossview.detect.nms import box_iou
from crossview.detect.onnx import OnnxDetectorConfig, YoloV8Detector, YoloxDetector
from tests.conftest import shared_path

# hand-drawn boxes (x1, y1, x2, y2) around every pedestrian
PEOPLE = {
    50: [
        (372, 180, 400, 259),  # standing, left of the sign
        (404, 178, 430, 255),  # behind the sign, only head and legs visible
        (433, 176, 460, 247),  # dark coat, right of the sign
        (505, 214, 542, 309),  # red and navy jacket
        (551, 213, 588, 303),  # blonde woman in black
        (670, 256, 715, 371),  # walking man, right
    ],
    200: [
        (81, 152, 111, 219),  # white hoodie, left
        (219, 188, 250, 267),
        (487, 146, 519, 223),
        (616, 264, 650, 369),
        (703, 254, 744, 355),
        (675, 97, 703, 154),  # the pair by the van
        (701, 104, 723, 156),
    ],
}
VEHICLES = [(651, 42, 724, 100), (732, 51, 768, 94)]  # white van, light blue car (both parked)
SIGN = (31, 110, 48, 142)
PERSON, VEHICLE_CLASSES = 0, {2, 5, 7}  # COCO: person; car, bus, truck


@pytest.fixture(scope="module")
def frames() -> dict[int, Frame]:
    path = shared_path("data", "video", "vtest.avi")
    capture = cv2.VideoCapture(str(path))
    decoded: dict[int, Frame] = {}
    for index in range(201):
        ok, image = capture.read()
        assert ok, f"could not decode frame {index} of {path}"
        decoded[index] = Frame(np.asarray(image), camera_id="vtest", index=index, timestamp=index / 10)
    capture.release()
    return decoded


@pytest.fixture(scope="module")
def detector() -> YoloxDetector:
    return YoloxDetector(
        shared_path("models", "yolox_nano.onnx"),
        OnnxDetectorConfig(class_names=shared_path("models", "coco_classes.txt"), intra_op_num_threads=2),
    )


def _people(result: Detections, min_score: float) -> Detections:
    keep = (result.class_id == PERSON) & (result.confidence > min_score)
    not_sign = box_iou(result.xyxy, np.array([SIGN]))[:, 0] < 0.5
    return result[keep & not_sign]


def test_model_is_read_as_declared(detector: YoloxDetector) -> None:
    assert detector.input_size == (416, 416)
    assert detector.num_classes == 80 and detector.class_names[:3] == ("person", "bicycle", "car")
    assert detector.batch_capacity == 1  # fixed batch: frames run one by one


@pytest.mark.parametrize("index", [50, 200])
def test_finds_the_pedestrians_where_they_are(
    detector: YoloxDetector, frames: dict[int, Frame], index: int
) -> None:
    result = detector.detect([frames[index]])[0]
    assert (result.camera_id, result.frame_index) == ("vtest", index)
    assert (result.xyxy >= 0).all() and (result.xyxy[:, [0, 2]] <= 768).all()
    assert (result.xyxy[:, [1, 3]] <= 576).all()
    truth = np.array(PEOPLE[index], np.float32)
    people = _people(result, 0.25)
    iou = box_iou(truth, people.xyxy)
    # every hand-drawn pedestrian is found, tightly, and nothing else is called a person
    assert (iou.max(axis=1) > 0.6).all(), iou.max(axis=1)
    assert len(people) == len(truth)
    confident = _people(result, 0.6)
    assert len(confident) >= len(truth) - 2
    width, height = people.xywh[:, 2], people.xywh[:, 3]
    assert ((height / width > 1.5) & (height / width < 4.5)).all()  # upright people


def test_finds_the_parked_vehicles(detector: YoloxDetector, frames: dict[int, Frame]) -> None:
    for index in (50, 200):
        result = detector.detect([frames[index]])[0]
        vehicles = result[np.isin(result.class_id, list(VEHICLE_CLASSES)) & (result.confidence > 0.5)]
        iou = box_iou(np.array(VEHICLES, np.float32), vehicles.xyxy)
        assert (iou.max(axis=1) > 0.7).all(), iou


def test_agrees_with_background_subtraction(detector: YoloxDetector, frames: dict[int, Frame]) -> None:
    motion = MotionDetector()  # its defaults, whatever their tuning: the check is loose on purpose
    moving = motion.detect([frames[i] for i in range(201)])
    for index in (50, 200):
        regions = moving[index]
        # bodies or sizeable parts of them (a standing person may only show moving legs)
        regions = regions[regions.xywh[:, 3] >= 20]
        assert len(regions) >= 3
        people = _people(detector.detect([frames[index]])[0], 0.25).xyxy
        # intersection over the motion region's area: each moving blob lies mostly inside a person box
        top_left = np.maximum(regions.xyxy[:, None, :2], people[None, :, :2])
        bottom_right = np.minimum(regions.xyxy[:, None, 2:], people[None, :, 2:])
        inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
        covered = inter.max(axis=1) / regions.area
        assert (covered > 0.6).all(), (index, covered)


def test_batches_of_frames_equal_single_frames(detector: YoloxDetector, frames: dict[int, Frame]) -> None:
    chosen = [frames[i] for i in (0, 50, 100, 200)]
    together = detector.detect(chosen)
    alone = [detector.detect([frame])[0] for frame in chosen]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)


def test_person_filter_and_factory(frames: dict[int, Frame]) -> None:
    model, names = shared_path("models", "yolox_nano.onnx"), shared_path("models", "coco_classes.txt")
    persons = make_detector(f"yolox:{model}", class_names=str(names), classes=["person"])
    result = persons.detect([frames[50]])[0]
    assert set(result.class_id.tolist()) == {PERSON}
    assert len(_people(result, 0.25)) == len(PEOPLE[50])


def test_refused_as_yolov8() -> None:
    model: Path = shared_path("models", "yolox_nano.onnx")
    with pytest.raises(
        ValueError,
        match=r"yolox_nano\.onnx: model output has shape \(1, 3549, 85\), expected "
        r"\(N, 4 \+ classes, 3549\) for YOLOv8 at 416x416",
    ):
        YoloV8Detector(model)
