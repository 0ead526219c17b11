from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from crossview import Camera
from crossview.io.formats.ucla import load_ucla_cameras
from crossview.multicam.geometry import (
    GroundProjector,
    SiteMap,
    calibration_report,
    camera_centre,
    camera_from_homography,
    convex_intersection,
    estimate_homography,
    foot_points,
    ground_homography,
    ground_to_image,
    image_to_ground,
    look_at_camera,
    orient_homography,
    polygon_area,
    world_to_image,
)
from tests.conftest import shared_path

FloatArray = NDArray[np.float64]


def pole_camera(**overrides: Any) -> Camera:
    """A 1280x720 camera 6 m up a pole, looking 20 m ahead and down; its horizon is in view."""
    settings: dict[str, Any] = {
        "camera_id": "pole",
        "width": 1280,
        "height": 720,
        "fov_deg": 70.0,
        "position": (2.0, -3.0, 6.0),
        "target": (8.0, 16.0, 0.0),
    }
    settings.update(overrides)
    return look_at_camera(**settings)


def ray_plane(camera: Camera, pixels: FloatArray) -> FloatArray:
    """Direct ray / ground-plane intersection, NaN where the ray meets the ground behind the camera."""
    intrinsics = np.asarray(camera.intrinsics)
    rotation = np.asarray(camera.rotation)
    centre = camera_centre(camera)
    rays = np.column_stack([pixels, np.ones(len(pixels))]) @ np.linalg.inv(intrinsics).T @ rotation
    with np.errstate(divide="ignore"):
        scale = -centre[2] / rays[:, 2]
    hits = centre[:2] + scale[:, None] * rays[:, :2]
    hits[~(scale > 0)] = np.nan
    return np.asarray(hits, dtype=np.float64)


