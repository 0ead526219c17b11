"""``crossview run``: a site file in, every camera run concurrently, results out.

``run_site(site, out)`` builds the graph of ``crossview.runtime.engine`` from the site file. It
gives one camera stage per camera that has a source to pull: push cameras are fed by the service
and are left out here. The camera stages feed one site stage and the standard sinks:

- ``out/tracks/<camera>.txt``: MOTChallenge rows, the class in the 8th column;
- ``out/mtmc.txt``: AI City rows ``camera obj frame x y w h xworld yworld``, every box of every
  associated track with its global id and ground position in site metres;
- ``out/index/``: a FAISS index of every track's appearance, with its camera, times, class,
  global id and position;
- ``out/thumbnails/<id>.jpg``: the best view of each global identity;
- ``out/run.json``: frames per camera, global ids, per-stage latency p50/p99, warnings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from crossview.core.camera import Camera
from crossview.detect.base import Detector
from crossview.detect.factory import make_detector, parse_spec
from crossview.detect.motion import MotionConfig, MotionDetector
from crossview.embed.base import Embedder
from crossview.embed.factory import make_embedder
from crossview.io.buffer import BufferedSource
from crossview.io.image import ImageError, ImageLimits, decode_image
from crossview.io.sources import (
    FrameSource,
    ImageFolderSource,
    ReconnectPolicy,
    SourceError,
    StreamSource,
    VideoFileSource,
)
from crossview.models.identity import identity_of
from crossview.multicam.fusion import GroundFusion
from crossview.multicam.topology import CameraTopology
from crossview.runtime.engine import CameraStage, CameraStats, RunResult, Sink, SiteStage, run_cameras
from crossview.runtime.sinks import IndexSink, MotSink, MtmcSink, ThumbnailSink
from crossview.runtime.site import CameraSpec, ImageFolderInput, SiteFile, StreamInput, VideoInput
from crossview.runtime.views import SnapshotSink
from crossview.track.factory import make_tracker

__all__ = [
    "DEFAULT_FPS",
    "camera_detector",
    "camera_stage",
    "open_camera_source",
    "run_site",
    "site_detector",
    "site_fusion",
]

DEFAULT_FPS: Final = 25.0  # a source that states no frame rate


def site_detector(site: SiteFile, detector: str, cameras: Sequence[CameraSpec]) -> Detector:
    """The detector for ``cameras`` of the site: the site's spec and options, and for the motion
    detector those cameras' background plates when the site file gives them. Detectors keep
    their per-camera state by camera id, so one may serve several cameras."""
    name, _ = parse_spec(detector)
    options = site.models.detector_options
    plated = [spec for spec in cameras if spec.background is not None]
    if name != "motion" or not plated:
        return make_detector(detector, **options)
    plates = {}
    for spec in plated:
        assert spec.background is not None
        path = site.resolve(spec.background)
        try:
            plates[spec.id] = decode_image(path.read_bytes(), ImageLimits())  # size checked before decoding
        except (OSError, ImageError) as error:
            raise ValueError(f"camera {spec.id!r}: background: {str(path)!r}: {error}") from None
    return MotionDetector(MotionConfig(**options), plates=plates)


def camera_detector(site: SiteFile, spec: CameraSpec, detector: str) -> Detector:
    """A camera's own detector (``site_detector`` for that camera alone)."""
    return site_detector(site, detector, [spec])


def camera_stage(
    site: SiteFile | None,
    camera_id: str,
    source: FrameSource | None,
    detector: Detector,
    embedder: Embedder | None,
    *,
    detector_spec: str,
    tracker: str | None = None,
    default_fps: float = DEFAULT_FPS,
    **options: Any,
) -> CameraStage:
    """A camera's stage as the site file sets it up, for ``crossview run`` and the service alike:
    its tracker (``tracker``, default the site's, with the site's options) at the camera's frame
    rate (declared, else its source's, else ``default_fps``), and the site's classes of the
    detector's (none kept apart for the motion detector, which names no classes). ``options`` go
    to ``CameraStage`` (``warn``, ``max_frames``, ``skip_blank``)."""
    spec = site.camera(camera_id) if site is not None and camera_id in site.camera_ids else None
    fps = (spec.fps if spec is not None else None) or getattr(source, "fps", None) or default_fps
    name = tracker or (site.tracker.name if site is not None else "sort")
    tracker_options = {} if site is None else site.tracker.options
    kind, _ = parse_spec(detector_spec)
    classes = None if site is None or kind == "motion" or not site.classes else frozenset(site.classes)
    return CameraStage(
        source,
        detector,
        embedder,
        make_tracker(name, **{"frame_rate": float(fps), **tracker_options}),
        camera_id=camera_id,
        classes=classes,
        **options,
    )


