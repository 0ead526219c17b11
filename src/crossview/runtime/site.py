"""The site file: one typed description of a site, read by ``crossview site validate``,
``crossview calibrate`` and ``crossview serve --site`` (and, as the runtime grows, by ``run`` and
``demo``).

A site file is YAML or JSON (YAML is read with ``yaml.safe_load``, which reads JSON too)::

    name: parking-north
    cameras:
      - id: gate
        source: videos/gate.mp4               # a video file; or {video: PATH}
        calibration:
          points: calib/gate.csv              # image/ground pairs, fitted with RANSAC
      - id: yard
        source: {images: frames/yard, fps: 10}  # frames 1..N in file-name order
        resolution: [1280, 720]
        calibration:
          K: [[1000, 0, 640], [0, 1000, 360], [0, 0, 1]]
          distortion: [-0.1, 0.01, 0, 0, 0]   # OpenCV order: k1 k2 p1 p2 [k3 ...]
          rvec: [1.9, 0.1, -0.2]              # or R (3x3); world metres -> camera: x_c = R X + t
          tvec: [0.5, 2.0, 12.0]
      - id: exit
        source: rtsp://user:pass@10.0.0.9/stream
        resolution: [1920, 1080]
        calibration: {opencv: calib/exit.yml}  # camera_matrix, distortion_coefficients, rvec, tvec
      - id: kiosk
        source: push                          # frames sent to the service
        resolution: [640, 480]
        calibration: {homography: [[...], [...], [...]]}  # image pixels -> ground metres
    models: {detector: "yolox:models/yolox_nano.onnx", embedder: color}
    classes: {0: person, 2: car}
    tracker: {name: bytetrack}
    association: {max_cost: 0.25, linkage: single}   # tracklets joined across cameras
    fusion: {mode: auto}                    # or fusion | tracklets (FusionSpec)
    topology:
      overlaps: [[gate, yard]]                 # also found from the calibration
      transitions: {"yard->exit": [5, 120]}    # seconds from leaving one view to entering the next
    memory_s: 3600

The world is right-handed with z up and the ground at z = 0, in metres. Relative paths are
relative to the site file. Every error names the camera and the field, e.g.
``camera 'yard': calibration.K: must be 3 x 3``; ``load_site`` raises ``SiteError`` holding all
of them, never a raw pydantic dump.

>>> site = SiteFile.model_validate({"cameras": [
...     {"id": "a", "source": "push", "resolution": [640, 480],
...      "calibration": {"homography": [[0.01, 0, 0], [0, 0.01, 0], [0, 0.0005, 1]]}}]})
>>> [camera.id for camera in site.calibrated_cameras()], site.cameras[0].source.kind
(['a'], 'push')
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from crossview.core.camera import Camera
from crossview.detect.factory import parse_spec
from crossview.multicam.association import AssociationConfig
from crossview.multicam.fusion import FusionConfig
from crossview.multicam.geometry import HomographyFit, estimate_homography
from crossview.multicam.topology import CameraTopology, overlaps_from_geometry

__all__ = [
    "MAX_SITE_BYTES",
    "Calibration",
    "CameraSpec",
    "FusionSpec",
    "HomographyCalibration",
    "ImageFolderInput",
    "OpenCvCalibration",
    "PinholeCalibration",
    "PointPair",
    "PointsCalibration",
    "PushInput",
    "SiteError",
    "SiteFile",
    "StreamInput",
    "VideoInput",
    "load_site",
]

MAX_SITE_BYTES: Final = 4 * 1024 * 1024
MAX_CAMERAS: Final = 1000
MAX_POINT_PAIRS: Final = 10_000
URL_SCHEMES: Final = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})
# OpenCV distortion vectors: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]]
DISTORTION_LENGTHS: Final = (4, 5, 8, 12, 14)

Matrix3 = Annotated[
    list[Annotated[list[float], Field(min_length=3, max_length=3)]], Field(min_length=3, max_length=3)
]
Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]


class SiteError(ValueError):
    """A site file that cannot be used: every problem, each naming its camera and field."""

    def __init__(self, problems: Sequence[str], source: str = "site file") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


# ------------------------------------------------------------------------------------- sources
class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VideoInput(_Strict):
    """A video file; its frame rate and size come from the file."""

    kind: Literal["video"] = "video"
    video: Path


class ImageFolderInput(_Strict):
    """A folder of images, frames 1..N in file-name order, at a declared frame rate."""

    kind: Literal["images"] = "images"
    images: Path
    fps: float = Field(gt=0, allow_inf_nan=False, description="image folders carry no clock: required")


class StreamInput(_Strict):
    """A live stream (RTSP, RTMP, HTTP, ...), reconnected with backoff when it drops."""

    kind: Literal["stream"] = "stream"
    url: str = Field(min_length=1, max_length=2048)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in URL_SCHEMES:
            raise ValueError(f"a stream URL needs one of the schemes {sorted(URL_SCHEMES)}, got {url[:40]!r}")
        return url


class PushInput(_Strict):
    """Frames (or detections) sent to the service by the camera or a gateway."""

    kind: Literal["push"] = "push"


def _source_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return _SOURCE_TAGS.get(str(getattr(value, "kind", "")))
    if isinstance(value, Mapping):
        for key, kind in (("video", "video"), ("images", "images"), ("url", "stream")):
            if key in value:
                return _SOURCE_TAGS[kind]
        return _SOURCE_TAGS["push"] if value.get("kind") == "push" else None
    return None


_SOURCE_TAGS: Final = {
    "video": "video-file",
    "images": "image-folder",
    "stream": "stream-url",
    "push": "push-input",
}

Source = Annotated[
    Annotated[VideoInput, Tag("video-file")]
    | Annotated[ImageFolderInput, Tag("image-folder")]
    | Annotated[StreamInput, Tag("stream-url")]
    | Annotated[PushInput, Tag("push-input")],
    Discriminator(
        _source_kind,
        custom_error_type="source",
        custom_error_message="give a video file, {images: FOLDER, fps: N}, a stream URL or 'push'",
    ),
]


def _source_shorthand(value: Any) -> Any:
    """``"push"``, a URL or a video path written as a plain string."""
    if isinstance(value, str):
        if value == "push":
            return {"kind": "push"}
        if "://" in value:
            return {"url": value}
        return {"video": value}
    return value


# --------------------------------------------------------------------------------- calibration
class HomographyCalibration(_Strict):
    """A 3 x 3 homography from image pixels to ground metres."""

    homography: Matrix3

    @field_validator("homography")
    @classmethod
    def _regular(cls, value: list[list[float]]) -> list[list[float]]:
        matrix = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
            raise ValueError("must be finite and not singular")
        return value


class PinholeCalibration(_Strict):
    """A pinhole camera: intrinsics ``K``, optional OpenCV ``distortion``, and its pose as ``R``
    and ``t`` or OpenCV's ``rvec`` and ``tvec`` (world metres -> camera: ``x_c = R X + t``)."""

    K: Matrix3
    distortion: list[float] | None = None
    R: Matrix3 | None = None
    t: Vector3 | None = None
    rvec: Vector3 | None = None
    tvec: Vector3 | None = None

    @field_validator("K")
    @classmethod
    def _intrinsics(cls, value: list[list[float]]) -> list[list[float]]:
        matrix = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(matrix)) or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
            raise ValueError("must be finite with positive focal lengths fx = K[0][0] and fy = K[1][1]")
        if not np.allclose(matrix[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"its last row must be [0, 0, 1], got {matrix[2].tolist()}")
        return value

    @field_validator("distortion")
    @classmethod
    def _distortion(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) not in DISTORTION_LENGTHS or not all(map(math.isfinite, value))):
            raise ValueError(
                f"must hold {', '.join(map(str, DISTORTION_LENGTHS))} finite numbers (OpenCV's order "
                f"k1 k2 p1 p2 k3 ...), got {len(value)}"
            )
        return value

    @model_validator(mode="after")
    def _one_pose(self) -> PinholeCalibration:
        matrix = self.R is not None or self.t is not None
        opencv = self.rvec is not None or self.tvec is not None
        if matrix == opencv:
            raise ValueError("give the pose as R and t, or as rvec and tvec (exactly one of the two)")
        if matrix and (self.R is None or self.t is None):
            raise ValueError("R and t go together")
        if opencv and (self.rvec is None or self.tvec is None):
            raise ValueError("rvec and tvec go together")
        if self.R is not None:
            rotation = np.asarray(self.R, dtype=np.float64)
            if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) <= 0:
                raise ValueError("R must be a rotation (orthonormal, determinant +1)")
        return self

    def pose(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(R, t)`` as arrays, ``R`` from ``rvec`` by Rodrigues' formula when given that way."""
        if self.R is not None and self.t is not None:
            return np.asarray(self.R, dtype=np.float64), np.asarray(self.t, dtype=np.float64)
        assert self.rvec is not None and self.tvec is not None
        rotation, _ = cv2.Rodrigues(np.asarray(self.rvec, dtype=np.float64))
        return np.asarray(rotation, dtype=np.float64), np.asarray(self.tvec, dtype=np.float64)


class PointPair(_Strict):
    """An image point (pixels) and the ground point (metres) it shows."""

    image: Annotated[list[float], Field(min_length=2, max_length=2)]
    ground: Annotated[list[float], Field(min_length=2, max_length=2)]


class PointsCalibration(_Strict):
    """Image/ground point pairs, inline or in a CSV file (columns ``u, v, x, y``), fitted with RANSAC."""

    points: list[PointPair] | Path = Field(description="pairs, or a CSV file of u,v,x,y rows")
    ransac_threshold_m: float = Field(default=0.25, gt=0, allow_inf_nan=False)


class OpenCvCalibration(_Strict):
    """An OpenCV FileStorage file (YAML or XML) with ``camera_matrix``, ``distortion_coefficients``
    (optional), ``rvec`` and ``tvec``: what calibration scripts write with ``cv2.FileStorage``."""

    opencv: Path


def _calibration_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return type(value).__name__
    if isinstance(value, Mapping):
        for key, kind in (
            ("homography", "HomographyCalibration"),
            ("K", "PinholeCalibration"),
            ("points", "PointsCalibration"),
            ("opencv", "OpenCvCalibration"),
        ):
            if key in value:
                return kind
    return None


Calibration = Annotated[
    Annotated[HomographyCalibration, Tag("HomographyCalibration")]
    | Annotated[PinholeCalibration, Tag("PinholeCalibration")]
    | Annotated[PointsCalibration, Tag("PointsCalibration")]
    | Annotated[OpenCvCalibration, Tag("OpenCvCalibration")],
    Discriminator(
        _calibration_kind,
        custom_error_type="calibration",
        custom_error_message="give one of: homography, K (with R and t, or rvec and tvec), points, opencv",
    ),
]


# -------------------------------------------------------------------------------------- cameras
class CameraSpec(_Strict):
    """One camera of the site: where its frames come from, their size, and its calibration."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s/]+$")
    source: Source
    resolution: tuple[Annotated[int, Field(gt=0, le=65535)], Annotated[int, Field(gt=0, le=65535)]] | None = (
        Field(default=None, description="width, height; read from the source when not given")
    )
    fps: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="overrides the source's")
    calibration: Calibration | None = None
    background: Path | None = Field(
        default=None,
        description="an image of the empty view (taken at commissioning), for the motion detector",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _source_shorthand(value)


class ModelsSpec(_Strict):
    """The models every camera runs (specs as the factories read them)."""

    detector: str = Field(default="motion", min_length=1, description="motion | yolox:M.onnx | yolov8:M.onnx")
    detector_options: dict[str, Any] = Field(
        default_factory=dict, description="the detector's config fields, e.g. MotionConfig's"
    )
    embedder: str = Field(default="color", min_length=1, description="color | osnet:M.onnx")


class TrackerSpec(_Strict):
    """The per-camera tracker and its options (the tracker's own config fields)."""

    name: str = Field(default="sort", min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class TopologySpec(_Strict):
    """Overlaps and transit windows between the site's cameras (its cameras are the site's).

    Besides the declared ``overlaps``, calibrated views whose ground within ``overlap_range_m``
    shares at least ``min_overlap_m2`` overlap (``discover_overlaps``).
    """

    overlaps: list[tuple[str, str]] = Field(default_factory=list)
    discover_overlaps: bool = True
    overlap_range_m: float = Field(default=40.0, gt=0, allow_inf_nan=False)
    min_overlap_m2: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    transitions: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description='"from->to": [min_seconds, max_seconds]'
    )


class FusionSpec(_Strict):
    """How cross-camera identities are made (``crossview.multicam.fusion``, ``association``).

    Two ways, each right in its place. *Fusion*: overlapping calibrated views' detections are
    located on the ground each instant, joined across views and tracked there (a crowd seen from
    several sides, low frame rates). *Tracklets*: each camera's tracks are joined across cameras
    by appearance, time and place (a person leaves one view and later enters another).

    - ``auto`` (the default): both. Each connected group of overlapping calibrated views is fused,
      and its ground tracks are joined to the other cameras' tracks (and to each other: someone who
      leaves the group's ground and comes back) as the tracklets of one wide view. Not with the
      motion detector: fusion places a box by its bottom edge and trusts it to a few pixels, and
      a motion blob is not an object's box (part of a car, two cars as one, a shadow attached).
    - ``fusion``: as ``auto``, with every calibrated camera in one group (views that overlap
      although their geometry does not show it).
    - ``tracklets``: no fusion; every camera's tracks are joined as tracklets.
    """

    mode: Literal["auto", "fusion", "tracklets"] = "auto"
    sync_s: float = Field(
        default=0.05,
        gt=0,
        le=1.0,
        allow_inf_nan=False,
        description="frames of different cameras this close in time are one instant (a camera's "
        "next frame always starts the next one)",
    )
    config: FusionConfig = Field(default_factory=FusionConfig)


class SiteFile(_Strict):
    """A whole site (see the module docstring). Relative paths start at ``base`` (the file's folder)."""

    name: str = Field(default="site", min_length=1, max_length=128)
    cameras: list[CameraSpec] = Field(min_length=1, max_length=MAX_CAMERAS)
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    classes: dict[int, str] = Field(default_factory=dict, description="class id -> name")
    tracker: TrackerSpec = Field(default_factory=TrackerSpec)
    association: AssociationConfig = Field(
        default_factory=lambda: AssociationConfig(max_cost=0.25, linkage="single")
    )
    topology: TopologySpec = Field(default_factory=TopologySpec)
    fusion: FusionSpec = Field(default_factory=FusionSpec)
    memory_s: float = Field(
        default=3600.0, ge=0, allow_inf_nan=False, description="how long identities are remembered"
    )
    _base: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _consistent(self) -> SiteFile:
        ids = [camera.id for camera in self.cameras]
        repeated = sorted({camera for camera in ids if ids.count(camera) > 1})
        if repeated:
            raise ValueError(f"cameras: ids must be unique, repeated: {repeated}")
        self.camera_topology()  # overlaps and transitions must name the site's cameras
        return self

    # ------------------------------------------------------------------------------ derived
    @property
    def base(self) -> Path:
        return self._base

    @property
    def camera_ids(self) -> frozenset[str]:
        return frozenset(camera.id for camera in self.cameras)

    def camera(self, camera_id: str) -> CameraSpec:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(f"no camera {camera_id!r} in site {self.name!r}")

    def resolve(self, path: Path) -> Path:
        """A path of the site file, relative to the file's folder unless absolute."""
        return path if path.is_absolute() else self.base / path

    def camera_topology(self, extra_overlaps: Sequence[tuple[str, str]] = ()) -> CameraTopology:
        """The topology over the site's cameras, with the declared (and any extra) overlaps."""
        return CameraTopology.model_validate(
            {
                "cameras": [camera.id for camera in self.cameras],
                "overlaps": [*self.topology.overlaps, *extra_overlaps],
                "transitions": self.topology.transitions,
            }
        )

    def topology_of(self, cameras: Sequence[Camera]) -> CameraTopology:
        """The topology a run uses: the declared overlaps and, unless switched off, those the
        calibrated ``cameras`` imply (``overlaps_from_geometry``)."""
        spec = self.topology
        found = (
            overlaps_from_geometry(cameras, max_range_m=spec.overlap_range_m, min_area_m2=spec.min_overlap_m2)
            if spec.discover_overlaps
            else frozenset()
        )
        return self.camera_topology(sorted(found))

    def fusion_groups(
        self, cameras: Sequence[Camera], topology: CameraTopology, *, motion: bool | None = None
    ) -> list[tuple[str, ...]]:
        """The groups of views fused on the ground (see ``FusionSpec``), each in site file order:
        ``cameras`` are the calibrated ones, ``topology`` the run's (its overlaps). ``auto``: each
        connected group of two or more overlapping calibrated views, unless the boxes come from the
        motion detector (``motion``; None: the site file's detector says); ``fusion``: every
        calibrated camera, as one group; ``tracklets``: none."""
        mode = self.fusion.mode
        order = {spec.id: number for number, spec in enumerate(self.cameras)}
        names = sorted({camera.id for camera in cameras}, key=lambda name: order.get(name, len(order)))
        if motion is None:
            motion = parse_spec(self.models.detector)[0] == "motion"
        if mode == "tracklets" or len(names) < 2 or (mode == "auto" and motion):
            return []
        if mode == "fusion":
            return [tuple(names)]
        groups, placed = [], set()
        for first in names:  # connected groups of overlapping calibrated views
            if first in placed:
                continue
            reached, frontier = set(), [first]
            while frontier:
                camera = frontier.pop()
                if camera in reached:
                    continue
                reached.add(camera)
                frontier += [b if a == camera else a for a, b in topology.overlaps if camera in (a, b)]
            reached &= set(names)
            placed |= reached
            if len(reached) > 1:
                groups.append(tuple(name for name in names if name in reached))
        return groups

    def calibrated_cameras(self) -> list[Camera]:
        """The calibrated cameras as ``Camera`` s (point pairs fitted); ``SiteError`` naming each
        camera whose calibration cannot be used, e.g. one without a resolution."""
        cameras, problems = [], []
        for spec in self.cameras:
            if spec.calibration is None:
                continue
            try:
                cameras.append(self.calibrated(spec))
            except (ValueError, OSError) as error:
                problems.append(f"camera {spec.id!r}: calibration: {error}")
        if problems:
            raise SiteError(problems)
        return cameras

    def calibrated(self, spec: CameraSpec) -> Camera:
        """One camera's calibration as a ``Camera`` (``ValueError`` saying what is missing or wrong)."""
        if spec.calibration is None:
            raise ValueError("the camera has no calibration")
        width, height = self.resolution(spec)
        calibration = spec.calibration
        if isinstance(calibration, PointsCalibration):
            return self.fit(spec).to_camera(spec.id, width, height, fps=spec.fps)
        if isinstance(calibration, HomographyCalibration):
            return Camera(
                id=spec.id, width=width, height=height, fps=spec.fps, homography=calibration.homography
            )
        if isinstance(calibration, OpenCvCalibration):
            calibration = read_opencv_calibration(self.resolve(calibration.opencv))
        rotation, translation = calibration.pose()
        return Camera(
            id=spec.id,
            width=width,
            height=height,
            fps=spec.fps,
            intrinsics=calibration.K,
            distortion=calibration.distortion,
            rotation=rotation.tolist(),
            translation=translation.tolist(),
        )

    def fit(self, spec: CameraSpec) -> HomographyFit:
        """The RANSAC fit of a camera calibrated by point pairs."""
        calibration = spec.calibration
        if not isinstance(calibration, PointsCalibration):
            raise ValueError("the camera is not calibrated by point pairs")
        image, ground = self.point_pairs(calibration)
        return estimate_homography(image, ground, ransac_threshold_m=calibration.ransac_threshold_m)

    def point_pairs(self, calibration: PointsCalibration) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Image ``(N, 2)`` and ground ``(N, 2)`` points of a points calibration (read from its CSV)."""
        if isinstance(calibration.points, Path):
            return read_point_pairs(self.resolve(calibration.points))
        pairs = calibration.points
        return (
            np.array([p.image for p in pairs], dtype=np.float64).reshape(-1, 2),
            np.array([p.ground for p in pairs], dtype=np.float64).reshape(-1, 2),
        )

    def resolution(self, spec: CameraSpec) -> tuple[int, int]:
        """A camera's ``(width, height)``: declared, else read from its video file or first image."""
        if spec.resolution is not None:
            return spec.resolution
        source = spec.source
        if isinstance(source, VideoInput):
            return _video_size(self.resolve(source.video))
        if isinstance(source, ImageFolderInput):
            return _first_image_size(self.resolve(source.images))
        raise ValueError(
            f"resolution: a {source.kind} camera needs its resolution declared ([width, height])"
        )


# ----------------------------------------------------------------------------------------- files
def load_site(path: str | Path) -> SiteFile:
    """Read and check a site file (YAML or JSON); ``SiteError`` lists every problem found."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SITE_BYTES:
            raise SiteError(
                [f"the file is {size} bytes; a site file may be at most {MAX_SITE_BYTES}"], str(path)
            )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SiteError([f"cannot read it: {error.strerror or error}"], str(path)) from None
    except UnicodeDecodeError:
        raise SiteError(["it is not UTF-8 text"], str(path)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML or JSON"
        raise SiteError([f"{problem}{where}"], str(path)) from None
    return parse_site(data, base=path.parent, source=str(path))


def parse_site(data: Any, *, base: Path = Path("."), source: str = "site file") -> SiteFile:
    """A site from already-parsed data; ``SiteError`` with one readable line per problem."""
    if not isinstance(data, Mapping):
        raise SiteError(
            [f"the top level must be a mapping with 'cameras', got {type(data).__name__}"], source
        )
    try:
        site = SiteFile.model_validate(data)
    except ValidationError as error:
        raise SiteError(_problems(error, data), source) from None
    site._base = base
    return site


_TAGS: Final = frozenset(
    {
        *_SOURCE_TAGS.values(),
        "HomographyCalibration",
        "PinholeCalibration",
        "PointsCalibration",
        "OpenCvCalibration",
    }
)


def _problems(error: ValidationError, data: Mapping[str, Any]) -> list[str]:
    """pydantic's errors as ``camera 'id': field.path: message`` lines, one per problem."""
    cameras = data.get("cameras")
    problems = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if part not in _TAGS]
        where = ""
        if len(location) >= 2 and location[0] == "cameras" and isinstance(location[1], int):
            index = location[1]
            raw = cameras[index] if isinstance(cameras, list) and index < len(cameras) else None
            name = raw.get("id") if isinstance(raw, Mapping) else None
            where = f"camera {name!r}: " if isinstance(name, str) else f"cameras[{index}]: "
            location = location[2:]
        field = ".".join(str(part) for part in location)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}{field + ': ' if field else ''}{message}")
    return problems


