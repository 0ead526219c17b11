"""Ground-plane geometry: image pixels to ground metres and back, calibration, site maps.

Conventions (every multi-camera module relies on them):

* World frame in metres, the ground is the plane ``z = 0``, ``z`` points up, and the frame is
  right-handed (seen from above, ``y`` is 90 degrees counter-clockwise from ``x``).
* Pinhole cameras: a world point ``X`` has camera coordinates ``x_c = R @ X + t`` and pixel
  ``K @ x_c`` divided by its third coordinate; ``x_c[2] <= 0`` is behind the camera.
  Pixels are continuous image coordinates (``x`` right, ``y`` down), the frame of the boxes.
* An image-to-ground homography ``H`` is kept *oriented*: ``H @ [u, v, 1] = [x, y, 1] / depth``
  with ``depth > 0`` for pixels that see the ground in front of the camera. Any real camera above
  a right-handed ground then has ``det(H) < 0``, which fixes the sign of a homography given by a
  user or fitted by OpenCV (a homography is otherwise only defined up to scale, sign included).
* Pixels whose ray does not meet the ground in front of the camera (above the horizon) map to
  ``NaN`` rows, never to finite values on the wrong side of the camera; ground points behind the
  camera map to ``NaN`` pixels.
* Lens distortion (``Camera.distortion``, OpenCV's coefficient order) needs intrinsics: pixels
  are undistorted with OpenCV before any homography is applied, and projected pixels distorted,
  so a homography always maps *undistorted* pixels.
* The ground point of a box ``(x1, y1, x2, y2)`` is its bottom centre ``((x1 + x2) / 2, y2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial import cKDTree

from crossview.core.camera import Camera

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Thinnest / widest singular value of a centred point set below which it is (nearly) collinear.
COLLINEAR_RATIO = 0.01
# Points closer than this fraction of their set's spread count as duplicates.
DUPLICATE_FRACTION = 1e-6
# Smallest / largest singular value of a (normalised) homography below which it is singular.
SINGULAR_RATIO = 1e-8
# OpenCV accepts these numbers of distortion coefficients.
DISTORTION_LENGTHS = (4, 5, 8, 12, 14)


# ------------------------------------------------------------------------------------ arrays
def _points(name: str, value: ArrayLike, columns: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        return np.empty((0, columns), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{name} must have shape (N, {columns}), got {array.shape}")
    return array


def _matrix3(name: str, value: ArrayLike) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (3, 3):
        raise ValueError(f"{name} must have shape (3, 3), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite values")
    return array


def _inverse(matrix: FloatArray) -> FloatArray:
    return np.asarray(np.linalg.inv(matrix), dtype=np.float64)


def _homogeneous_apply(matrix: FloatArray, points: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``matrix @ [p, 1]`` for each row: the first two coordinates and the third (``w``)."""
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return mapped[:, :2], mapped[:, 2]


def _divide_in_front(xy: FloatArray, w: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = xy / w[:, None]
    out[~(w > 0)] = np.nan  # also catches NaN w
    return out


def foot_points(xyxy: ArrayLike) -> FloatArray:
    """The bottom centre ``((x1 + x2) / 2, y2)`` of each ``(x1, y1, x2, y2)`` box: ``(N, 4) -> (N, 2)``.

    >>> foot_points([[10, 20, 30, 80]]).tolist()
    [[20.0, 80.0]]
    """
    boxes = _points("xyxy", xyxy, 4)
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]])


def orient_homography(homography: ArrayLike) -> FloatArray:
    """The image-to-ground homography with the sign and scale crossview uses.

    The sign makes ``det < 0`` (so ``w > 0`` for pixels that see the ground in front of a camera
    above a right-handed, z-up ground), the scale makes ``|H[2, 2]| = 1`` where possible.

    >>> orient_homography([[0.01, 0, 0], [0, -0.01, 0], [0, 0, 1]]).tolist()
    [[0.01, 0.0, 0.0], [0.0, -0.01, 0.0], [0.0, 0.0, 1.0]]
    """
    matrix = _matrix3("homography", homography)
    determinant = float(np.linalg.det(matrix))
    norm = float(np.linalg.norm(matrix))
    if norm == 0 or abs(determinant) <= (SINGULAR_RATIO * norm) ** 3:
        raise ValueError(f"homography is singular (det {determinant:.3g}): it cannot map image to ground")
    corner = abs(float(matrix[2, 2]))
    scale = corner if corner > 1e-9 * norm else norm
    sign = -1.0 if determinant > 0 else 1.0
    oriented: FloatArray = matrix * (sign / scale)
    return oriented


