"""What ``crossview site validate`` reports: per camera its source, frame size, calibration fit
with its leave-one-out error, and the ground it sees; across cameras the overlaps the calibration
implies. Problems stop a run; warnings are things a run can go on with.

A fit from exactly four point pairs passes through all four: its error on them is zero whatever
the calibration's quality, so it is reported as unchecked rather than as "rmse 0.000". With five
or more pairs each pair is also predicted by a fit of the others (leave-one-out), which is how
wrong the calibration is at a point it did not see.

>>> from crossview.runtime.site import SiteFile
>>> site = SiteFile.model_validate({"cameras": [{"id": "a", "source": "push"}]})
>>> report = check_site(site)
>>> report.ok, report.cameras[0].warnings[0]
(True, 'no calibration: its tracks are not placed in metres, nor compared by position with other views')
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.core.camera import Camera
from crossview.io.sources import ReconnectPolicy, SourceError, StreamSource
from crossview.multicam.geometry import (
    GroundProjector,
    HomographyFit,
    camera_centre,
    convex_intersection,
    estimate_homography,
    polygon_area,
)
from crossview.runtime.site import (
    CameraSpec,
    ImageFolderInput,
    PointsCalibration,
    PushInput,
    SiteFile,
    StreamInput,
    VideoInput,
)

__all__ = ["CameraReport", "SiteReport", "check_site", "leave_one_out"]


@dataclass(slots=True)
class CameraReport:
    """One camera's findings: readable lines, problems (the run cannot use it) and warnings."""

    id: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    camera: Camera | None = None
    ground_area_m2: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "lines": self.lines,
            "problems": self.problems,
            "warnings": self.warnings,
            "ground_area_m2": self.ground_area_m2,
        }


@dataclass(slots=True)
class SiteReport:
    """The whole site's findings; ``ok`` when nothing stops a run."""

    name: str
    cameras: list[CameraReport]
    overlaps: list[tuple[str, str, float]]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    identities: str = ""  # how a run will join identities across cameras

    @property
    def ok(self) -> bool:
        return not self.problems and not any(camera.problems for camera in self.cameras)

    def text(self) -> str:
        lines = [f"site {self.name!r}: {len(self.cameras)} camera(s)"]
        for camera in self.cameras:
            lines.append(f"camera {camera.id!r}")
            lines += [f"  {line}" for line in camera.lines]
            lines += [f"  PROBLEM: {problem}" for problem in camera.problems]
            lines += [f"  warning: {warning}" for warning in camera.warnings]
        if self.overlaps:
            found = ", ".join(f"{a}-{b} ({area:.0f} m²)" for a, b, area in self.overlaps)
            lines.append(f"overlapping views (from the calibration): {found}")
        else:
            lines.append("overlapping views (from the calibration): none")
        if self.identities:
            lines.append(f"identities across cameras: {self.identities}")
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines.append("ok" if self.ok else "not usable: fix the problems above")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "cameras": [camera.to_dict() for camera in self.cameras],
            "overlaps": [{"cameras": [a, b], "area_m2": area} for a, b, area in self.overlaps],
            "identities": self.identities,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def leave_one_out(
    image: NDArray[np.float64], ground: NDArray[np.float64], threshold_m: float
) -> NDArray[np.float64] | None:
    """Per pair, the ground error of a homography fitted to all the other pairs (metres; NaN where
    the others do not determine one); None with fewer than 5 pairs (4 leave only 3)."""
    count = len(image)
    if count < 5:
        return None
    errors = np.full(count, np.nan)
    for held in range(count):
        keep = np.arange(count) != held
        try:
            fit = estimate_homography(image[keep], ground[keep], ransac_threshold_m=threshold_m)
        except ValueError:
            continue
        point = cv2.perspectiveTransform(image[held].reshape(1, 1, 2), fit.homography).reshape(2)
        errors[held] = float(np.hypot(*(point - ground[held])))
    return errors