def read_point_pairs(path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Image and ground points from a CSV of ``u,v,x,y`` rows (a header row is skipped); errors name
    the file and line."""
    rows: list[list[float]] = []
    if path.stat().st_size > MAX_SITE_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes; a point file may be at most {MAX_SITE_BYTES}")
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not cells or all(not cell for cell in cells) or cells[0].startswith("#"):
                continue
            try:
                values = [float(cell) for cell in cells]
            except ValueError:
                if number == 1 and not rows:
                    continue  # a header
                raise ValueError(f"{path}:{number}: expected four numbers u,v,x,y, got {row!r}") from None
            if len(values) != 4 or not all(map(math.isfinite, values)):
                raise ValueError(f"{path}:{number}: expected four finite numbers u,v,x,y, got {row!r}")
            rows.append(values)
            if len(rows) > MAX_POINT_PAIRS:
                raise ValueError(f"{path}: more than {MAX_POINT_PAIRS} point pairs")
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return table[:, :2], table[:, 2:]


def read_opencv_calibration(path: Path) -> PinholeCalibration:
    """A pinhole calibration from an OpenCV FileStorage file (``camera_matrix``, optional
    ``distortion_coefficients``, ``rvec``, ``tvec``)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size > MAX_SITE_BYTES:
        raise ValueError(
            f"{path}: {path.stat().st_size} bytes; a calibration file may be at most {MAX_SITE_BYTES}"
        )
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        if not storage.isOpened():
            raise ValueError(f"{path}: OpenCV cannot read it as a FileStorage file (YAML or XML)")

        def matrix(name: str) -> NDArray[np.float64] | None:
            node = storage.getNode(name)
            if node.empty():
                return None
            value = node.mat()
            return None if value is None else np.asarray(value, dtype=np.float64)

        found = {name: matrix(name) for name in ("camera_matrix", "distortion_coefficients", "rvec", "tvec")}
    finally:
        storage.release()
    missing = [name for name in ("camera_matrix", "rvec", "tvec") if found[name] is None]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)} (expected camera_matrix, rvec, tvec)")
    camera_matrix, distortion, rvec, tvec = (
        found[n] for n in ("camera_matrix", "distortion_coefficients", "rvec", "tvec")
    )
    assert camera_matrix is not None and rvec is not None and tvec is not None
    try:
        return PinholeCalibration(
            K=camera_matrix.reshape(3, 3).tolist(),
            distortion=None if distortion is None else distortion.reshape(-1).tolist(),
            rvec=rvec.reshape(3).tolist(),
            tvec=tvec.reshape(3).tolist(),
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _video_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise ValueError(f"source: no video file {str(path)!r}")
    capture = cv2.VideoCapture(str(path))
    try:
        width, height = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise ValueError(f"source: cannot read the frame size of {str(path)!r}; declare resolution")
    return width, height


IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def _first_image_size(folder: Path) -> tuple[int, int]:
    from crossview.io.image import ImageError, probe_image

    if not folder.is_dir():
        raise ValueError(f"source: no image folder {str(folder)!r}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"source: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {str(folder)!r}")
    with images[0].open("rb") as handle:
        head = handle.read(1024 * 1024)  # a JPEG's size may follow large EXIF and ICC segments
    try:
        info = probe_image(head)
    except ImageError as error:
        raise ValueError(f"source: {images[0].name}: {error}") from None
    return info.width, info.height