# ---------------------------------------------------------------------------------- cameras
def pinhole_matrices(camera: Camera) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(K, R, t)`` of a pinhole-calibrated camera; ``ValueError`` if it has none or ``K`` is malformed."""
    if camera.intrinsics is None or camera.rotation is None or camera.translation is None:
        raise ValueError(
            f"camera {camera.id!r} has no pinhole calibration (intrinsics, rotation and translation)"
        )
    intrinsics = np.asarray(camera.intrinsics, dtype=np.float64)
    if not np.allclose(intrinsics[2], [0.0, 0.0, 1.0]) or intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0:
        raise ValueError(
            f"camera {camera.id!r}: intrinsics must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
            f"with fx, fy > 0, got {intrinsics.tolist()}"
        )
    rotation = np.asarray(camera.rotation, dtype=np.float64)
    translation = np.asarray(camera.translation, dtype=np.float64)
    return intrinsics, rotation, translation


def camera_centre(camera: Camera) -> FloatArray:
    """Where a pinhole camera is in the world, ``-R.T @ t`` (metres, ``(3,)``).

    >>> camera = look_at_camera("c", 640, 480, 60, position=(1, 2, 5), target=(1, 10, 0))
    >>> camera_centre(camera).round(9).tolist()
    [1.0, 2.0, 5.0]
    """
    _, rotation, translation = pinhole_matrices(camera)
    centre: FloatArray = -rotation.T @ translation
    return centre


def _distortion(camera: Camera) -> FloatArray | None:
    if camera.distortion is None or not any(camera.distortion):
        return None
    coefficients = np.asarray(camera.distortion, dtype=np.float64)
    if coefficients.size not in DISTORTION_LENGTHS:
        raise ValueError(
            f"camera {camera.id!r}: distortion must have one of {DISTORTION_LENGTHS} coefficients "
            f"(OpenCV order k1, k2, p1, p2, k3, ...), got {coefficients.size}"
        )
    if not np.all(np.isfinite(coefficients)):
        raise ValueError(f"camera {camera.id!r}: distortion has non-finite values")
    if camera.intrinsics is None:
        raise ValueError(
            f"camera {camera.id!r} has lens distortion but no intrinsics to undistort with: "
            "undistort its frames first, or give intrinsics, rotation and translation"
        )
    return coefficients


def ground_homography(camera: Camera) -> FloatArray:
    """The camera's oriented image-to-ground homography ``(3, 3)``.

    From ``camera.homography`` when given, else from the pinhole calibration as
    ``inv(K @ [r1 r2 t])`` (``r1``, ``r2`` the first two columns of ``R``). With lens distortion it
    maps undistorted pixels. ``ValueError`` when the camera has no ground calibration, a pinhole
    camera is not above the ground, or a given homography sees no ground along the bottom of the
    image (the sign of a mirrored, left-handed ground frame).

    >>> camera = look_at_camera("c", 640, 480, 60, position=(0, 0, 4), target=(0, 10, 0))
    >>> image_to_ground(ground_homography(camera), [[320, 240]]).round(6).tolist()
    [[0.0, 10.0]]
    """
    if camera.homography is not None:
        oriented = orient_homography(camera.homography)
        bottom = np.array(
            [[0.0, camera.height], [camera.width / 2, camera.height], [camera.width, camera.height]]
        )
        _, w = _homogeneous_apply(oriented, bottom)
        if not np.any(w > 0):
            raise ValueError(
                f"camera {camera.id!r}: its homography maps no point of the image's bottom edge onto the "
                "ground in front of the camera; the ground frame is probably mirrored (x and y swapped "
                "or a left-handed site frame): crossview expects a right-handed frame with z up"
            )
        return oriented
    if camera.intrinsics is None:
        raise ValueError(
            f"camera {camera.id!r} has no ground calibration: give a homography or intrinsics, "
            "rotation and translation"
        )
    intrinsics, rotation, translation = pinhole_matrices(camera)
    height = float(camera_centre(camera)[2])
    if height <= 0:
        raise ValueError(
            f"camera {camera.id!r} is at z = {height:.3g} m: a camera must be above the ground plane z = 0"
        )
    plane = intrinsics @ np.column_stack([rotation[:, 0], rotation[:, 1], translation])
    return orient_homography(_inverse(plane))


def camera_from_homography(
    camera_id: str, width: int, height: int, homography: ArrayLike, *, fps: float | None = None
) -> Camera:
    """A ``Camera`` calibrated by an image-to-ground homography (stored oriented).

    >>> camera_from_homography("gate", 1920, 1080, [[0.01, 0, 0], [0, -0.01, 20], [0, 0, 1]]).id
    'gate'
    """
    return Camera(
        id=camera_id,
        width=width,
        height=height,
        fps=fps,
        homography=orient_homography(homography).tolist(),
    )


def look_at_camera(
    camera_id: str,
    width: int,
    height: int,
    fov_deg: float,
    position: Sequence[float],
    target: Sequence[float],
    *,
    fps: float | None = None,
) -> Camera:
    """A distortion-free pinhole camera at ``position`` looking at ``target`` (world metres, z up).

    ``fov_deg`` is the horizontal field of view; pixels are square and the principal point is
    the image centre, so ``target`` projects to ``(width / 2, height / 2)``. The image is level
    (no roll): its ``x`` axis is horizontal in the world and its ``y`` axis points down. A camera
    looking straight down has the top of its image towards world ``+y``.

    >>> camera = look_at_camera("c", 640, 480, 60, position=(0, -10, 5), target=(0, 0, 0))
    >>> world_to_image(camera, [[0, 0, 0], [0, 0, 1]]).round(3).tolist()[0]
    [320.0, 240.0]
    """
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    eye = np.asarray(position, dtype=np.float64)
    aim = np.asarray(target, dtype=np.float64)
    if eye.shape != (3,) or aim.shape != (3,):
        raise ValueError(f"position and target must be (x, y, z), got shapes {eye.shape} and {aim.shape}")
    if not (np.all(np.isfinite(eye)) and np.all(np.isfinite(aim))):
        raise ValueError("position and target must be finite")
    forward = aim - eye
    distance = float(np.linalg.norm(forward))
    if distance == 0:
        raise ValueError(f"position and target are the same point {eye.tolist()}: no viewing direction")
    forward /= distance
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:
        # Looking straight up or down: put world +y at the top of the image.
        right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.vstack([right, down, forward])
    translation = -rotation @ eye
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    intrinsics = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Camera(
        id=camera_id,
        width=width,
        height=height,
        fps=fps,
        intrinsics=intrinsics.tolist(),
        rotation=rotation.tolist(),
        translation=translation.tolist(),
    )


def world_to_image(camera: Camera, points: ArrayLike) -> FloatArray:
    """Pixels of world points ``(N, 3)`` through a pinhole camera; ``NaN`` rows behind it.

    Applies the camera's lens distortion, if any. Needs a pinhole calibration.
    """
    intrinsics, rotation, translation = pinhole_matrices(camera)
    world = _points("points", points, 3)
    local = world @ rotation.T + translation
    pixels = _divide_in_front(local[:, :2], local[:, 2])
    undistorted = pixels @ intrinsics[:2, :2].T + intrinsics[:2, 2]
    distortion = _distortion(camera)
    if distortion is None:
        return undistorted
    return _distort(undistorted, intrinsics, distortion)


def _undistort(pixels: FloatArray, intrinsics: FloatArray, distortion: FloatArray) -> FloatArray:
    if len(pixels) == 0:
        return pixels.copy()
    source = pixels.reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    iterate = getattr(cv2, "undistortPointsIter", None)  # OpenCV 4.x; 5.x takes criteria directly
    if iterate is not None:
        result = iterate(source, intrinsics, distortion, None, intrinsics, criteria)
    else:
        result = cv2.undistortPoints(source, intrinsics, distortion, P=intrinsics, criteria=criteria)
    out: FloatArray = np.asarray(result, dtype=np.float64).reshape(-1, 2)
    return out


def _distort(pixels: FloatArray, intrinsics: FloatArray, distortion: FloatArray) -> FloatArray:
    """Undistorted pixels to distorted ones; ``NaN`` rows stay ``NaN``."""
    out = np.full_like(pixels, np.nan)
    valid = np.all(np.isfinite(pixels), axis=1)
    if not np.any(valid):
        return out
    rays = np.column_stack([pixels[valid], np.ones(int(valid.sum()))]) @ np.linalg.inv(intrinsics).T
    projected, _ = cv2.projectPoints(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), intrinsics, distortion)
    out[valid] = np.asarray(projected, dtype=np.float64).reshape(-1, 2)
    return out


class GroundProjector:
    """One camera's ground mapping, its matrices computed once.

    >>> camera = look_at_camera("c", 640, 480, 60, position=(0, 0, 4), target=(0, 10, 0))
    >>> projector = GroundProjector(camera)
    >>> projector.to_ground([[300, 200, 340, 240]]).round(6).tolist()  # a box: its foot point
    [[0.0, 10.0]]
    >>> projector.to_image([[0, 10]]).round(6).tolist()
    [[320.0, 240.0]]
    """

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.homography = ground_homography(camera)
        self.inverse = _inverse(self.homography)
        self._distortion = _distortion(camera)
        self._intrinsics = (
            None if camera.intrinsics is None else np.asarray(camera.intrinsics, dtype=np.float64)
        )

    @property
    def position(self) -> FloatArray | None:
        """The camera's ground position ``(x, y)`` (pinhole calibration), else ``None``."""
        if self.camera.intrinsics is None:
            return None
        centre = camera_centre(self.camera)
        return centre[:2].copy()

    def undistort(self, pixels: ArrayLike) -> FloatArray:
        """Pixels ``(N, 2)`` with lens distortion removed (unchanged without distortion)."""
        points = _points("pixels", pixels, 2)
        if self._distortion is None or self._intrinsics is None:
            return points
        return _undistort(points, self._intrinsics, self._distortion)

    def to_ground(self, pixels_or_boxes: ArrayLike) -> FloatArray:
        """Ground points ``(N, 2)`` in metres of pixels ``(N, 2)`` or of boxes' foot points ``(N, 4)``.

        Rows whose ray does not meet the ground in front of the camera are ``NaN``.
        """
        array = np.asarray(pixels_or_boxes, dtype=np.float64)
        if array.ndim == 2 and array.shape[1] == 4:
            array = foot_points(array)
        elif not (array.ndim == 2 and array.shape[1] == 2):
            raise ValueError(f"expected pixels (N, 2) or xyxy boxes (N, 4), got shape {array.shape}")
        xy, w = _homogeneous_apply(self.homography, self.undistort(array))
        return _divide_in_front(xy, w)

    def to_image(self, points: ArrayLike) -> FloatArray:
        """Pixels ``(N, 2)`` of ground points ``(N, 2)``; ``NaN`` rows for points behind the camera."""
        ground = _points("points", points, 2)
        uv, depth = _homogeneous_apply(self.inverse, ground)
        pixels = _divide_in_front(uv, depth)
        if self._distortion is None or self._intrinsics is None:
            return pixels
        return _distort(pixels, self._intrinsics, self._distortion)

    def _image_outline(self, samples_per_edge: int) -> FloatArray:
        """The image border as a convex polygon in undistorted pixels."""
        width, height = float(self.camera.width), float(self.camera.height)
        corners = np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
        if self._distortion is None:
            return corners
        steps = np.linspace(0.0, 1.0, samples_per_edge, endpoint=False)[:, None]
        border = np.vstack(
            [a + steps * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True)]
        )
        hull = cv2.convexHull(self.undistort(border).astype(np.float32)).reshape(-1, 2)
        return np.asarray(hull, dtype=np.float64)

    def visible_ground(self, max_range_m: float = 40.0, *, segments: int = 64) -> FloatArray:
        """The ground the camera sees, within ``max_range_m``: a convex polygon ``(M, 2)`` in metres.

        Vertices run counter-clockwise seen from above; empty ``(0, 2)`` when no ground is seen.
        The range is a disc around the camera's ground position (a regular ``segments``-gon), or,
        for a homography-only calibration where the camera's position is unknown, around the ground
        point under the bottom centre of the image. With lens distortion the image border is
        replaced by the convex hull of its undistorted outline (slightly generous for barrel distortion).

        >>> camera = look_at_camera("c", 640, 480, 60, position=(0, 0, 4), target=(0, 10, 0))
        >>> polygon = GroundProjector(camera).visible_ground(20)
        >>> bool(polygon[:, 1].min() > 0 and np.hypot(*polygon.T).max() <= 20 + 1e-9)
        True
        """
        if not max_range_m > 0 or not math.isfinite(max_range_m):
            raise ValueError(f"max_range_m must be positive and finite, got {max_range_m}")
        if segments < 8:
            raise ValueError(f"segments must be at least 8, got {segments}")
        centre = self.position
        if centre is None:
            anchor = self.to_ground([[self.camera.width / 2, float(self.camera.height)]])[0]
            if not np.all(np.isfinite(anchor)):
                raise ValueError(
                    f"camera {self.camera.id!r}: the bottom centre of the image does not see the ground, "
                    "so a homography-only calibration gives no position to measure the range from"
                )
            centre = anchor
        angles = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
        polygon = centre + max_range_m * np.column_stack([np.cos(angles), np.sin(angles)])
        # In front of the camera: depth = third row of the ground-to-image map > 0.
        polygon = clip_polygon(polygon, self.inverse[2])
        outline = self._image_outline(samples_per_edge=16)
        inside = outline.mean(axis=0)
        for start, end in zip(outline, np.roll(outline, -1, axis=0), strict=True):
            line = np.cross([*start, 1.0], [*end, 1.0])
            if line @ [*inside, 1.0] < 0:
                line = -line
            # line . (G @ X) = depth * line . [u, v, 1]: the same side where depth > 0.
            polygon = clip_polygon(polygon, line @ self.inverse)
        if len(polygon) < 3 or polygon_area(polygon) <= 0:
            return np.empty((0, 2), dtype=np.float64)
        return polygon


