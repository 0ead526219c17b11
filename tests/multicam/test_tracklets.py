"""Locating and classifying boxes on the ground, and building tracklets from tracked rows."""

from __future__ import annotations

import numpy as np
import pytest

from crossview.core.detections import Detections
from crossview.multicam.geometry import foot_points, image_to_ground, look_at_camera, world_to_image
from crossview.multicam.tracklets import CAR, PERSON, Locator, TrackletBuilder, whole_boxes

CAMERA = look_at_camera("lot", 1280, 720, 70, position=(0.0, -8.0, 8.0), target=(0.0, 12.0, 0.0))


def cuboid_box(centre: tuple[float, float], size: tuple[float, float, float], heading: float) -> np.ndarray:
    """The image box of an upright cuboid (length, width, height) at ``centre`` turned by ``heading``."""
    length, width, height = size
    c, s = np.cos(heading), np.sin(heading)
    corners = []
    for dx in (-length / 2, length / 2):
        for dy in (-width / 2, width / 2):
            for z in (0.0, height):
                corners.append([centre[0] + c * dx - s * dy, centre[1] + s * dx + c * dy, z])
    pixels = world_to_image(CAMERA, np.array(corners))
    return np.array([*pixels.min(axis=0), *pixels.max(axis=0)], np.float32)


def test_box_centres_locate_objects_better_than_foot_points() -> None:
    rng = np.random.default_rng(0)
    centres = np.column_stack([rng.uniform(-8, 8, 40), rng.uniform(6, 22, 40)])
    headings = rng.uniform(0, np.pi, 40)
    boxes = np.array(
        [cuboid_box((x, y), (4.5, 1.8, 1.5), h) for (x, y), h in zip(centres, headings, strict=True)]
    )
    locator = Locator(CAMERA)
    located = locator.locate(boxes, np.full(40, CAR))
    errors = np.linalg.norm(located - centres, axis=1)
    feet = np.linalg.norm(image_to_ground(CAMERA, foot_points(boxes)) - centres, axis=1)
    assert np.median(errors) < 0.15 and np.percentile(errors, 90) < 0.3 and np.median(feet) > 1.0
    people = np.array([cuboid_box((x, y), (0.5, 0.4, 1.75), 0.0) for x, y in centres])
    assert np.median(np.linalg.norm(locator.locate(people, np.full(40, PERSON)) - centres, axis=1)) < 0.05
    # classes from footprint width: every car wider than a metre, every person narrower
    assert (locator.classify(boxes) == CAR).all()
    assert (locator.classify(people) == PERSON).all()


def test_rays_above_the_horizon_give_nan() -> None:
    # a camera 3 m up looking almost level: the top of its image is sky
    level = look_at_camera("road", 1280, 720, 70, position=(0.0, -8.0, 3.0), target=(0.0, 20.0, 0.0))
    locator = Locator(level)
    boxes = np.array([[600, 0, 680, 10], [600, 600, 680, 700]], np.float32)
    located = locator.locate(boxes, np.array([PERSON, PERSON]))
    assert np.isnan(located[0]).all() and np.isfinite(located[1]).all()


def test_builder_collects_tracklets_and_refuses_disorder() -> None:
    builder = TrackletBuilder(CAMERA)
    car = cuboid_box((2.0, 12.0), (4.5, 1.8, 1.5), 0.3)
    person = cuboid_box((-3.0, 9.0), (0.5, 0.4, 1.75), 0.0)
    for frame in range(5):
        rows = Detections(
            xyxy=[car, person],
            confidence=[0.9, 0.8],
            tracker_id=[7, 8],
            embedding=[[1.0, 0.0], [0.0, 1.0]],
            camera_id="lot",
            frame_index=frame,
            timestamp=frame * 0.1,
        )
        builder.update(rows)
    tracklets = {t.track_id: t for t in builder.tracklets(min_samples=3)}
    assert set(tracklets) == {7, 8}
    assert tracklets[7].class_id == CAR and tracklets[8].class_id == PERSON
    np.testing.assert_allclose(tracklets[7].times, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert np.linalg.norm(tracklets[7].ground[0] - [2.0, 12.0]) < 0.5
    with pytest.raises(ValueError, match=r"camera 'lot': timestamps out of order \(0.4 then 0.2\)"):
        builder.update(Detections.empty(camera_id="lot", frame_index=9, timestamp=0.2))
    with pytest.raises(ValueError, match="no ground calibration"):
        Locator(CAMERA.model_copy(update={"intrinsics": None, "rotation": None, "translation": None}))


def test_whole_boxes_exclude_the_border_and_touching_boxes() -> None:
    boxes = np.array(
        [
            [100, 100, 200, 200],  # alone
            [300, 100, 400, 200],  # touches the next one (1 px apart)
            [401, 120, 480, 220],
            [0, 300, 50, 400],  # cut by the left border
            [600, 500, 700, 720],  # cut by the bottom border
        ],
        np.float32,
    )
    assert whole_boxes(boxes, 1280, 720).tolist() == [True, False, False, False, False]
    assert whole_boxes(boxes[:0], 1280, 720).shape == (0,)


def test_a_partly_hidden_car_keeps_its_class_and_its_hidden_samples_are_not_trusted() -> None:
    builder = TrackletBuilder(CAMERA)
    car = cuboid_box((2.0, 12.0), (4.5, 1.8, 1.5), 0.0)
    width = car[2] - car[0]
    # the car is seen whole for 3 frames, then a van stops in front and hides all but a sliver of it
    sliver = np.array([car[0], car[1], car[0] + 0.15 * width, car[3]], np.float32)
    van = np.array([sliver[2], car[1] - 40, car[2] + 80, car[3] + 30], np.float32)
    for frame in range(12):
        hidden = frame >= 3
        rows = Detections(
            xyxy=[sliver, van] if hidden else [car],
            confidence=[0.9, 0.9] if hidden else [0.9],
            tracker_id=[7, 9] if hidden else [7],
            embedding=[[1.0, 0.0], [0.0, 1.0]] if hidden else [[1.0, 0.0]],
            camera_id="lot",
            frame_index=frame,
            timestamp=frame * 0.1,
        )
        builder.update(rows)
    assert Locator(CAMERA).classify(sliver[None]).tolist() == [PERSON]  # a sliver looks like a person
    car_tracklet = {t.track_id: t for t in builder.tracklets()}[7]
    assert car_tracklet.class_id == CAR  # from its whole boxes, not the 9 sliver boxes
    assert car_tracklet.clear.tolist() == [True] * 3 + [False] * 9
    assert car_tracklet.placed.sum() == 3
