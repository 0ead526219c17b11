"""MotionDetector: synthetic scenes with known truth, and the real street video (``vtest.avi``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector
from crossview.detect.motion import MotionConfig, MotionDetector
from tests.conftest import shared_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VIDEO = SHARED / "data" / "video" / "vtest.avi"

HEIGHT, WIDTH = 240, 320


def background(seed: int = 0, level: int = 110) -> NDArray[np.uint8]:
    """A textured grey scene (smoothed noise), like pavement."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 30, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 3)
    grey = np.clip(level + texture, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def noisy(image: NDArray[np.uint8], rng: np.random.Generator, sigma: float = 2.0) -> NDArray[np.uint8]:
    """The image with per-frame sensor noise."""
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def moving_box(t: int) -> tuple[int, int, int, int]:
    """The true ``xyxy`` of a 30x60 object walking right 4 px per frame."""
    x = 20 + 4 * t
    return x, 100, x + 30, 160


def iou(a: NDArray[np.float32] | tuple[int, ...], b: NDArray[np.float32] | tuple[int, ...]) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union


def scene_with_object(t: int, rng: np.random.Generator, scene: NDArray[np.uint8]) -> NDArray[np.uint8]:
    image = scene.copy()
    x1, y1, x2, y2 = moving_box(t)
    image[y1:y2, x1:x2] = (200, 60, 30)  # a blue coat: not a darker copy of the ground (no shadow)
    return noisy(image, rng)


def frames_of(images: list[NDArray[np.uint8]], camera_id: str = "cam", start: int = 0) -> list[Frame]:
    return [Frame(image, camera_id, start + i, (start + i) / 10) for i, image in enumerate(images)]


# ------------------------------------------------------------------------------ contract
def test_follows_the_detector_protocol_and_builds_without_weights() -> None:
    assert isinstance(MotionDetector(), Detector)
    assert isinstance(MotionDetector(MotionConfig(method="knn")), Detector)
    assert MotionDetector(config=None).config == MotionConfig()


def test_no_frames_gives_no_results() -> None:
    assert MotionDetector().detect([]) == []


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError):
        MotionConfig(scale=0)
    with pytest.raises(ValidationError):
        MotionConfig(max_area_fraction=1.5)
    with pytest.raises(ValidationError):
        MotionConfig(warmup=3)  # type: ignore[call-arg]  # a misspelt field is an error, not ignored


# ------------------------------------------------------------------------------ synthetic scenes
@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_static_scene_yields_nothing_after_warmup(method: str) -> None:
    rng = np.random.default_rng(1)
    scene = background()
    detector = MotionDetector(MotionConfig(method=method))  # type: ignore[arg-type]
    results = detector.detect(frames_of([noisy(scene, rng) for _ in range(80)]))
    assert len(results) == 80
    assert all(isinstance(r, Detections) for r in results)
    assert sum(len(r) for r in results) == 0


def test_warmup_frames_report_nothing_even_with_motion() -> None:
    rng = np.random.default_rng(2)
    scene = background()
    detector = MotionDetector(MotionConfig(warmup_frames=10))
    results = detector.detect(frames_of([scene_with_object(t, rng, scene) for t in range(20)]))
    assert [len(r) for r in results[:10]] == [0] * 10
    assert all(len(r) >= 1 for r in results[10:])


@pytest.mark.parametrize(
    "config",
    [MotionConfig(), MotionConfig(scale=1.0), MotionConfig(method="knn"), MotionConfig(scale=0.25)],
    ids=["default", "full-resolution", "knn", "quarter"],
)
def test_moving_rectangle_is_found_where_it_is(config: MotionConfig) -> None:
    rng = np.random.default_rng(3)
    scene = background()
    detector = MotionDetector(config)
    empty = [noisy(scene, rng) for _ in range(40)]  # the scene is learnt before anyone walks in
    results = detector.detect(frames_of(empty + [scene_with_object(t, rng, scene) for t in range(60)]))
    assert sum(len(r) for r in results[:40]) == 0
    for t in range(60):
        found = results[40 + t]
        assert len(found) == 1, (t, found.xyxy)
        assert iou(found.xyxy[0], moving_box(t)) > 0.8, (t, found.xyxy[0], moving_box(t))
        assert 0.8 < found.confidence[0] <= 1.0  # a solid object fills its box