def _as_homography(camera_or_homography: Camera | ArrayLike) -> FloatArray:
    if isinstance(camera_or_homography, Camera):
        return ground_homography(camera_or_homography)
    return orient_homography(camera_or_homography)


def image_to_ground(camera_or_homography: Camera | ArrayLike, pixels: ArrayLike) -> FloatArray:
    """Ground points ``(N, 2)`` in metres of pixels ``(N, 2)``; ``NaN`` rows above the horizon.

    Takes a ``Camera`` (distortion handled) or a 3x3 image-to-ground homography (oriented first,
    see ``orient_homography``). A pixel maps to ``NaN`` when its ray does not meet the ground in
    front of the camera.

    >>> image_to_ground([[0.01, 0, 0], [0, -0.01, 10], [0, 0, 1]], [[100, 200]]).tolist()
    [[1.0, 8.0]]
    """
    if isinstance(camera_or_homography, Camera):
        return GroundProjector(camera_or_homography).to_ground(_points("pixels", pixels, 2))
    xy, w = _homogeneous_apply(_as_homography(camera_or_homography), _points("pixels", pixels, 2))
    return _divide_in_front(xy, w)


def ground_to_image(camera_or_homography: Camera | ArrayLike, points: ArrayLike) -> FloatArray:
    """Pixels ``(N, 2)`` of ground points ``(N, 2)``; ``NaN`` rows for points behind the camera.

    >>> ground_to_image([[0.01, 0, 0], [0, -0.01, 10], [0, 0, 1]], [[1, 8]]).round(9).tolist()
    [[100.0, 200.0]]
    """
    if isinstance(camera_or_homography, Camera):
        return GroundProjector(camera_or_homography).to_image(points)
    inverse = _inverse(_as_homography(camera_or_homography))
    uv, depth = _homogeneous_apply(inverse, _points("points", points, 2))
    return _divide_in_front(uv, depth)