def site_fusion(
    site: SiteFile | None,
    cameras: Sequence[Camera],
    topology: CameraTopology,
    *,
    motion: bool | None = None,
) -> list[GroundFusion]:
    """The ground fusion of each group of the site's calibrated ``cameras`` that ``SiteFile.fusion_groups``
    names (by default each connected group of overlapping views, unless the boxes come from the
    motion detector: ``motion``, None for the site file's detector); none for tracklets alone."""
    if site is None:
        return []
    by_id = {camera.id: camera for camera in cameras}
    return [
        GroundFusion([by_id[name] for name in group], site.fusion.config)
        for group in site.fusion_groups(cameras, topology, motion=motion)
    ]


def open_camera_source(site: SiteFile, spec: CameraSpec) -> FrameSource | None:
    """The frame source of a camera (None for a push camera); streams behind a small buffer that
    drops the oldest frame when the camera stage falls behind."""
    source = spec.source
    if isinstance(source, VideoInput):
        return VideoFileSource(site.resolve(source.video), spec.id)
    if isinstance(source, ImageFolderInput):
        return ImageFolderSource(site.resolve(source.images), spec.id, fps=spec.fps or source.fps)
    if isinstance(source, StreamInput):
        stream = StreamSource(source.url, spec.id, reconnect=ReconnectPolicy())
        return BufferedSource(stream, capacity=4, policy="drop_oldest")
    return None


def run_site(
    site: SiteFile,
    out: Path | None,
    *,
    max_frames: int | None = None,
    detector: str | None = None,
    embedder: Embedder | None = None,
    tracker: str | None = None,
    sinks: Sequence[Sink] = (),
    min_samples: int = 5,
    snapshot: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Run every pulled camera of ``site``; outputs under ``out`` (none when it is None) and to
    ``sinks``. ``detector``, ``embedder`` and ``tracker`` override the site file's models;
    ``snapshot`` (a frame index) also writes ``out/snapshots/``: that frame of every camera labelled
    by global id and class, and the site map of every identity's path."""
    detector_spec = detector or site.models.detector
    kind, _ = parse_spec(detector_spec)
    shared_embedder = embedder or make_embedder(site.models.embedder)
    tracker_name = tracker or site.tracker.name
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if warn is not None:
            warn(message)

    stages = []
    live = set()
    failed: dict[str, CameraStats] = {}
    for spec in site.cameras:
        try:
            source = open_camera_source(site, spec)
        except SourceError as error:  # a camera that cannot start is reported; the others go on
            failed[spec.id] = CameraStats(error=str(error))
            note(f"camera {spec.id} stopped: {error}")
            continue
        if source is None:
            note(f"camera {spec.id} is a push camera: the service feeds it, 'run' leaves it out")
            continue
        if isinstance(spec.source, StreamInput):
            live.add(spec.id)
        detector_of_camera = camera_detector(site, spec, detector_spec)
        stages.append(
            camera_stage(
                site,
                spec.id,
                source,
                detector_of_camera,
                shared_embedder,
                detector_spec=detector_spec,
                tracker=tracker_name,
                warn=note,
                max_frames=max_frames,
            )
        )
    if not stages:
        reason = "none of its cameras could start" if failed else "push cameras need the service"
        raise ValueError(f"site {site.name!r} has no camera with a source to pull ({reason})")
    cameras = {camera.id: camera for camera in site.calibrated_cameras()}
    topology = site.topology_of(list(cameras.values()))
    outputs: list[Sink] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        outputs = [
            MotSink(out / "tracks"),
            MtmcSink(out / "mtmc.txt"),
            IndexSink(out / "index", shared_embedder.dim, identity_of(shared_embedder).key),
            ThumbnailSink(out / "thumbnails"),
        ]
        if snapshot is not None:
            names = site.classes or {0: "person", 2: "car"}
            outputs.append(
                SnapshotSink(
                    out / "snapshots",
                    snapshot,
                    list(cameras.values()),
                    names,
                    max_range_m=site.topology.overlap_range_m,
                )
            )
    fusion = site_fusion(site, list(cameras.values()), topology, motion=kind == "motion")
    for group in fusion:
        views = ", ".join(camera.id for camera in group.cameras)
        note(f"site {site.name!r}: the overlapping views {views} are fused on the ground")
    stage = SiteStage(
        cameras,
        topology,
        site.association,
        sinks=[*outputs, *sinks],
        min_samples=min_samples,
        memory_s=max(site.memory_s, 600.0),
        classify_by_size=kind == "motion",
        fusion=fusion,
        sync_s=site.fusion.sync_s,
    )
    result = run_cameras(stages, stage, live=frozenset(live), progress=progress, warn=note)
    result.cameras.update(failed)
    result.warnings[:] = notes  # the cameras' and the run's, in the order they came
    if out is not None:
        figures = {"site": site.name, "detector": detector_spec, "tracker": tracker_name, **result.to_dict()}
        (out / "run.json").write_text(json.dumps(figures, indent=2) + "\n")
    return result
