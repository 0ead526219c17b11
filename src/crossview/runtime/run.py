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
from crossview.runtime.engine import CameraStage, CameraStats, RunResult, Sink, SiteStage, run_cameras
from crossview.runtime.sinks import IndexSink, MotSink, MtmcSink, ThumbnailSink
from crossview.runtime.site import CameraSpec, ImageFolderInput, SiteFile, StreamInput, VideoInput
from crossview.runtime.views import SnapshotSink
from crossview.track.factory import make_tracker

__all__ = ["camera_detector", "open_camera_source", "run_site"]


def camera_detector(site: SiteFile, spec: CameraSpec, detector: str) -> Detector:
    """A camera's own detector (detectors keep per-camera state): the site's spec and options, and
    for the motion detector the camera's background plate when the site file gives one."""
    name, _ = parse_spec(detector)
    options = site.models.detector_options
    if name != "motion" or spec.background is None:
        return make_detector(detector, **options)
    path = site.resolve(spec.background)
    try:
        plate = decode_image(path.read_bytes(), ImageLimits())  # its size checked before decoding
    except (OSError, ImageError) as error:
        raise ValueError(f"camera {spec.id!r}: background: {str(path)!r}: {error}") from None
    return MotionDetector(MotionConfig(**options), plates={spec.id: plate})


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
        fps = spec.fps or getattr(source, "fps", None) or 25.0
        tracker_options = {"frame_rate": float(fps), **site.tracker.options}
        stages.append(
            CameraStage(
                source,
                camera_detector(site, spec, detector_spec),
                shared_embedder,
                make_tracker(tracker_name, **tracker_options),
                classes=None if kind == "motion" or not site.classes else frozenset(site.classes),
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
    stage = SiteStage(
        cameras,
        topology,
        site.association,
        sinks=[*outputs, *sinks],
        min_samples=min_samples,
        memory_s=max(site.memory_s, 600.0),
        classify_by_size=kind == "motion",
    )
    result = run_cameras(stages, stage, live=frozenset(live), progress=progress, warn=note)
    result.cameras.update(failed)
    result.warnings[:] = notes  # the cameras' and the run's, in the order they came
    if out is not None:
        figures = {"site": site.name, "detector": detector_spec, "tracker": tracker_name, **result.to_dict()}
        (out / "run.json").write_text(json.dumps(figures, indent=2) + "\n")
    return result