# --------------------------------------------------------------------------------- polygons
def polygon_area(polygon: ArrayLike) -> float:
    """Signed area of a polygon ``(M, 2)`` (positive when counter-clockwise, x right and y up)."""
    vertices = _points("polygon", polygon, 2)
    if len(vertices) < 3:
        return 0.0
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def clip_polygon(polygon: FloatArray, halfplane: ArrayLike) -> FloatArray:
    """The part of a convex polygon where ``a * x + b * y + c >= 0`` (``halfplane = (a, b, c)``)."""
    if len(polygon) == 0:
        return polygon
    coefficients = np.asarray(halfplane, dtype=np.float64)
    value = polygon @ coefficients[:2] + coefficients[2]
    following = np.roll(polygon, -1, axis=0)
    value_following = np.roll(value, -1)
    inside = value >= 0
    crossing = inside != (value_following >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(crossing, value / (value - value_following), 0.0)
    crossings = polygon + fraction[:, None] * (following - polygon)
    # Sutherland-Hodgman: each vertex if inside, then the edge's crossing if it has one.
    candidates = np.stack([polygon, crossings], axis=1)
    keep = np.stack([inside, crossing], axis=1)
    clipped: FloatArray = candidates[keep]
    return clipped


def convex_intersection(first: ArrayLike, second: ArrayLike) -> FloatArray:
    """The intersection of two convex polygons ``(M, 2)``, counter-clockwise, maybe empty ``(0, 2)``.

    >>> square = [[0, 0], [2, 0], [2, 2], [0, 2]]
    >>> polygon_area(convex_intersection(square, [[1, 1], [3, 1], [3, 3], [1, 3]]))
    1.0
    """
    a = _points("first", first, 2)
    b = _points("second", second, 2)
    if len(a) < 3 or len(b) < 3:
        return np.empty((0, 2), dtype=np.float64)
    if polygon_area(a) < 0:
        a = a[::-1]
    if polygon_area(b) < 0:
        b = b[::-1]
    result = a
    for start, end in zip(b, np.roll(b, -1, axis=0), strict=True):
        # Left of each counter-clockwise edge is inside.
        direction = end - start
        offset = direction[1] * start[0] - direction[0] * start[1]
        result = clip_polygon(result, [-direction[1], direction[0], offset])
        if len(result) == 0:
            break
    if len(result) < 3:
        return np.empty((0, 2), dtype=np.float64)
    return result


# ------------------------------------------------------------------------------ calibration
def _spread(points: FloatArray) -> tuple[float, float]:
    """Largest and smallest singular values of the centred points, per point (RMS extents)."""
    centred = points - points.mean(axis=0)
    values = np.linalg.svd(centred, compute_uv=False) / math.sqrt(len(points))
    return float(values[0]), float(values[-1])


def _check_point_set(name: str, points: FloatArray, unit: str) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
    if len(bad):
        raise ValueError(f"{name} row {bad[0]} is not finite: {points[bad[0]].tolist()}")
    widest, thinnest = _spread(points)
    tolerance = DUPLICATE_FRACTION * max(widest, 1e-300)
    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")
    if len(pairs) or widest == 0:
        first, second = (int(i) for i in (pairs[0] if len(pairs) else (0, 1)))
        raise ValueError(
            f"{name} rows {first} and {second} are duplicates ({points[first].tolist()}): "
            "each calibration point must be a distinct place"
        )
    if thinnest < COLLINEAR_RATIO * widest:
        raise ValueError(
            f"{name} are (nearly) collinear: they spread {thinnest:.3g} {unit} across their line and "
            f"{widest:.3g} {unit} along it (ratio {thinnest / widest:.2g}, need at least {COLLINEAR_RATIO}); "
            "add points away from that line"
        )


def _normaliser(points: FloatArray) -> FloatArray:
    centre = points.mean(axis=0)
    scale = math.sqrt(2) / max(float(np.mean(np.linalg.norm(points - centre, axis=1))), 1e-300)
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class HomographyFit:
    """An image-to-ground homography fitted to point pairs, with its errors.

    ``errors_m``: per pair, the ground distance between ``H(image point)`` and the ground point;
    ``errors_px``: per pair, the pixel distance between ``H⁻¹(ground point)`` and the image point
    (``NaN`` where a point falls behind the camera). Summary figures are over the inliers.
    """

    homography: FloatArray
    image_points: FloatArray
    ground_points: FloatArray
    inliers: BoolArray
    errors_m: FloatArray
    errors_px: FloatArray
    ransac_threshold_m: float

    def __post_init__(self) -> None:
        for name in ("homography", "image_points", "ground_points", "inliers", "errors_m", "errors_px"):
            getattr(self, name).setflags(write=False)

    @property
    def inlier_count(self) -> int:
        return int(self.inliers.sum())

    @property
    def rmse_m(self) -> float:
        """Root mean square ground error over the inliers, metres."""
        return float(np.sqrt(np.mean(self.errors_m[self.inliers] ** 2)))

    @property
    def max_error_m(self) -> float:
        return float(np.max(self.errors_m[self.inliers]))

    @property
    def rmse_px(self) -> float:
        """Root mean square back-projection error over the inliers, pixels."""
        return float(np.sqrt(np.nanmean(self.errors_px[self.inliers] ** 2)))

    @property
    def max_error_px(self) -> float:
        return float(np.nanmax(self.errors_px[self.inliers]))

    def to_camera(self, camera_id: str, width: int, height: int, *, fps: float | None = None) -> Camera:
        """A ``Camera`` calibrated by this homography."""
        return camera_from_homography(camera_id, width, height, self.homography, fps=fps)

    def summary(self, max_rows: int = 50) -> str:
        """A short report: inlier count, RMSE and maximum errors, then one row per point pair."""
        return calibration_report(self, max_rows=max_rows)


def calibration_report(fit: HomographyFit, *, max_rows: int = 50) -> str:
    """The fit as a plain-text table (worst pairs first when there are more than ``max_rows``)."""
    total = len(fit.inliers)
    lines = [
        f"homography fit: {fit.inlier_count} of {total} point pairs are inliers "
        f"(RANSAC threshold {fit.ransac_threshold_m:g} m)",
        f"ground error, inliers:  rmse {fit.rmse_m:.3f} m   max {fit.max_error_m:.3f} m",
        f"image error, inliers:   rmse {fit.rmse_px:.2f} px  max {fit.max_error_px:.2f} px",
        f"{'#':>4} {'image u':>9} {'image v':>9} {'ground x':>9} {'ground y':>9} "
        f"{'error m':>8} {'error px':>8}  inlier",
    ]
    order = np.arange(total)
    if total > max_rows:
        order = np.argsort(-np.nan_to_num(fit.errors_m, nan=np.inf), kind="stable")[:max_rows]
    for index in order:
        u, v = fit.image_points[index]
        x, y = fit.ground_points[index]
        lines.append(
            f"{index:>4} {u:>9.1f} {v:>9.1f} {x:>9.3f} {y:>9.3f} "
            f"{fit.errors_m[index]:>8.3f} {fit.errors_px[index]:>8.2f}  "
            f"{'yes' if fit.inliers[index] else 'NO'}"
        )
    if total > max_rows:
        lines.append(f"... {total - max_rows} more pairs with smaller errors")
    return "\n".join(lines)


def estimate_homography(
    image_points: ArrayLike,
    ground_points: ArrayLike,
    *,
    ransac_threshold_m: float = 0.25,
    min_inliers: int = 4,
    confidence: float = 0.999,
    max_iterations: int = 5000,
) -> HomographyFit:
    """Fit an image-to-ground homography to point pairs with RANSAC (OpenCV ``findHomography``).

    ``image_points`` ``(N, 2)`` pixels and ``ground_points`` ``(N, 2)`` metres, row-aligned. A pair
    is an inlier when the mapped image point lands within ``ransac_threshold_m`` of its ground
    point. ``ValueError`` names the problem for: fewer than 4 pairs, mismatched shapes, non-finite
    or duplicate points, (nearly) collinear image or ground points, RANSAC failure, fewer than
    ``min_inliers`` inliers, collinear inliers, a singular result, the horizon passing between
    inliers, or a mirrored result (a left-handed ground frame, e.g. x and y swapped).

    >>> camera = look_at_camera("c", 640, 480, 60, position=(0, 0, 4), target=(0, 10, 0))
    >>> ground = np.array([[-3, 6], [3, 6], [-4, 14], [4, 14], [0, 10]], dtype=float)
    >>> fit = estimate_homography(ground_to_image(camera, ground), ground)
    >>> fit.inlier_count, fit.rmse_m < 1e-6
    (5, True)
    """
    image = _points("image_points", image_points, 2)
    ground = _points("ground_points", ground_points, 2)
    if len(image) != len(ground):
        raise ValueError(
            "image_points and ground_points must have the same number of rows, "
            f"got {len(image)} and {len(ground)}"
        )
    if len(image) < 4:
        raise ValueError(f"a homography needs at least 4 point pairs, got {len(image)}")
    if not ransac_threshold_m > 0:
        raise ValueError(f"ransac_threshold_m must be positive, got {ransac_threshold_m}")
    if min_inliers < 4:
        raise ValueError(f"min_inliers must be at least 4, got {min_inliers}")
    if min_inliers > len(image):
        raise ValueError(f"min_inliers ({min_inliers}) exceeds the number of point pairs ({len(image)})")
    _check_point_set("image_points", image, "px")
    _check_point_set("ground_points", ground, "m")

    found, mask = cv2.findHomography(
        image,
        ground,
        cv2.RANSAC,
        ransacReprojThreshold=ransac_threshold_m,
        maxIters=max_iterations,
        confidence=confidence,
    )
    if found is None or mask is None or not np.all(np.isfinite(found)):
        raise ValueError(
            f"RANSAC found no homography consistent with the {len(image)} point pairs "
            f"(threshold {ransac_threshold_m} m): check that the pairs correspond"
        )
    inliers = np.asarray(mask, dtype=bool).reshape(-1)
    count = int(inliers.sum())
    if count < min_inliers:
        raise ValueError(
            f"only {count} of {len(image)} point pairs are inliers within {ransac_threshold_m} m "
            f"(need at least {min_inliers}): the pairs disagree, or the threshold is too tight"
        )
    for name, points, unit in (("inlier image points", image, "px"), ("inlier ground points", ground, "m")):
        widest, thinnest = _spread(points[inliers])
        if thinnest < COLLINEAR_RATIO * widest:
            raise ValueError(
                f"{name} are (nearly) collinear (spread {thinnest:.3g} {unit} across, {widest:.3g} {unit} "
                "along): the homography is not determined; add points away from that line"
            )
    matrix = np.asarray(found, dtype=np.float64)
    normalised = _normaliser(ground[inliers]) @ matrix @ np.linalg.inv(_normaliser(image[inliers]))
    values = np.linalg.svd(normalised, compute_uv=False)
    if values[-1] < SINGULAR_RATIO * values[0]:
        raise ValueError(
            f"the fitted homography is singular (singular value ratio {values[-1] / values[0]:.2g}): "
            "the points do not determine a ground mapping"
        )
    homography = orient_homography(matrix)
    _, w = _homogeneous_apply(homography, image[inliers])
    if np.all(w < 0):
        raise ValueError(
            "the fitted homography mirrors the image: no camera above a right-handed, z-up ground "
            "produces it; check for swapped ground x and y columns or a left-handed site frame"
        )
    if not np.all(w > 0):
        raise ValueError(
            f"the fitted homography puts the horizon between inlier points ({int(np.sum(w <= 0))} of {count} "
            "fall behind the camera): the pairs are inconsistent"
        )
    xy, w_all = _homogeneous_apply(homography, image)
    errors_m = np.linalg.norm(_divide_in_front(xy, w_all) - ground, axis=1)
    uv, depth = _homogeneous_apply(_inverse(homography), ground)
    errors_px = np.linalg.norm(_divide_in_front(uv, depth) - image, axis=1)
    return HomographyFit(
        homography=homography,
        image_points=image.copy(),
        ground_points=ground.copy(),
        inliers=inliers,
        errors_m=errors_m,
        errors_px=errors_px,
        ransac_threshold_m=float(ransac_threshold_m),
    )


# --------------------------------------------------------------------------------- site map
class SiteMap(BaseModel):
    """A similarity transform from ground metres to the pixels of a site-map image.

    A ground point is rotated ``rotation_deg`` counter-clockwise (seen from above), scaled by
    ``pixels_per_metre`` and drawn with ground ``+y`` pointing up the image (map rows grow
    downwards), then shifted so that the ground origin lands on ``origin_px``.

    >>> site = SiteMap(pixels_per_metre=10, origin_px=(100, 500))
    >>> site.to_map([[2, 3]]).tolist()
    [[120.0, 470.0]]
    >>> site.to_ground([[120, 470]]).tolist()
    [[2.0, 3.0]]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pixels_per_metre: float = Field(gt=0, allow_inf_nan=False)
    origin_px: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = Field(default=0.0, allow_inf_nan=False)

    def matrix(self) -> FloatArray:
        """The 3x3 ground-to-map transform (homogeneous coordinates)."""
        angle = math.radians(self.rotation_deg)
        cos, sin = math.cos(angle), math.sin(angle)
        scale = self.pixels_per_metre
        return np.array(
            [
                [scale * cos, -scale * sin, self.origin_px[0]],
                [-scale * sin, -scale * cos, self.origin_px[1]],
                [0.0, 0.0, 1.0],
            ]
        )

    def to_map(self, points: ArrayLike) -> FloatArray:
        """Map pixels ``(N, 2)`` of ground points ``(N, 2)`` (``NaN`` rows stay ``NaN``)."""
        matrix = self.matrix()
        mapped: FloatArray = _points("points", points, 2) @ matrix[:2, :2].T + matrix[:2, 2]
        return mapped

    def to_ground(self, map_pixels: ArrayLike) -> FloatArray:
        """Ground points ``(N, 2)`` of map pixels ``(N, 2)``."""
        matrix = self.matrix()
        pixels = _points("map_pixels", map_pixels, 2)
        ground: FloatArray = (pixels - matrix[:2, 2]) @ np.linalg.inv(matrix[:2, :2]).T
        return ground

    @classmethod
    def fit(cls, ground_points: ArrayLike, map_points: ArrayLike) -> SiteMap:
        """The least-squares site map through ground/map point pairs (at least 2 distinct points).

        >>> truth = SiteMap(pixels_per_metre=12.5, origin_px=(40, 300), rotation_deg=30)
        >>> ground = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
        >>> fitted = SiteMap.fit(ground, truth.to_map(ground))
        >>> round(fitted.pixels_per_metre, 9), round(fitted.rotation_deg, 9)
        (12.5, 30.0)
        """
        ground = _points("ground_points", ground_points, 2)
        pixels = _points("map_points", map_points, 2)
        if len(ground) != len(pixels):
            raise ValueError(
                "ground_points and map_points must have the same number of rows, "
                f"got {len(ground)} and {len(pixels)}"
            )
        if not (np.all(np.isfinite(ground)) and np.all(np.isfinite(pixels))):
            raise ValueError("ground_points and map_points must be finite")
        # As complex numbers, conj(map) = conj(origin) + a * ground with a = scale * exp(i * angle).
        source = ground[:, 0] + 1j * ground[:, 1]
        target = pixels[:, 0] - 1j * pixels[:, 1]
        source_centred = source - source.mean() if len(source) else source
        power = float(np.sum(np.abs(source_centred) ** 2))
        if len(ground) < 2 or power <= 0:
            raise ValueError(f"a site map needs at least 2 distinct ground points, got {len(ground)} rows")
        factor = complex(np.sum(np.conj(source_centred) * (target - target.mean())) / power)
        offset = complex(target.mean() - factor * source.mean())
        if abs(factor) == 0:
            raise ValueError("the map points are all the same pixel: no scale can be fitted")
        return cls(
            pixels_per_metre=abs(factor),
            origin_px=(offset.real, -offset.imag),
            rotation_deg=math.degrees(math.atan2(factor.imag, factor.real)),
        )