def test_results_carry_the_frame_fields_and_configured_class() -> None:
    rng = np.random.default_rng(4)
    scene = background()
    detector = MotionDetector(MotionConfig(class_id=7))
    frames = frames_of([scene_with_object(t, rng, scene) for t in range(40)], camera_id="gate", start=100)
    results = detector.detect(frames)
    for frame, result in zip(frames, results, strict=True):
        assert (result.camera_id, result.frame_index, result.timestamp) == (
            "gate",
            frame.index,
            frame.timestamp,
        )
    assert results[-1].class_id.tolist() == [7]
    assert results[-1].xyxy.dtype == np.float32


def test_boxes_stay_inside_the_frame_when_objects_touch_the_border() -> None:
    rng = np.random.default_rng(5)
    scene = background()
    images = []
    for t in range(40):
        image = scene.copy()
        image[HEIGHT - 50 :, WIDTH - 20 - t : WIDTH - t // 2] = (30, 200, 30)
        images.append(noisy(image, rng))
    results = MotionDetector().detect(frames_of(images))
    boxes = np.concatenate([r.xyxy for r in results])
    assert len(boxes) > 0
    assert boxes.min() >= 0 and boxes[:, 2].max() <= WIDTH and boxes[:, 3].max() <= HEIGHT


@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_global_brightness_change_gives_no_full_frame_box(method: str) -> None:
    rng = np.random.default_rng(6)
    scene = background()
    lit = np.clip(scene.astype(np.int16) + 70, 0, 255).astype(np.uint8)  # the lights come on
    images = [noisy(scene, rng) for _ in range(40)] + [noisy(lit, rng) for _ in range(3)]

    unguarded = MotionDetector(MotionConfig(method=method, max_area_fraction=None))  # type: ignore[arg-type]
    change = unguarded.detect(frames_of(images))[40]
    assert len(change) >= 1 and change.area.max() > 0.5 * WIDTH * HEIGHT  # what the guard is for

    guarded = MotionDetector(MotionConfig(method=method, max_area_fraction=0.5))  # type: ignore[arg-type]
    images += [noisy(lit, rng) for _ in range(30)]  # the lights stay on
    images += [scene_with_object(t, rng, lit) for t in range(20)]  # someone walks through
    results = guarded.detect(frames_of(images))
    assert sum(len(r) for r in results[40:73]) == 0  # no box, full-frame or other, after the change
    walking = results[73:]
    assert all(len(r) == 1 for r in walking)  # the model restarted from the lit scene
    assert all(iou(r.xyxy[0], moving_box(t)) > 0.8 for t, r in enumerate(walking))


def test_cameras_have_independent_models_in_mixed_batches() -> None:
    rng = np.random.default_rng(7)
    scene_a, scene_b = background(seed=10, level=70), background(seed=11, level=180)
    frames_a = frames_of([scene_with_object(t, rng, scene_a) for t in range(50)], camera_id="a")
    frames_b = frames_of([noisy(scene_b, rng) for _ in range(50)], camera_id="b")
    mixed = [frame for pair in zip(frames_a, frames_b, strict=True) for frame in pair]

    together = MotionDetector().detect(mixed)
    alone_a = MotionDetector().detect(frames_a)
    alone_b = MotionDetector().detect(frames_b)
    for i in range(50):
        assert together[2 * i].camera_id == "a" and together[2 * i + 1].camera_id == "b"
        np.testing.assert_array_equal(together[2 * i].xyxy, alone_a[i].xyxy)
        np.testing.assert_array_equal(together[2 * i + 1].xyxy, alone_b[i].xyxy)
    assert sum(len(r) for r in alone_b) == 0
    assert all(len(r) == 1 for r in alone_a[30:])


def test_two_instances_do_not_share_models() -> None:
    rng = np.random.default_rng(8)
    scene = background()
    first, second = MotionDetector(), MotionDetector()
    first.detect(frames_of([noisy(scene, rng) for _ in range(40)]))
    assert second.camera_ids == [] and first.camera_ids == ["cam"]
    # the second instance is still warming up for the same camera id
    moving = frames_of([scene_with_object(t, rng, scene) for t in range(40, 42)], start=40)
    assert [len(r) for r in second.detect(moving)] == [0, 0]
    assert [len(r) for r in first.detect(moving)] == [1, 1]


def test_a_restarted_source_starts_a_fresh_model() -> None:
    rng = np.random.default_rng(9)
    scene = background()
    detector = MotionDetector(MotionConfig(warmup_frames=10))
    detector.detect(frames_of([noisy(scene, rng) for _ in range(30)]))
    restarted = detector.detect(frames_of([scene_with_object(t, rng, scene) for t in range(3)]))
    assert [len(r) for r in restarted] == [0, 0, 0]  # index went back to 0: warming up again
    detector.reset("cam")
    assert detector.camera_ids == []


# ------------------------------------------------------------------------------ real video
@pytest.fixture(scope="module")
def street() -> tuple[list[Frame], list[Detections]]:
    capture = cv2.VideoCapture(str(shared_path("data", "video", "vtest.avi")))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    capture.release()
    frames = [Frame(image, "street", i, i / 10) for i, image in enumerate(images)]
    return frames, MotionDetector().detect(frames)


def test_street_video_yields_person_sized_boxes_after_warmup(
    street: tuple[list[Frame], list[Detections]],
) -> None:
    frames, results = street
    assert len(frames) == 795 and frames[0].size == (768, 576)
    warmup = MotionConfig().warmup_frames
    assert all(len(r) == 0 for r in results[:warmup])
    counts = np.array([len(r) for r in results[30:]])
    # Measured with the defaults: 2-9 boxes a frame (mean 5.0); 3-9 people walk in view.
    assert counts.min() >= 1 and counts.max() <= 12
    assert 3.0 <= counts.mean() <= 7.5
    boxes = np.concatenate([r.xyxy for r in results[30:]])
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # People here are 12-60 px wide and 30-150 px tall (median box measured: 30 x 74).
    assert 18 <= np.median(widths) <= 45 and 50 <= np.median(heights) <= 110
    assert np.median(heights / widths) > 1.6  # upright
    assert np.all(widths * heights <= 0.5 * 768 * 576)
    confidence = np.concatenate([r.confidence for r in results[30:]])
    assert confidence.min() > 0 and confidence.max() <= 1


# People checked by eye on annotated frames (centres of walking people, full-resolution pixels).
WALKERS = {
    200: [(100, 185), (234, 230), (504, 184), (634, 316), (725, 305), (700, 125)],
    300: [(203, 197), (256, 192), (322, 254), (596, 197), (630, 197)],
    600: [(204, 178), (585, 245), (693, 254), (482, 362), (310, 504)],
    750: [(200, 244), (256, 262), (400, 250), (523, 215), (657, 270), (676, 147)],
}


@pytest.mark.parametrize("index", sorted(WALKERS))
def test_street_video_boxes_cover_the_walking_people(
    street: tuple[list[Frame], list[Detections]], index: int
) -> None:
    _, results = street
    boxes = results[index].xyxy
    for x, y in WALKERS[index]:
        inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        assert inside.any(), (index, (x, y), boxes.astype(int).tolist())
    # no box is larger than a small group of people
    heights = boxes[:, 3] - boxes[:, 1]
    assert np.all(heights < 200) and np.all(boxes[:, 2] - boxes[:, 0] < 120)


def test_background_plate_keeps_parked_objects_and_follows_slow_light() -> None:
    """A car that parks stays a detection with a plate; MOG2 alone absorbs it into the background."""
    plate = np.full((120, 160, 3), 80, np.uint8)
    config = MotionConfig(scale=1.0, min_area=50, warmup_frames=5, max_area_fraction=None)
    with_plate = MotionDetector(config, plates={"lot": plate})
    adaptive = MotionDetector(config)
    found_plate, found_adaptive = [], []
    for index in range(400):
        image = np.full_like(plate, 80 + index // 40)  # the light drifts up by 10 grey levels
        image[40:70, 50:110] = 200  # a parked car, there from the first frame
        frame = Frame(image, "lot", index, index / 10)
        found_plate.append(with_plate.detect([frame])[0].xyxy.tolist())
        found_adaptive.append(adaptive.detect([frame])[0].xyxy.tolist())
    assert all(boxes == [[50.0, 40.0, 110.0, 70.0]] for boxes in found_plate)  # every frame, no warm-up
    assert found_adaptive[-1] == []  # absorbed long before the end
    with pytest.raises(ValueError, match=r"does not match its background plate of shape \(120, 160, 3\)"):
        with_plate.detect([Frame(np.zeros((60, 80, 3), np.uint8), "lot", 999, 99.9)])
    with pytest.raises(ValueError, match=r"plate of camera 'lot' must be an \(H, W, 3\) uint8 image"):
        MotionDetector(config, plates={"lot": np.zeros((4, 4), np.uint8)})


def test_held_stopped_objects_do_not_merge_with_passers_by_and_are_let_go_when_they_leave() -> None:
    """A pedestrian walking past a parked car gets a box of its own; the car keeps its full box."""
    plate = np.full((120, 200, 3), 80, np.uint8)
    base = dict(scale=1.0, blur=0, min_area=20, open_kernel=3, close_kernel=5, plate_threshold=20)
    plain = MotionDetector(MotionConfig(**base), plates={"lot": plate})
    holding = MotionDetector(MotionConfig(**base, hold_after_frames=5), plates={"lot": plate})
    car = [60.0, 40.0, 120.0, 70.0]
    passes: dict[str, list[list[list[float]]]] = {"plain": [], "holding": []}
    for index in range(100):
        image = plate.copy()
        image[40:70, 60:120] = (40, 40, 200)  # parked from the first frame
        walker = 2 * index - 40  # left edge; walks in front of the car from frame 50 to 80
        if walker >= 0:
            image[35:75, walker : walker + 8] = (30, 160, 30)  # taller than the car, in front of it
        frame = Frame(image, "lot", index, index / 10)
        passes["plain"].append(sorted(plain.detect([frame])[0].xyxy.tolist()))
        passes["holding"].append(sorted(holding.detect([frame])[0].xyxy.tolist()))
    in_front = 70  # the walker covers x 100..108, inside the car's box
    assert passes["plain"][in_front] == [[60.0, 35.0, 120.0, 75.0]]  # one blob, neither object
    held, walker_box = passes["holding"][in_front]
    assert held == car
    np.testing.assert_allclose(walker_box, [100, 35, 108, 75], atol=1)  # its own box, to a pixel
    assert all(car in boxes for boxes in passes["holding"][5:])  # full box even while partly hidden

    # the car drives off to the right: it is let go and followed, no box stays where it stood
    leaving = []
    for index in range(100, 130):
        image = plate.copy()
        shift = 3 * (index - 99)
        image[40:70, 60 + shift : 120 + shift] = (40, 40, 200)
        leaving.append(holding.detect([Frame(image, "lot", index, index / 10)])[0].xyxy.tolist())
    assert leaving[-1] == [[60.0 + 90, 40.0, 120.0 + 80, 70.0]]  # clipped at the image edge
    assert all(len(boxes) == 1 for boxes in leaving[3:])


def test_a_slow_uniform_object_is_never_held() -> None:
    """Stillness is judged for the whole box: a uniform car creeping 1 px a frame is never held."""
    plate = np.full((100, 200, 3), 80, np.uint8)
    config = MotionConfig(scale=1.0, blur=0, min_area=20, plate_threshold=20, hold_after_frames=5)
    detector = MotionDetector(config, plates={"lot": plate})
    for index in range(60):
        image = plate.copy()
        image[30:60, 20 + index : 80 + index] = (40, 40, 200)
        boxes = detector.detect([Frame(image, "lot", index, index / 10)])[0].xyxy.tolist()
        assert boxes == [[20.0 + index, 30.0, 80.0 + index, 60.0]], index