# ------------------------------------------------------------------------------ basics
def test_foot_points_are_bottom_centres() -> None:
    boxes = np.array([[10.0, 20.0, 30.0, 80.0], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(foot_points(boxes), [[20.0, 80.0], [0.5, 1.0]])
    assert foot_points(np.empty((0, 4))).shape == (0, 2)
    with pytest.raises(ValueError, match=r"xyxy must have shape \(N, 4\), got \(2, 3\)"):
        foot_points(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("position", "target"),
    [
        ((0, 0, 5), (0, 10, 0)),
        ((3, -4, 12), (-6, 7, 0.5)),
        ((10, 10, 3), (0, 0, 3)),
        ((1, 1, 30), (1.5, 1, 0)),
    ],
)
def test_look_at_camera_aims_at_target_with_up_up(
    position: tuple[float, float, float], target: tuple[float, float, float]
) -> None:
    camera = look_at_camera("c", 800, 600, 60, position=position, target=target)
    np.testing.assert_allclose(camera_centre(camera), position, atol=1e-9)
    intrinsics = np.asarray(camera.intrinsics)
    assert intrinsics[0, 0] == pytest.approx(400 / math.tan(math.radians(30)))
    aim, above = world_to_image(camera, np.array([target, np.add(target, (0, 0, 1))]))
    np.testing.assert_allclose(aim, [400, 300], atol=1e-9)
    assert above[1] < 300  # up in the world is up in the image
    rotation = np.asarray(camera.rotation)
    assert abs(rotation[0, 2]) < 1e-12  # level: the image x axis is horizontal


def test_look_at_camera_horizontal_directions() -> None:
    # Looking north (+y): east (+x) is to the right of the image centre.
    camera = look_at_camera("c", 640, 480, 90, position=(0, 0, 2), target=(0, 10, 2))
    (right,) = world_to_image(camera, [[1, 10, 2]])
    assert right[0] > 320 and right[1] == pytest.approx(240)
    # Straight down: world +y is the top of the image, +x the right.
    down = look_at_camera("d", 640, 480, 90, position=(0, 0, 10), target=(0, 0, 0))
    north, east = world_to_image(down, [[0, 1, 0], [1, 0, 0]])
    assert north[1] < 240 and north[0] == pytest.approx(320)
    assert east[0] > 320 and east[1] == pytest.approx(240)


def test_look_at_camera_refusals() -> None:
    with pytest.raises(ValueError, match=r"fov_deg must lie in \(0, 180\), got 180"):
        look_at_camera("c", 640, 480, 180, position=(0, 0, 5), target=(0, 1, 0))
    with pytest.raises(ValueError, match="same point"):
        look_at_camera("c", 640, 480, 60, position=(1, 2, 3), target=(1, 2, 3))
    with pytest.raises(ValueError, match=r"position and target must be \(x, y, z\)"):
        look_at_camera("c", 640, 480, 60, position=(1, 2), target=(1, 2, 3))


# ------------------------------------------------------------------------- projections
def test_ground_image_ground_round_trip() -> None:
    camera = pole_camera()
    rng = np.random.default_rng(1)
    ground = np.column_stack([rng.uniform(-5, 20, 500), rng.uniform(5, 40, 500)])
    pixels = ground_to_image(camera, ground)
    assert np.all(np.isfinite(pixels))
    np.testing.assert_allclose(image_to_ground(camera, pixels), ground, atol=1e-6)
    projector = GroundProjector(camera)
    np.testing.assert_allclose(projector.to_ground(projector.to_image(ground)), ground, atol=1e-6)
    # world_to_image agrees with the ground-plane homography on the ground
    np.testing.assert_allclose(world_to_image(camera, np.column_stack([ground, np.zeros(500)])), pixels)


def test_pinhole_homography_agrees_with_ray_plane_intersection() -> None:
    camera = pole_camera()
    rng = np.random.default_rng(2)
    pixels = np.column_stack([rng.uniform(0, 1280, 2000), rng.uniform(0, 720, 2000)])
    direct = ray_plane(camera, pixels)
    mapped = image_to_ground(camera, pixels)
    above_horizon = np.isnan(direct[:, 0])
    assert 100 < above_horizon.sum() < 1900  # both kinds of pixels are tested
    np.testing.assert_array_equal(np.isnan(mapped[:, 0]), above_horizon)
    np.testing.assert_allclose(mapped[~above_horizon], direct[~above_horizon], rtol=1e-9, atol=1e-7)
    # the same through the bare matrix
    bare = image_to_ground(ground_homography(camera), pixels)
    np.testing.assert_allclose(bare, mapped, rtol=1e-9, atol=1e-9)


def test_pixels_above_the_horizon_are_nan() -> None:
    # A level camera at 1.7 m: the horizon is exactly the middle row.
    camera = look_at_camera("level", 640, 480, 60, position=(0, 0, 1.7), target=(0, 10, 1.7))
    pixels = np.array([[320.0, 0.0], [100.0, 239.0], [320.0, 240.0], [320.0, 241.0], [600.0, 479.0]])
    ground = image_to_ground(camera, pixels)
    assert np.all(np.isnan(ground[:3]))
    assert np.all(np.isfinite(ground[3:]))
    focal = 320 / math.tan(math.radians(30))
    assert ground[3, 1] == pytest.approx(1.7 * focal)  # one row below the horizon: far away, in front
    # a bare homography: w <= 0 is NaN as well
    flat = [[0.01, 0, 0], [0, -0.01, 20], [0, -0.001, 1]]  # horizon at v = 1000, ground below it
    result = image_to_ground(flat, [[0, 999], [0, 1000], [0, 1001]])
    assert np.isnan(result[:2]).all() and np.isfinite(result[2]).all()


def test_ground_points_behind_the_camera_are_nan() -> None:
    camera = look_at_camera("c", 640, 480, 60, position=(0, 0, 5), target=(0, 10, 0))
    pixels = ground_to_image(camera, [[0, -10], [3, -12], [0, 10]])
    assert np.isnan(pixels[:2]).all()
    np.testing.assert_allclose(pixels[2], [320, 240], atol=1e-9)
    assert np.isnan(world_to_image(camera, [[0, -5, 0]])).all()


def test_projector_accepts_boxes_and_rejects_other_shapes() -> None:
    projector = GroundProjector(pole_camera())
    boxes = np.array([[600.0, 400.0, 680.0, 600.0], [10.0, 5.0, 20.0, 10.0]])
    np.testing.assert_array_equal(
        projector.to_ground(boxes), projector.to_ground(foot_points(boxes)), strict=True
    )
    assert projector.to_ground(np.empty((0, 4))).shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\) or xyxy boxes \(N, 4\), got shape \(3, 3\)"):
        projector.to_ground(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\), got \(2,\)"):
        projector.to_image([1.0, 2.0])


def test_homography_calibration_matches_pinhole_and_any_scale_or_sign() -> None:
    pinhole = pole_camera()
    matrix = ground_homography(pinhole)
    assert np.linalg.det(matrix) < 0
    rng = np.random.default_rng(3)
    pixels = np.column_stack([rng.uniform(0, 1280, 300), rng.uniform(0, 720, 300)])
    expected = image_to_ground(pinhole, pixels)
    for scale in (1.0, -1.0, 250.0, -0.003):
        camera = camera_from_homography("h", 1280, 720, matrix * scale)
        np.testing.assert_allclose(image_to_ground(camera, pixels), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ground_homography(camera), orient_homography(matrix), rtol=1e-12)
    homography_only = camera_from_homography("h", 1280, 720, -matrix)
    assert GroundProjector(homography_only).position is None
    position = GroundProjector(pinhole).position
    assert position is not None
    np.testing.assert_allclose(position, np.array([2.0, -3.0]))


def test_ground_homography_refusals() -> None:
    with pytest.raises(ValueError, match="'bare' has no ground calibration"):
        ground_homography(Camera(id="bare", width=640, height=480))
    below = look_at_camera("mole", 640, 480, 60, position=(0, 0, -1), target=(0, 10, -3))
    with pytest.raises(ValueError, match=r"'mole' is at z = -1 m: a camera must be above the ground"):
        ground_homography(below)
    # swapping the ground x and y columns mirrors the ground: no real camera gives that homography
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mirrored = Camera(
        id="m", width=1280, height=720, homography=(swap @ ground_homography(pole_camera())).tolist()
    )
    with pytest.raises(ValueError, match=r"'m'.*mirrored"):
        ground_homography(mirrored)
    with pytest.raises(ValueError, match="homography is singular"):
        orient_homography(np.diag([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"homography must have shape \(3, 3\), got \(2, 2\)"):
        image_to_ground(np.eye(2), [[0, 0]])
    skewed = pole_camera().model_copy(update={"intrinsics": [[800, 0, 640], [0, 800, 360], [0, 0, 2]]})
    with pytest.raises(ValueError, match=r"intrinsics must be \[\[fx, s, cx\]"):
        ground_homography(skewed)


# --------------------------------------------------------------------------- distortion
def distorted_camera() -> Camera:
    return pole_camera().model_copy(update={"distortion": [-0.25, 0.08, 0.001, -0.0015, -0.01]})


def test_distortion_is_applied_both_ways() -> None:
    camera = distorted_camera()
    intrinsics = np.asarray(camera.intrinsics)
    rotation = np.asarray(camera.rotation)
    rng = np.random.default_rng(4)
    ground = np.column_stack([rng.uniform(-3, 15, 200), rng.uniform(8, 30, 200), np.zeros(200)])
    rvec, _ = cv2.Rodrigues(rotation)
    expected, _ = cv2.projectPoints(
        ground, rvec, np.asarray(camera.translation), intrinsics, np.asarray(camera.distortion)
    )
    pixels = ground_to_image(camera, ground[:, :2])
    np.testing.assert_allclose(pixels, expected.reshape(-1, 2), atol=1e-6)
    np.testing.assert_allclose(world_to_image(camera, ground), pixels, atol=1e-9)
    np.testing.assert_allclose(image_to_ground(camera, pixels), ground[:, :2], atol=1e-5)
    # without the distortion the same pixels land elsewhere
    plain = pole_camera()
    assert np.max(np.linalg.norm(image_to_ground(plain, pixels) - ground[:, :2], axis=1)) > 0.1
    polygon = GroundProjector(camera).visible_ground(30)
    assert polygon_area(polygon) > 0


def test_distortion_refusals() -> None:
    wrong_length = pole_camera().model_copy(update={"distortion": [0.1, 0.0, 0.0]})
    with pytest.raises(
        ValueError, match=r"distortion must have one of \(4, 5, 8, 12, 14\) coefficients.*got 3"
    ):
        GroundProjector(wrong_length)
    matrix = ground_homography(pole_camera())
    no_intrinsics = Camera(
        id="h", width=1280, height=720, homography=matrix.tolist(), distortion=[0.1, 0, 0, 0]
    )
    with pytest.raises(ValueError, match="lens distortion but no intrinsics"):
        GroundProjector(no_intrinsics)
    zeros = Camera(id="h", width=1280, height=720, homography=matrix.tolist(), distortion=[0, 0, 0, 0, 0])
    assert GroundProjector(zeros).to_ground([[640, 700]]).shape == (1, 2)


# ------------------------------------------------------------------------ visible ground
def inside_convex(polygon: FloatArray, points: FloatArray, tolerance: float = 1e-6) -> NDArray[np.bool_]:
    edges = np.roll(polygon, -1, axis=0) - polygon
    relative = points[:, None, :] - polygon[None, :, :]
    cross = edges[None, :, 0] * relative[:, :, 1] - edges[None, :, 1] * relative[:, :, 0]
    result: NDArray[np.bool_] = np.all(cross >= -tolerance, axis=1)
    return result


def test_visible_ground_of_a_downward_camera_is_its_footprint() -> None:
    camera = look_at_camera("down", 800, 600, 90, position=(5, 5, 10), target=(5, 5, 0))
    polygon = GroundProjector(camera).visible_ground(100)
    # 90 degrees horizontally from 10 m: 20 m wide, 15 m deep, centred under the camera.
    assert polygon_area(polygon) == pytest.approx(20 * 15)
    np.testing.assert_allclose(polygon.min(axis=0), [-5, -2.5], atol=1e-9)
    np.testing.assert_allclose(polygon.max(axis=0), [15, 12.5], atol=1e-9)
    # a short range clips the footprint to the range polygon (a 64-gon inscribed in the circle)
    clipped = GroundProjector(camera).visible_ground(5)
    assert polygon_area(clipped) == pytest.approx(0.5 * 64 * 25 * math.sin(2 * math.pi / 64))
    # homography-only: the same footprint; the range is measured from the bottom-centre pixel's ground point
    flat = camera_from_homography("flat", 800, 600, ground_homography(camera))
    assert polygon_area(GroundProjector(flat).visible_ground(100)) == pytest.approx(20 * 15)
    short = GroundProjector(flat).visible_ground(5)  # the half disc above (5, -2.5), the image's bottom edge
    assert polygon_area(short) == pytest.approx(0.25 * 64 * 25 * math.sin(2 * math.pi / 64))
    assert short[:, 1].min() == pytest.approx(-2.5)
    assert np.linalg.norm(short - [5.0, -2.5], axis=1).max() == pytest.approx(5.0)


def test_visible_ground_of_an_oblique_camera() -> None:
    camera = pole_camera()
    projector = GroundProjector(camera)
    polygon = projector.visible_ground(40)
    assert polygon_area(polygon) > 0  # counter-clockwise
    assert np.all(np.linalg.norm(polygon - [2.0, -3.0], axis=1) <= 40 + 1e-9)
    # its vertices are in the image (on the border) or on the range circle
    pixels = projector.to_image(polygon)
    on_image = np.all((pixels >= -1e-6) & (pixels <= [1280 + 1e-6, 720 + 1e-6]), axis=1)
    assert on_image.all()
    # every pixel that sees the ground within range is inside, pixels beyond the range outside
    rng = np.random.default_rng(5)
    ground = projector.to_ground(np.column_stack([rng.uniform(0, 1280, 3000), rng.uniform(0, 720, 3000)]))
    ground = ground[np.isfinite(ground[:, 0])]
    distance = np.linalg.norm(ground - [2.0, -3.0], axis=1)
    inside = inside_convex(polygon, ground)
    assert inside[distance < 39.9].all()  # the 64-gon reaches 39.95 m between its vertices
    assert not inside[distance > 40.0].any()


def test_visible_ground_when_no_ground_is_seen() -> None:
    sky = look_at_camera("sky", 640, 480, 40, position=(0, 0, 2), target=(0, 10, 12))
    assert GroundProjector(sky).visible_ground(50).shape == (0, 2)
    with pytest.raises(ValueError, match="max_range_m must be positive"):
        GroundProjector(sky).visible_ground(0)


def test_convex_intersection() -> None:
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    assert polygon_area(convex_intersection(square, square + 1)) == pytest.approx(1.0)
    assert polygon_area(convex_intersection(square[::-1], square + np.array([1.5, 0.0]))) == pytest.approx(
        1.0
    )
    assert convex_intersection(square, square + 5).shape == (0, 2)
    assert polygon_area(square[::-1]) == -4.0


# --------------------------------------------------------------------------- calibration
def synthetic_pairs(count: int, seed: int) -> tuple[FloatArray, FloatArray, Camera]:
    camera = pole_camera()
    rng = np.random.default_rng(seed)
    ground = np.column_stack([rng.uniform(-4, 18, count), rng.uniform(6, 30, count)])
    return ground_to_image(camera, ground), ground, camera


def test_estimate_homography_recovers_a_known_homography_despite_outliers() -> None:
    image, ground, camera = synthetic_pairs(60, seed=6)
    rng = np.random.default_rng(7)
    noise = 0.04
    observed = ground + rng.normal(0, noise, ground.shape)
    outlier = np.zeros(60, dtype=bool)
    outlier[rng.choice(60, 18, replace=False)] = True  # 30%
    angles = rng.uniform(0, 2 * math.pi, outlier.sum())
    observed[outlier] += rng.uniform(2, 8, outlier.sum())[:, None] * np.column_stack(
        [np.cos(angles), np.sin(angles)]
    )
    fit = estimate_homography(image, observed, ransac_threshold_m=0.25)
    np.testing.assert_array_equal(fit.inliers, ~outlier)
    assert fit.inlier_count == 42
    assert 0.5 * noise * math.sqrt(2) < fit.rmse_m < 1.2 * noise * math.sqrt(2)
    assert fit.max_error_m < 0.25
    assert np.all(fit.errors_m[outlier] > 1.5)
    assert np.linalg.det(fit.homography) < 0
    # the fit maps the whole visible area close to the truth
    probe = np.column_stack([np.linspace(100, 1200, 30), np.linspace(380, 710, 30)])
    error = np.linalg.norm(image_to_ground(fit.homography, probe) - image_to_ground(camera, probe), axis=1)
    assert error.max() < 0.1
    assert fit.rmse_px > 0 and np.all(np.isfinite(fit.errors_px[~outlier]))
    np.testing.assert_allclose(
        image_to_ground(fit.to_camera("fitted", 1280, 720), probe), image_to_ground(fit.homography, probe)
    )


def test_estimate_homography_exact_pairs_and_report() -> None:
    image, ground, camera = synthetic_pairs(12, seed=8)
    ground[3] += [3.0, 0.0]  # one bad pair
    fit = estimate_homography(image, ground)
    np.testing.assert_allclose(fit.homography, ground_homography(camera), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(
        image_to_ground(fit.homography, image), image_to_ground(camera, image), atol=1e-5
    )
    assert fit.rmse_m < 1e-6 and fit.rmse_px < 1e-4 and fit.max_error_px < 1e-4
    assert fit.errors_m[3] == pytest.approx(3.0, abs=1e-6)
    report = calibration_report(fit)
    lines = report.splitlines()
    assert lines[0] == "homography fit: 11 of 12 point pairs are inliers (RANSAC threshold 0.25 m)"
    assert lines[1].startswith("ground error, inliers:  rmse 0.000 m")
    assert len(lines) == 4 + 12
    row = lines[4 + 3].split()
    assert row[0] == "3" and row[-1] == "NO" and float(row[5]) == pytest.approx(3.0)
    assert sum(line.endswith("yes") for line in lines) == 11
    short = fit.summary(max_rows=2).splitlines()
    assert short[4].split()[0] == "3"  # worst first
    assert short[-1] == "... 10 more pairs with smaller errors"
    with pytest.raises(ValueError, match="read-only"):
        fit.errors_m[0] = 1.0


def refusal_cases() -> list[tuple[str, FloatArray, FloatArray, dict[str, Any], str]]:
    image, ground, _ = synthetic_pairs(10, seed=9)
    nan_image = image.copy()
    nan_image[4, 1] = np.nan
    duplicate_image = image.copy()
    duplicate_image[7] = duplicate_image[2]
    duplicate_ground = ground.copy()
    duplicate_ground[5] = duplicate_ground[1]
    line = np.column_stack([np.linspace(0, 1000, 10), np.linspace(100, 600, 10)])
    line[:, 1] += np.tile([0.5, -0.5], 5)  # within a pixel of a straight line
    ground_line = np.column_stack([np.linspace(0, 20, 10), np.full(10, 4.0)])
    return [
        ("three", image[:3], ground[:3], {}, "at least 4 point pairs, got 3"),
        ("mismatch", image, ground[:8], {}, "same number of rows, got 10 and 8"),
        ("shape", np.zeros((10, 3)), ground, {}, r"image_points must have shape \(N, 2\), got \(10, 3\)"),
        ("nan", nan_image, ground, {}, r"image_points row 4 is not finite: \[.*, nan\]"),
        ("dup image", duplicate_image, ground, {}, "image_points rows 2 and 7 are duplicates"),
        ("dup ground", image, duplicate_ground, {}, "ground_points rows 1 and 5 are duplicates"),
        ("line image", line, ground, {}, r"image_points are \(nearly\) collinear"),
        ("line ground", image, ground_line, {}, r"ground_points are \(nearly\) collinear"),
        ("mirror", image, ground[:, ::-1].copy(), {}, "mirrors the image.*swapped ground x and y"),
        (
            "min_inliers",
            image,
            ground,
            {"min_inliers": 11},
            r"min_inliers \(11\) exceeds the number of point pairs \(10\)",
        ),
        ("min_inliers low", image, ground, {"min_inliers": 3}, "min_inliers must be at least 4, got 3"),
        ("threshold", image, ground, {"ransac_threshold_m": 0.0}, "ransac_threshold_m must be positive"),
    ]


@pytest.mark.parametrize("case", refusal_cases(), ids=lambda case: case[0])
def test_estimate_homography_refusals(case: tuple[str, FloatArray, FloatArray, dict[str, Any], str]) -> None:
    _, image, ground, settings, message = case
    with pytest.raises(ValueError, match=message):
        estimate_homography(image, ground, **settings)


def test_estimate_homography_too_few_inliers() -> None:
    image, ground, _ = synthetic_pairs(10, seed=10)
    rng = np.random.default_rng(11)
    ground[:5] = rng.uniform(-5, 25, (5, 2))  # half of the pairs disagree
    with pytest.raises(
        ValueError, match=r"only \d of 10 point pairs are inliers within 0.25 m \(need at least 8\)"
    ):
        estimate_homography(image, ground, min_inliers=8)


@pytest.mark.parametrize(
    ("found", "message"),
    [
        (None, "RANSAC found no homography consistent with the 10 point pairs"),
        (np.diag([1.0, 1.0, 0.0]), "the fitted homography is singular"),
        (
            np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -0.01, 5.0]]),
            "puts the horizon between inlier points",
        ),
    ],
)
def test_estimate_homography_refuses_bad_ransac_results(
    monkeypatch: pytest.MonkeyPatch, found: FloatArray | None, message: str
) -> None:
    image, ground, _ = synthetic_pairs(10, seed=12)
    mask = None if found is None else np.ones((10, 1), dtype=np.uint8)
    monkeypatch.setattr(cv2, "findHomography", lambda *args, **kwargs: (found, mask))
    with pytest.raises(ValueError, match=message):
        estimate_homography(image, ground)


# ------------------------------------------------------------------------------ site map
def test_site_map_round_trip_and_orientation() -> None:
    site = SiteMap(pixels_per_metre=20, origin_px=(50, 400), rotation_deg=90)
    # rotated 90 degrees counter-clockwise, ground +x points up the map
    np.testing.assert_allclose(
        site.to_map([[1, 0], [0, 1], [0, 0]]), [[50, 380], [30, 400], [50, 400]], atol=1e-9
    )
    rng = np.random.default_rng(13)
    ground = rng.uniform(-50, 50, (100, 2))
    np.testing.assert_allclose(site.to_ground(site.to_map(ground)), ground, atol=1e-9)
    plain = SiteMap.model_validate({"pixels_per_metre": 10})
    np.testing.assert_allclose(plain.to_map([[2, 3]]), [[20, -30]])  # +y is up: smaller rows
    assert np.linalg.det(plain.matrix()[:2, :2]) < 0  # the map image is mirrored (rows grow down)


def test_site_map_fit_and_validation() -> None:
    truth = SiteMap(pixels_per_metre=7.5, origin_px=(-20, 640), rotation_deg=-35)
    rng = np.random.default_rng(14)
    ground = rng.uniform(0, 80, (20, 2))
    fitted = SiteMap.fit(ground, truth.to_map(ground) + rng.normal(0, 0.5, (20, 2)))
    assert fitted.pixels_per_metre == pytest.approx(7.5, rel=1e-2)
    assert fitted.rotation_deg == pytest.approx(-35, abs=0.2)
    np.testing.assert_allclose(fitted.origin_px, (-20, 640), atol=2.0)
    with pytest.raises(ValueError, match="at least 2 distinct ground points, got 1"):
        SiteMap.fit([[0, 0]], [[5, 5]])
    with pytest.raises(ValueError, match="same number of rows, got 2 and 3"):
        SiteMap.fit([[0, 0], [1, 1]], [[5, 5], [6, 6], [7, 7]])
    with pytest.raises(ValidationError, match="greater than 0"):
        SiteMap(pixels_per_metre=0)
    with pytest.raises(ValidationError, match="extra"):
        SiteMap.model_validate({"pixels_per_metre": 1, "scale": 2})


# ------------------------------------------------------------------- real calibration
def readme_ground_points(root: Path, name: str, foot: FloatArray) -> FloatArray:
    """The dataset README's recipe, solved point by point: ``[KR[:, :2] | (c - p; -1)] q = KRT``."""
    scipy_io = pytest.importorskip("scipy.io")
    entry = next(
        e for e in scipy_io.loadmat(str(root / "cam_param.mat"))["cam_param"][0] if name in str(e["name"][0])
    )
    kr = entry["K"].astype(np.float64) @ entry["R"].astype(np.float64)
    krt = kr @ entry["T"].astype(np.float64).reshape(3)
    centre = entry["center"][0].astype(np.float64)
    out = np.empty_like(foot)
    for index, (x, y) in enumerate(foot):
        system = np.column_stack([kr[:, :2], [centre[0] - x, centre[1] - y, -1.0]])
        out[index] = np.linalg.solve(system, krt)[:2]
    return out


def test_ucla_auditorium_calibration() -> None:
    """The two calibrated UCLA views: the README's recipe, and one person on one floor spot."""
    from crossview.io.formats.vatic import read_vatic_views

    root = shared_path("data", "ucla-campus-auditorium")
    cameras = load_ucla_cameras(root)
    assert set(cameras) == {"HC3", "HC4"}
    table = read_vatic_views(root)
    feet = {}
    for name, camera in cameras.items():
        rows = table.rows_of(name)
        foot = table.foot_points()[rows]
        ground = GroundProjector(camera).to_ground(foot)
        assert np.isfinite(ground).all()  # every annotated foot is below the horizon
        sample = np.arange(0, len(foot), 97)
        np.testing.assert_allclose(ground[sample], readme_ground_points(root, name, foot[sample]), atol=1e-6)
        # nearly every annotated foot lies in the camera's visible ground within 40 m
        polygon = GroundProjector(camera).visible_ground(40)
        assert inside_convex(polygon, ground).mean() > 0.98
        feet[name] = {
            (int(f), int(i)): xy
            for f, i, xy in zip(table.frame[rows], table.obj_id[rows], ground, strict=True)
        }
    shared = sorted(set(feet["HC3"]) & set(feet["HC4"]))
    assert len(shared) > 1000
    distance = np.linalg.norm([feet["HC3"][key] - feet["HC4"][key] for key in shared], axis=1)
    assert np.median(distance) < 0.5
    assert np.mean(distance < 1.5) > 0.9