def check_site(
    site: SiteFile, *, max_range_m: float | None = None, probe_s: float | None = None
) -> SiteReport:
    """Check every camera of ``site`` and the overlaps of their views (see the module docstring).

    Sources are looked at (files and folders exist, a video's size and length). Streams are
    contacted only with ``probe_s``: each is opened and must give a frame within that many
    seconds (all at once, in threads); one that does not is a warning (a run reconnects and the
    other cameras go on), one whose frame size differs from the declared resolution a problem
    (its calibration would be applied to the wrong pixels). Views are taken to ``max_range_m``
    (default: the site's ``overlap_range_m``) and overlap when they share the site's
    ``min_overlap_m2``.
    """
    max_range_m = site.topology.overlap_range_m if max_range_m is None else max_range_m
    reports = [_check_camera(site, spec, max_range_m) for spec in site.cameras]
    if probe_s is not None:
        _probe_streams(site, {report.id: report for report in reports}, probe_s)
    polygons: dict[str, NDArray[np.float64]] = {}
    for camera_report in reports:
        if camera_report.camera is not None and not camera_report.problems:
            polygon = GroundProjector(camera_report.camera).visible_ground(max_range_m)
            if len(polygon) >= 3:
                polygons[camera_report.id] = polygon
    overlaps = []
    names = sorted(polygons)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            shared = convex_intersection(polygons[first], polygons[second])
            area = polygon_area(shared) if len(shared) >= 3 else 0.0
            if area >= max(site.topology.min_overlap_m2, 1e-9):
                overlaps.append((first, second, area))
    report = SiteReport(site.name, reports, overlaps, identities=_identities(site, reports, overlaps))
    found = {(a, b) for a, b, _ in overlaps}
    calibrated = {camera.id for camera in reports if camera.camera is not None}
    for first, second in site.topology.overlaps:
        pair = (first, second) if first < second else (second, first)
        if pair not in found and {first, second} <= calibrated:
            report.warnings.append(
                f"topology.overlaps: {first} and {second} are declared overlapping, but their "
                f"calibrated views share no ground within {max_range_m:g} m"
            )
        for camera, other in (pair, pair[::-1]):
            if camera not in calibrated:
                report.warnings.append(
                    f"topology.overlaps: camera {camera!r} overlaps {other!r} but has no calibration, so "
                    "positions cannot be compared there (appearance and time only)"
                )
    return report


def _check_camera(site: SiteFile, spec: CameraSpec, max_range_m: float) -> CameraReport:
    report = CameraReport(spec.id)
    report.lines.append(_describe_source(site, spec, report))
    try:
        width, height = site.resolution(spec)
        report.lines.append(f"frames: {width} x {height}" + (" (declared)" if spec.resolution else ""))
    except ValueError as error:
        if spec.calibration is not None:
            report.problems.append(str(error))
        elif isinstance(spec.source, StreamInput | PushInput):
            report.lines.append("frames: their size is taken from the frames themselves")
        else:
            report.problems.append(str(error))
    if report.problems:
        return report
    if spec.calibration is None:
        report.warnings.append(
            "no calibration: its tracks are not placed in metres, nor compared by position with other views"
        )
        return report
    calibration = spec.calibration
    if isinstance(calibration, PointsCalibration):
        try:
            image, ground = site.point_pairs(calibration)
            fit = estimate_homography(image, ground, ransac_threshold_m=calibration.ransac_threshold_m)
        except (ValueError, OSError) as error:
            report.problems.append(f"calibration.points: {error}")
            return report
        report.lines += _describe_fit(
            fit, leave_one_out(image, ground, calibration.ransac_threshold_m), report
        )
    try:
        camera = site.calibrated(spec)
    except (ValueError, OSError) as error:
        report.problems.append(f"calibration: {error}")
        return report
    report.camera = camera
    kind = {"OpenCvCalibration": "OpenCV file"}.get(
        type(calibration).__name__, type(calibration).__name__.removesuffix("Calibration").lower()
    )
    if camera.intrinsics is not None:
        x, y, z = camera_centre(camera)
        report.lines.append(f"calibration: {kind}, camera at x {x:.2f} m, y {y:.2f} m, height {z:.2f} m")
        if z <= 0:
            report.problems.append(
                f"calibration: the camera is {'on' if z == 0 else 'below'} the ground (height {z:.2f} m): "
                "check the sign of t or tvec, and that the world is z-up with the ground at z = 0"
            )
            return report
    elif not isinstance(calibration, PointsCalibration):
        report.lines.append(f"calibration: {kind}, given (no point pairs to check it against)")
    try:
        polygon = GroundProjector(camera).visible_ground(max_range_m)
    except ValueError as error:
        report.problems.append(f"calibration: {error}")
        return report
    if len(polygon) < 3:
        report.problems.append(
            "calibration: the camera sees no ground: the ground is behind it or above its horizon "
            "(check the pose's signs and axes)"
        )
        return report
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    report.ground_area_m2 = polygon_area(polygon)
    report.lines.append(
        f"sees ground: {report.ground_area_m2:.0f} m² within {max_range_m:g} m, "
        f"x {low[0]:.1f}..{high[0]:.1f} m, y {low[1]:.1f}..{high[1]:.1f} m"
    )
    return report


def _describe_fit(
    fit: HomographyFit, held_out: NDArray[np.float64] | None, report: CameraReport
) -> list[str]:
    total = len(fit.inliers)
    lines = [
        f"calibration: {total} point pairs, {fit.inlier_count} inliers (RANSAC {fit.ransac_threshold_m:g} m)"
    ]
    if total == 4:
        report.warnings.append(
            "calibration.points: 4 pairs determine the homography exactly, so its error cannot be "
            "checked (it fits them with 0 error whatever it is worth); add pairs, spread over the view"
        )
        return lines
    lines.append(
        f"fit error on the inliers: rmse {fit.rmse_m:.3f} m ({fit.rmse_px:.1f} px), "
        f"max {fit.max_error_m:.3f} m"
    )
    if held_out is not None and np.any(np.isfinite(held_out)):
        finite = held_out[np.isfinite(held_out)]
        worst = int(np.nanargmax(held_out))
        lines.append(
            f"leave-one-out error: median {np.median(finite):.3f} m, max {finite.max():.3f} m "
            f"(pair {worst}); the error to expect at points the fit did not see"
        )
        if math.isfinite(float(finite.max())) and finite.max() > 4 * fit.ransac_threshold_m:
            report.warnings.append(
                f"calibration.points: pair {worst} is predicted {finite.max():.2f} m off by the other pairs; "
                "check it, or add pairs near it"
            )
    if fit.inlier_count < total:
        outliers = np.flatnonzero(~fit.inliers).tolist()
        report.warnings.append(f"calibration.points: pairs {outliers} are outliers, left out of the fit")
    return lines


