"""The parking facility's plan, its static structures, its cameras and its painted ground.

World frame: metres, the ground is ``z = 0``, ``z`` up. ``x`` runs along the drive lane from the
entry gate (``x = 0``) to the exit (``x = lot_length``); ``y`` across it, the lane in the middle
(``y = lot_width / 2``), north (``+y``) up on the site map. Pinhole cameras map a world point
``X`` to ``x_c = R @ X + t`` and to the pixel ``K @ x_c / x_c[2]`` (continuous pixel
coordinates: pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.core.camera import Camera
from crossview.multicam.geometry import look_at_camera
from crossview.sim.site.spec import SiteSpec

Colour = tuple[int, int, int]  # BGR, as OpenCV draws
FaceColours = tuple[Colour, Colour, Colour, Colour, Colour, Colour]
Role = Literal["gate", "rows", "exit"]

# A box's 8 corners are numbered ix * 4 + iy * 2 + iz (each bit: low or high side on that axis).
# Faces in the order of ``Box.colours``: front (+x), back (-x), left (+y), right (-y), top, bottom;
# each face's corners go round it.
FACE_CORNERS: Final = np.array(
    [[4, 5, 7, 6], [0, 1, 3, 2], [2, 3, 7, 6], [0, 1, 5, 4], [1, 3, 7, 5], [0, 2, 6, 4]], dtype=np.intp
)
FACE_NORMALS: Final = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
_CORNER_BITS: Final = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64)

LANE_HALF_WIDTH: Final = 3.0
SPACE_DEPTH: Final = 5.0
SPACE_PITCH: Final = 3.3  # 1.5 m between parked cars, so neighbours stay apart in the images
ROW_SETBACK: Final = 0.5  # between the lane edge and the start of a space
FOOTPATH_OFFSET: Final = 11.0  # footpath centre lines at lane_y +- this
FOOTPATH_HALF_WIDTH: Final = 1.0
CROSSWALK_HALF_WIDTH: Final = 1.5
PLAZA_HALF_WIDTH: Final = 3.0  # no spaces within this of the middle of the lot: the crossing strip
ROWS_START: Final = 0.24  # spaces from this fraction of the lot length to one minus it
ROAD_LENGTH: Final = 40.0  # entry and exit roads painted beyond the lot
GATE_SETBACK: Final = 3.0  # the entry and exit barriers stand this far out on their roads
ROW_CAMERA_OVERLAP: Final = 4.0  # metres of the near row two neighbouring row cameras share
FOV_MARGIN: Final = 1.0  # metres of near row a row camera sees beyond its section on each side


@dataclass(frozen=True, slots=True)
class Box:
    """A cuboid in its owner's frame (an actor's body frame, ``+x`` forward, or the world).

    ``centre`` is the footprint centre, ``size`` is (length along x, width along y, height),
    ``base`` the height of the bottom face and ``colours`` one BGR colour per face, in the order
    front, back, left, right, top, bottom (``FACE_CORNERS``).
    """

    centre: tuple[float, float]
    size: tuple[float, float, float]
    base: float
    colours: FaceColours

    def corners(self) -> NDArray[np.float64]:
        """The ``(8, 3)`` corners, numbered ``ix * 4 + iy * 2 + iz``."""
        low = np.array([self.centre[0] - self.size[0] / 2, self.centre[1] - self.size[1] / 2, self.base])
        corners: NDArray[np.float64] = low + _CORNER_BITS * np.asarray(self.size, dtype=np.float64)
        return corners

    def to_dict(self) -> dict[str, Any]:
        return {
            "centre": list(self.centre),
            "size": list(self.size),
            "base": self.base,
            "colours": [list(colour) for colour in self.colours],
        }


@dataclass(frozen=True, slots=True)
class ParkingSpace:
    """One marked space; a vehicle parks nose-in, facing ``heading`` (radians, from ``+x``)."""

    id: int
    row: Literal["north", "south"]
    centre: tuple[float, float]
    size: tuple[float, float]  # along x (the pitch), along y (the depth)
    heading: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "row": self.row,
            "centre": list(self.centre),
            "size": list(self.size),
            "heading": self.heading,
        }


@dataclass(frozen=True, slots=True)
class SiteMap:
    """The plan of the facility: one east-bound drive lane from the gate to the exit, a row of
    parking spaces on each side of it in two blocks with a pedestrian crossing between them,
    and a footpath along each long side of the lot.
    """

    length: float
    width: float
    lane_y: float
    spaces: tuple[ParkingSpace, ...]
    crosswalk: tuple[float, float]  # x range
    footpath_y: tuple[float, float]  # centre lines (south, north)
    structures: tuple[Box, ...]  # booths at the gate and exit, in the world frame

    @property
    def gate_x(self) -> float:
        """The entry barrier: vehicles enter when their centre crosses this line."""
        return -GATE_SETBACK

    @property
    def exit_x(self) -> float:
        """The exit barrier: vehicles leave when their centre crosses this line."""
        return self.length + GATE_SETBACK

    @property
    def rows_extent(self) -> tuple[float, float]:
        """``x`` range covered by parking spaces."""
        low = min(space.centre[0] - space.size[0] / 2 for space in self.spaces)
        high = max(space.centre[0] + space.size[0] / 2 for space in self.spaces)
        return low, high

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the painted ground (the lot and its surroundings)."""
        return -ROAD_LENGTH, self.length + ROAD_LENGTH, -25.0, self.width + 15.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "lot": {"length": self.length, "width": self.width},
            "lane": {
                "y": self.lane_y,
                "half_width": LANE_HALF_WIDTH,
                "x": [-ROAD_LENGTH, self.length + ROAD_LENGTH],
            },
            "gate": {"x": self.gate_x, "y": [self.lane_y - LANE_HALF_WIDTH, self.lane_y + LANE_HALF_WIDTH]},
            "exit": {"x": self.exit_x, "y": [self.lane_y - LANE_HALF_WIDTH, self.lane_y + LANE_HALF_WIDTH]},
            "spaces": [space.to_dict() for space in self.spaces],
            "crosswalk": {"x": list(self.crosswalk)},
            "footpaths": {"y": list(self.footpath_y), "half_width": FOOTPATH_HALF_WIDTH},
            "structures": [box.to_dict() for box in self.structures],
            "extent": list(self.extent),
        }


def build_map(spec: SiteSpec) -> SiteMap:
    """The plan for a lot of ``spec``'s size (deterministic: no randomness in the plan)."""
    length, width = spec.lot_length, spec.lot_width
    lane_y = width / 2
    middle = length / 2
    crosswalk = (middle - CROSSWALK_HALF_WIDTH, middle + CROSSWALK_HALF_WIDTH)
    plaza = (middle - PLAZA_HALF_WIDTH, middle + PLAZA_HALF_WIDTH)
    block = plaza[0] - ROWS_START * length
    per_block = max(1, int(block // SPACE_PITCH + 1e-9))
    near = LANE_HALF_WIDTH + ROW_SETBACK + SPACE_DEPTH / 2
    spaces: list[ParkingSpace] = []
    for row, sign in (("north", 1.0), ("south", -1.0)):
        west = plaza[0] - SPACE_PITCH * (np.arange(per_block)[::-1] + 0.5)
        east = plaza[1] + SPACE_PITCH * (np.arange(per_block) + 0.5)
        for x in np.concatenate([west, east]).tolist():
            spaces.append(
                ParkingSpace(
                    id=len(spaces) + 1,
                    row="north" if row == "north" else "south",
                    centre=(round(x, 6), lane_y + sign * near),
                    size=(SPACE_PITCH, SPACE_DEPTH),
                    heading=sign * math.pi / 2,
                )
            )
    wall: Colour = (182, 178, 170)
    roof: Colour = (70, 72, 80)
    window: Colour = (96, 76, 60)
    booth_y = lane_y - LANE_HALF_WIDTH - 1.4
    booths = tuple(
        Box(
            centre=(x, booth_y),
            size=(1.6, 1.6, 2.5),
            base=0.0,
            colours=(window, wall, window, wall, roof, roof),
        )
        for x in (-GATE_SETBACK + 1.2, length + GATE_SETBACK - 1.2)
    )
    return SiteMap(
        length=length,
        width=width,
        lane_y=lane_y,
        spaces=tuple(spaces),
        crosswalk=crosswalk,
        footpath_y=(lane_y - FOOTPATH_OFFSET, lane_y + FOOTPATH_OFFSET),
        structures=booths,
    )


# ---------------------------------------------------------------------------------- cameras
@dataclass(frozen=True, slots=True)
class Lighting:
    """A camera's fixed photometry: ``out = gain * cast * colour + offset``, then sensor noise."""

    gain: float = 1.0
    offset: float = 0.0
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # B, G, R multipliers
    noise: float = 2.0

    def apply(self, colours: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Lit colours (``(..., 3)`` BGR, unclipped floats)."""
        scale = self.gain * np.asarray(self.cast, dtype=np.float64)
        lit: NDArray[np.float64] = np.asarray(colours, dtype=np.float64) * scale + self.offset
        return lit

    def to_dict(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset": self.offset, "cast": list(self.cast), "noise": self.noise}


@dataclass(frozen=True, slots=True)
class SiteCamera:
    """A camera of the site: its calibrated ``Camera``, what it watches and how it sees."""

    camera: Camera
    role: Role
    position: tuple[float, float, float]
    target: tuple[float, float, float]
    fov: float  # horizontal, degrees
    lighting: Lighting

    @property
    def id(self) -> str:
        return self.camera.id

    def matrices(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(K, R, t)`` as arrays."""
        camera = self.camera
        assert (
            camera.intrinsics is not None and camera.rotation is not None and camera.translation is not None
        )
        return (
            np.asarray(camera.intrinsics, dtype=np.float64),
            np.asarray(camera.rotation, dtype=np.float64),
            np.asarray(camera.translation, dtype=np.float64),
        )

    def info(self) -> dict[str, Any]:
        """What ``site.json`` says about the camera besides its calibration."""
        return {
            "id": self.id,
            "role": self.role,
            "position": list(self.position),
            "target": list(self.target),
            "fov": self.fov,
            "lighting": self.lighting.to_dict(),
        }


def _camera(
    spec: SiteSpec,
    index: int,
    role: Role,
    position: tuple[float, float, float],
    target: tuple[float, float, float],
    fov: float,
    lighting: Lighting,
) -> SiteCamera:
    camera = look_at_camera(f"c{index}", spec.width, spec.height, fov, position, target, fps=spec.fps)
    return SiteCamera(camera, role, position, target, fov, lighting)


def place_cameras(spec: SiteSpec, site_map: SiteMap, rng: np.random.Generator) -> tuple[SiteCamera, ...]:
    """Cameras on poles along the north edge: ``c1`` the gate, the last the exit, the rest the rows.

    The gate camera stands inside the lot and looks back out through the gate (the exit camera
    mirrors it), so neither sees the parking rows; the row cameras look across the lane at
    sections of the rows that overlap by ``ROW_CAMERA_OVERLAP`` metres. Poles are 6-10 m high;
    positions jitter a little with ``rng`` and each camera gets its own lighting.
    """
    lane_y = site_map.lane_y
    pole_y = lane_y + FOOTPATH_OFFSET + 2.5  # beyond the north footpath
    row_pole_y = lane_y + 19.0  # outside the lot: far enough back to see both rows whole
    rows_low, rows_high = site_map.rows_extent
    count = spec.num_cameras - 2
    cameras: list[SiteCamera] = []

    def lighting() -> Lighting:
        gain = float(rng.uniform(0.9, 1.1))
        offset = float(rng.uniform(-6.0, 6.0))
        cast = rng.uniform(0.95, 1.05, 3).round(4)
        return Lighting(
            round(gain, 4), round(offset, 3), (float(cast[0]), float(cast[1]), float(cast[2])), spec.noise
        )

    def jitter(scale: float) -> float:
        return round(float(rng.uniform(-scale, scale)), 4)

    cameras.append(
        _camera(
            spec,
            1,
            "gate",
            (2.0 + jitter(0.3), pole_y + jitter(0.3), 8.0 + jitter(0.3)),
            (site_map.gate_x - 7.0, lane_y - 1.0, 0.0),
            50.0,
            lighting(),
        )
    )
    section = (rows_high - rows_low + (count - 1) * ROW_CAMERA_OVERLAP) / max(count, 1)
    near_row = lane_y + LANE_HALF_WIDTH + ROW_SETBACK + SPACE_DEPTH / 2
    for k in range(count):
        middle = rows_low + k * (section - ROW_CAMERA_OVERLAP) + section / 2
        # poles a little towards the middle of the lot, looking a little outwards: the far row,
        # which every camera sees widest, then spills less into the neighbour's section
        toward = float(np.sign(round(site_map.length / 2 - middle, 6)))
        position = (middle + 2.0 * toward + jitter(0.3), row_pole_y + jitter(0.3), 9.5 + jitter(0.2))
        target = (middle, lane_y, 0.0)
        forward = np.subtract(target, position)
        # wide enough that the near row of the section (and a car's half width) fits across
        depth = float(
            np.dot(np.subtract((middle, near_row, 0.0), position), forward / np.linalg.norm(forward))
        )
        fov = math.degrees(2 * math.atan((section / 2 + FOV_MARGIN) / depth))
        cameras.append(_camera(spec, k + 2, "rows", position, target, round(min(fov, 100.0), 4), lighting()))
    cameras.append(
        _camera(
            spec,
            spec.num_cameras,
            "exit",
            (site_map.length - 2.0 + jitter(0.3), pole_y + jitter(0.3), 8.0 + jitter(0.3)),
            (site_map.exit_x + 7.0, lane_y - 1.0, 0.0),
            50.0,
            lighting(),
        )
    )
    return tuple(cameras)


def with_lighting(camera: SiteCamera, lighting: Lighting) -> SiteCamera:
    return replace(camera, lighting=lighting)


def ground_footprint(
    camera: SiteCamera, *, max_range: float = 60.0, samples: int = 16
) -> NDArray[np.float64]:
    """The ground area a camera sees: its image border cast onto ``z = 0``, ``(k, 2)`` metres.

    Rays that pass above the horizon, or meet the ground farther than ``max_range`` metres
    from the pole, are cut at that range.
    """
    intrinsics, rotation, translation = camera.matrices()
    width, height = camera.camera.width, camera.camera.height
    steps = np.linspace(0.0, 1.0, samples, endpoint=False)
    border = np.concatenate(
        [
            np.column_stack([steps * width, np.zeros(samples)]),
            np.column_stack([np.full(samples, width), steps * height]),
            np.column_stack([(1 - steps) * width, np.full(samples, height)]),
            np.column_stack([np.zeros(samples), (1 - steps) * height]),
        ]
    )
    rays = np.column_stack([border, np.ones(len(border))]) @ np.linalg.inv(intrinsics).T @ rotation
    centre = -rotation.T @ translation
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(rays[:, 2] < -1e-9, -centre[2] / rays[:, 2], np.inf)
    flat = np.linalg.norm(rays[:, :2], axis=1)
    reach = np.minimum(reach, max_range / np.maximum(flat, 1e-9))
    footprint: NDArray[np.float64] = centre[:2] + rays[:, :2] * reach[:, None]
    return footprint


# ---------------------------------------------------------------------------------- ground
@dataclass(frozen=True, slots=True)
class GroundRaster:
    """The painted ground seen from above: ``image`` (BGR), ``pixels_per_metre``, and the world
    point ``(x_min, y_max)`` at the raster's top-left corner (north up)."""

    image: NDArray[np.uint8]
    pixels_per_metre: float
    x_min: float
    y_max: float

    def to_pixels(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        """World ``(..., 2)`` metres to continuous raster pixels ``(u, v)``."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack(
            [
                (xy[..., 0] - self.x_min) * self.pixels_per_metre,
                (self.y_max - xy[..., 1]) * self.pixels_per_metre,
            ],
            axis=-1,
        )

    def world_from_pixel(self) -> NDArray[np.float64]:
        """The 3x3 map from OpenCV raster pixels (integer = pixel centre) to ground ``(x, y, 1)``."""
        scale = 1.0 / self.pixels_per_metre
        return np.array(
            [
                [scale, 0.0, self.x_min + 0.5 * scale],
                [0.0, -scale, self.y_max - 0.5 * scale],
                [0.0, 0.0, 1.0],
            ]
        )


_ASPHALT: Final = np.array([96.0, 97.0, 94.0])
_GRASS: Final = np.array([62.0, 112.0, 84.0])
_CONCRETE: Final = (150, 154, 156)
_PAINT: Final = (222, 226, 228)
_YELLOW: Final = (60, 196, 222)


def paint_ground(
    site_map: SiteMap, rng: np.random.Generator, *, pixels_per_metre: float = 16.0
) -> GroundRaster:
    """The ground raster: grass around an asphalt lot and roads, footpaths, lane and space markings.

    Textured (blotches and grain) so a background model has something to learn, painted so
    each camera sees recognisable structure.
    """
    x_min, x_max, y_min, y_max = site_map.extent
    ppm = pixels_per_metre
    cols, rows = round((x_max - x_min) * ppm), round((y_max - y_min) * ppm)
    coarse = rng.normal(0.0, 1.0, (max(2, rows // 24), max(2, cols // 24))).astype(np.float32)
    blotches = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 1.5), (cols, rows), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (rows, cols)).astype(np.float32), (0, 0), 0.8)
    texture = (blotches * 9.0 + grain * 7.0)[..., None]
    raster = GroundRaster(np.zeros((rows, cols, 3), np.uint8), ppm, x_min, y_max)
    paved = np.zeros((rows, cols), np.uint8)
    length, width, lane_y = site_map.length, site_map.width, site_map.lane_y

    def polygon(image: NDArray[np.uint8], corners: list[tuple[float, float]], colour: int | Colour) -> None:
        points = raster.to_pixels(np.asarray(corners, dtype=np.float64)) - 0.5
        value = (colour,) * 3 if isinstance(colour, int) else colour
        cv2.fillPoly(image, [np.round(points * 16).astype(np.int32)], value, cv2.LINE_AA, 4)

    def rect(
        image: NDArray[np.uint8], x0: float, y0: float, x1: float, y1: float, colour: int | Colour
    ) -> None:
        polygon(image, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)

    rect(paved, 0.0, 0.0, length, width, 255)
    rect(paved, x_min, lane_y - LANE_HALF_WIDTH - 0.5, x_max, lane_y + LANE_HALF_WIDTH + 0.5, 255)
    weight = (paved.astype(np.float32) / 255.0)[..., None]
    base = _GRASS * (1 - weight) + _ASPHALT * weight
    image = np.clip(base + texture, 0, 255).astype(np.uint8)
    footpath_y = site_map.footpath_y
    for y in footpath_y:
        rect(image, x_min, y - FOOTPATH_HALF_WIDTH, x_max, y + FOOTPATH_HALF_WIDTH, _CONCRETE)
    # kerbs and slabs on the footpaths: static edges a background model learns
    for y in footpath_y:
        for edge in (y - FOOTPATH_HALF_WIDTH, y + FOOTPATH_HALF_WIDTH):
            rect(image, x_min, edge - 0.08, x_max, edge + 0.08, (120, 124, 126))
        for x in np.arange(math.ceil(x_min), x_max, 1.5).tolist():
            rect(image, x - 0.02, y - FOOTPATH_HALF_WIDTH, x + 0.02, y + FOOTPATH_HALF_WIDTH, (128, 132, 134))
    line = 0.12
    for space in site_map.spaces:
        x, y = space.centre
        half_x, half_y = space.size[0] / 2, space.size[1] / 2
        for side in (x - half_x, x + half_x):
            rect(image, side - line / 2, y - half_y, side + line / 2, y + half_y, _PAINT)
        back = y + half_y if space.row == "north" else y - half_y
        rect(image, x - half_x, back - line / 2, x + half_x, back + line / 2, _PAINT)
    for x in np.arange(x_min + 1.0, x_max, 6.0).tolist():  # dashed centre line of the lane
        rect(image, x, lane_y - line / 2, x + 3.0, lane_y + line / 2, _YELLOW)
    for edge in (lane_y - LANE_HALF_WIDTH, lane_y + LANE_HALF_WIDTH):
        rect(image, x_min, edge - line / 2, 0.0, edge + line / 2, _PAINT)
        rect(image, length, edge - line / 2, x_max, edge + line / 2, _PAINT)
    for x in (site_map.gate_x + 0.6, site_map.exit_x - 0.6):  # stop lines at the barriers
        rect(image, x - 0.2, lane_y - LANE_HALF_WIDTH, x + 0.2, lane_y + LANE_HALF_WIDTH, _PAINT)
    low, high = site_map.crosswalk
    for y in np.arange(
        footpath_y[0] + FOOTPATH_HALF_WIDTH, footpath_y[1] - FOOTPATH_HALF_WIDTH, 1.0
    ).tolist():
        rect(image, low, y, high, y + 0.5, _PAINT)  # zebra across rows and lane
    for x in (length * 0.15, length * 0.5 + 6.0, length * 0.85):  # direction arrows on the lane
        polygon(
            image,
            [
                (x - 1.6, lane_y - 0.25),
                (x, lane_y - 0.25),
                (x, lane_y - 0.7),
                (x + 1.0, lane_y),
                (x, lane_y + 0.7),
                (x, lane_y + 0.25),
                (x - 1.6, lane_y + 0.25),
            ],
            _PAINT,
        )
    return GroundRaster(image, ppm, x_min, y_max)


def _map_window(
    site_map: SiteMap, cameras: Sequence[SiteCamera], ground: GroundRaster
) -> tuple[int, int, int, int]:
    """The part of the ground raster a site map shows, ``(left, top, right, bottom)`` raster
    pixels: the lot, its gate and exit roads, and the camera poles."""
    # whole metres, so that the map's scale is exactly its pixels per metre on both axes
    x_min, x_max = -15.0, math.ceil(site_map.length + 15.0)
    y_min = math.floor(min(-8.0, *(camera.position[1] - 4.0 for camera in cameras)))
    y_max = math.ceil(max(site_map.width + 8.0, *(camera.position[1] + 4.0 for camera in cameras)))
    corners = ground.to_pixels(np.array([[x_min, y_max], [x_max, y_min]]))
    limits = [ground.image.shape[1], ground.image.shape[0]]
    (left, top), (right, bottom) = np.clip(np.round(corners), 0, limits).astype(int).tolist()
    return left, top, right, bottom


def site_map_image(
    site_map: SiteMap, cameras: Sequence[SiteCamera], ground: GroundRaster, *, pixels_per_metre: float = 10.0
) -> tuple[NDArray[np.uint8], GroundRaster]:
    """A top view for reports: the painted ground, spaces numbered, gate and exit, and each
    camera's pole and field of view. Returns the image and its metres-to-pixels geometry."""
    left, top, right, bottom = _map_window(site_map, cameras, ground)
    crop = ground.image[top:bottom, left:right]
    factor = pixels_per_metre / ground.pixels_per_metre
    size = (round(crop.shape[1] * factor), round(crop.shape[0] * factor))
    image = np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    scale = 1.0 / ground.pixels_per_metre
    view = GroundRaster(image, pixels_per_metre, ground.x_min + left * scale, ground.y_max - top * scale)

    def pixel(xy: NDArray[np.float64]) -> NDArray[np.int32]:
        return np.round((view.to_pixels(xy) - 0.5) * 16).astype(np.int32)

    font = cv2.FONT_HERSHEY_SIMPLEX
    for box in site_map.structures:
        corners = box.corners()[[0, 2, 6, 4], :2]
        cv2.fillPoly(image, [pixel(corners)], box.colours[4], cv2.LINE_AA, 4)
    for space in site_map.spaces:
        u, v = view.to_pixels(np.asarray(space.centre))
        cv2.putText(image, str(space.id), (int(u) - 5, int(v) + 4), font, 0.35, (40, 40, 40), 1, cv2.LINE_AA)
    for label, x in (("GATE", site_map.gate_x), ("EXIT", site_map.exit_x)):
        u, v = view.to_pixels(np.array([x, site_map.lane_y - LANE_HALF_WIDTH - 3.2]))
        cv2.putText(image, label, (int(u) - 16, int(v)), font, 0.45, (20, 20, 200), 1, cv2.LINE_AA)
    palette = ((0, 0, 230), (230, 90, 0), (0, 170, 0), (200, 0, 200), (0, 200, 230), (230, 230, 0))
    for index, camera in enumerate(cameras):
        colour = palette[index % len(palette)]
        footprint = ground_footprint(camera, max_range=45.0)
        cv2.polylines(image, [pixel(footprint)], True, colour, 1, cv2.LINE_AA, 4)
        pole = np.asarray(camera.position[:2])
        u, v = view.to_pixels(pole)
        cv2.circle(image, (int(u), int(v)), 4, colour, -1, cv2.LINE_AA)
        cv2.putText(image, camera.id, (int(u) + 6, int(v) - 4), font, 0.45, colour, 1, cv2.LINE_AA)
    return image, view


class _MappedSite(Protocol):
    @property
    def map(self) -> SiteMap: ...
    @property
    def cameras(self) -> tuple[SiteCamera, ...]: ...
    @property
    def ground(self) -> GroundRaster: ...


def site_map_pixels(site: _MappedSite, shape: Sequence[int], points: ArrayLike) -> NDArray[np.float64]:
    """Where ground points ``(N, 2)`` metres fall on a site map of ``shape`` (rows, columns, ...)
    drawn by ``site_map_image`` for ``site`` (``site_map.png`` at any scale): ``(N, 2)`` pixels.

    >>> from crossview.sim.site import SiteSpec, generate_site
    >>> site = generate_site(SiteSpec(duration=1.0, num_vehicles=0, num_pedestrians=0))
    >>> image, view = site_map_image(site.map, site.cameras, site.ground)
    >>> point = np.array([[10.0, 5.0]])
    >>> bool(np.allclose(site_map_pixels(site, image.shape, point), view.to_pixels(point)))
    True
    """
    left, top, right, bottom = _map_window(site.map, site.cameras, site.ground)
    raster = site.ground.to_pixels(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    return np.column_stack(
        [(raster[:, 0] - left) * shape[1] / (right - left), (raster[:, 1] - top) * shape[0] / (bottom - top)]
    )