def _describe_source(site: SiteFile, spec: CameraSpec, report: CameraReport) -> str:
    source = spec.source
    if isinstance(source, VideoInput):
        path = site.resolve(source.video)
        if not path.is_file():
            report.problems.append(f"source: no video file {str(path)!r}")
            return f"source: video {source.video}"
        capture = cv2.VideoCapture(str(path))
        try:
            fps, frames = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        if frames <= 0:
            report.problems.append(f"source: {str(path)!r} does not open as a video")
        return f"source: video {source.video} ({frames} frames at {fps:.3g} fps)"
    if isinstance(source, ImageFolderInput):
        folder = site.resolve(source.images)
        count = len([p for p in folder.iterdir() if p.is_file()]) if folder.is_dir() else 0
        if not folder.is_dir():
            report.problems.append(f"source: no image folder {str(folder)!r}")
        elif count == 0:
            report.problems.append(f"source: the image folder {str(folder)!r} is empty")
        return f"source: images {source.images} ({count} files at {source.fps:g} fps)"
    if isinstance(source, StreamInput):
        return f"source: stream {_redacted(source.url)}"
    assert isinstance(source, PushInput)
    return "source: push (frames sent to the service)"


def _identities(site: SiteFile, reports: list[CameraReport], overlaps: list[tuple[str, str, float]]) -> str:
    """Which way a run joins identities (``fusion.mode``, and what ``auto`` makes of this site)."""
    cameras = [report.camera for report in reports if report.camera is not None and not report.problems]
    topology = site.camera_topology([(a, b) for a, b, _ in overlaps])
    groups = site.fusion_groups(cameras, topology)
    fused = {name for group in groups for name in group}
    alone = [spec.id for spec in site.cameras if spec.id not in fused]
    if not groups:
        why = "no calibrated views overlap"
        if site.fusion.mode == "tracklets":
            why = "fusion.mode"
        elif site.fusion_groups(cameras, topology, motion=False):
            why = "views overlap, but the motion detector's blobs are not the objects' boxes fusion needs"
        return f"tracklet association of every camera ({why})"
    parts = [f"ground fusion of {' + '.join(group)}" for group in groups]
    if alone:
        parts.append(f"joined by tracklet association with {', '.join(alone)}")
    elif len(groups) > 1:
        parts.append("the groups joined by tracklet association")
    return "; ".join(parts)


def _probe_streams(site: SiteFile, reports: dict[str, CameraReport], timeout_s: float) -> None:
    """Contact every stream camera at once; what each gave (or why not) goes into its report."""
    streams = [spec for spec in site.cameras if isinstance(spec.source, StreamInput)]
    if not streams:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(streams))) as pool:
        found = dict(zip(streams, pool.map(lambda spec: _first_frame(spec, timeout_s), streams), strict=True))
    for spec, (size, waited, error) in found.items():
        report = reports[spec.id]
        assert isinstance(spec.source, StreamInput)
        if size is None:
            report.warnings.append(
                f"source.url: {_redacted(spec.source.url)} gave no frame within {timeout_s:g} s ({error}); "
                "a run keeps reconnecting to it and the other cameras go on"
            )
            continue
        report.lines.append(f"probe: first frame {size[0]}x{size[1]} after {waited:.1f} s")
        if spec.resolution is not None and tuple(spec.resolution) != size:
            report.problems.append(
                f"resolution: declared {spec.resolution[0]}x{spec.resolution[1]} but the stream sends "
                f"{size[0]}x{size[1]}; the calibration is for the declared size"
            )


def _first_frame(spec: CameraSpec, timeout_s: float) -> tuple[tuple[int, int] | None, float, str | None]:
    """A stream's first frame size and how long it took, or the reason there was none."""
    assert isinstance(spec.source, StreamInput)
    started = time.monotonic()
    source = StreamSource(
        spec.source.url,
        spec.id,
        reconnect=ReconnectPolicy(max_attempts=1),
        timeout=timeout_s,
        reconnect_on_end=False,
    )
    try:
        with source:
            for frame in source:
                return frame.size, time.monotonic() - started, None
        return None, time.monotonic() - started, "the stream ended before its first frame"
    except (SourceError, OSError, ValueError) as error:
        return None, time.monotonic() - started, str(error)


def _redacted(url: str) -> str:
    """A URL without its password, for printing."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
