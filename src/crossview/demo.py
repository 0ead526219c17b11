"""``crossview demo``: a synthetic parking site, the whole platform over it, and its evaluation.

1. A site is generated and rendered (``crossview.sim.site``): calibrated cameras, vehicles that
   enter, park and leave, pedestrians, one scenario; with ground truth.
2. Every camera's video runs through the live pipeline, frame by frame in time order: motion
   detection against the camera's background plate (taken of the empty site, as at
   commissioning; objects still for 1.5 s are held so passers-by do not merge with them), a
   SORT-family tracker, a colour-histogram appearance embedding.
3. Tracks become tracklets located on the ground (``TrackletBuilder``) and are given global
   identities online (``OnlineAssociator``, with the camera topology: overlaps from the
   calibration, transit windows learned from a survey recording of the site), once per second.
4. The parking flow indexes each vehicle entry and, on each exit, finds the entry by visual
   search with context re-ranking (``ParkingFlow``).
5. Evaluation against the ground truth: per-camera HOTA/IDF1, multi-camera IDF1,
   localisation error, exit-to-entry accuracy, per-stage latency; a JSON file and an HTML report.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.core.detections import Detections
from crossview.eval.boxes import iou_xywh
from crossview.eval.latency import LatencySummary
from crossview.eval.mot.evaluate import evaluate_sequence
from crossview.eval.mot.protocol import MotProtocol
from crossview.eval.mtmc import evaluate_mtmc, localisation_error
from crossview.io.formats.mot import MotTable
from crossview.io.formats.mtmc import MtmcTable, write_mtmc
from crossview.io.sinks import colour_of, draw_tracks
from crossview.multicam.association import AssociationConfig, OnlineAssociator, Tracklet, associate
from crossview.multicam.topology import CameraTopology, learn_transitions, overlaps_from_geometry
from crossview.multicam.tracklets import CAR, TrackletBuilder
from crossview.parking import ParkingConfig, ParkingFlow, ParkingSession, session_accuracy
from crossview.runtime.engine import Sink, TrackedFrame
from crossview.runtime.run import run_site
from crossview.runtime.sinks import MtmcSink
from crossview.runtime.site import SiteFile, load_site
from crossview.runtime.views import label_by_identity
from crossview.sim.site import RenderedSite, Scenario, Site, SiteSpec, generate_site, render_site
from crossview.sim.site.render import empty_view

# Colour-histogram appearance (cosine distance scale); classes come from box sizes, which
# occlusion fools (a parked car seen as a sliver is person-sized), so a class mismatch costs
# instead of forbidding the pair.
_ASSOCIATION = AssociationConfig(max_cost=0.25, class_mismatch_penalty=0.1, linkage="single")
CLASS_NAMES = {0: "person", 2: "car"}
# Views overlap when their ground within 45 m shares 4 m² (the cameras watch a 50 x 30 m lot).
OVERLAP_RANGE_M = 45.0
MIN_OVERLAP_M2 = 4.0


class DemoConfig(BaseModel):
    """What the demo simulates and how the platform is set up to watch it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cameras: int = Field(default=4, ge=2, le=8)
    seconds: float = Field(default=60.0, gt=0)
    scenario: Scenario = "default"
    seed: int = 0
    survey_seed: int = Field(default=1000, description="the site recording transit times are learned from")
    tracker: str = "sort"
    min_samples: int = Field(default=5, ge=1, description="rows a track needs before it gets a global id")


@dataclass(slots=True)
class DemoResult:
    """Figures (the JSON), where the files are, and the parking sessions found."""

    figures: dict[str, Any]
    out: Path
    report: Path
    sessions: list[ParkingSession] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def site_topology(site: Site, survey: Site | None) -> CameraTopology:
    """Overlaps from the calibrated cameras' views of the ground; transit windows learned from the
    ground-truth visits of a survey recording (as when a site is commissioned with a test drive)."""
    cameras = [camera.camera for camera in site.cameras]
    overlaps = overlaps_from_geometry(cameras, max_range_m=OVERLAP_RANGE_M, min_area_m2=MIN_OVERLAP_M2)
    transitions: dict[tuple[str, str], tuple[float, float]] = {}
    if survey is not None:
        rendered_visits = _survey_visits(survey)
        transitions = dict(learn_transitions(rendered_visits, margin_seconds=3.0, min_samples=2))
        transitions = {pair: window for pair, window in transitions.items() if pair not in overlaps}
    return CameraTopology(cameras=tuple(c.id for c in cameras), overlaps=overlaps, transitions=transitions)


def _survey_visits(site: Site) -> list[tuple[int, str, float, float]]:
    """Ground-truth camera visits of every actor: ``(object id, camera, first time, last time)``."""
    from crossview.multicam.geometry import world_to_image

    times = site.trajectories.times
    visits: list[tuple[int, str, float, float]] = []
    for camera in site.cameras:
        width, height = camera.camera.width, camera.camera.height
        for column, actor in enumerate(site.actors):
            active = site.trajectories.active[:, column]
            points = np.column_stack([site.trajectories.position[:, column], np.zeros(len(times))])
            pixels = world_to_image(camera.camera, points)
            inside = active & np.all(np.isfinite(pixels), axis=1)
            inside &= (
                (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
            )
            frames = np.flatnonzero(inside)
            if frames.size == 0:
                continue
            breaks = np.flatnonzero(np.diff(frames) > 1)
            starts = np.concatenate([[frames[0]], frames[breaks + 1]])
            stops = np.concatenate([frames[breaks], [frames[-1]]])
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                visits.append((actor.id, camera.id, float(times[start]), float(times[stop])))
    return visits


def run_demo(
    out: str | Path, config: DemoConfig | None = None, *, progress: Callable[[str], None] | None = None
) -> DemoResult:
    """Generate, run, evaluate and report; see the module docstring."""
    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message: None)
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        say(f"warning: {message}")

    started = time.perf_counter()
    spec = SiteSpec(num_cameras=config.cameras, duration=config.seconds, scenario=config.scenario)
    site = generate_site(spec, seed=config.seed)
    rendered = render_site(site, out / "site")
    survey = generate_site(
        SiteSpec(num_cameras=config.cameras, duration=max(config.seconds, 60.0)), seed=config.survey_seed
    )
    topology = site_topology(site, survey)
    for message in topology.check():
        warn(message)
    render_seconds = time.perf_counter() - started
    say(f"site rendered: {len(site.cameras)} cameras, {site.num_frames} frames each ({render_seconds:.1f} s)")

    run = _run_cameras(site, rendered, topology, config, warn)
    evaluate_started = time.perf_counter()
    figures = _evaluate(site, rendered, run, config)
    figures["seconds_render"] = round(render_seconds, 2)
    figures["seconds_pipeline"] = round(run.seconds, 2)
    figures["seconds_total"] = round(time.perf_counter() - started, 2)
    figures["seconds_evaluate"] = round(time.perf_counter() - evaluate_started, 2)
    figures["warnings"] = notes
    write_mtmc(out / "pred" / "mtmc.txt", run.predictions)
    (out / "results.json").write_text(json.dumps(figures, indent=2, default=_plain))
    report = _report(out, site, rendered, run, figures, config)
    return DemoResult(figures, out, report, run.flow.sessions, notes)


@dataclass(slots=True)
class _Run:
    builders: dict[str, TrackletBuilder]
    associator: OnlineAssociator
    flow: ParkingFlow
    predictions: MtmcTable
    latency: dict[str, LatencySummary]
    seconds: float
    snapshots: dict[str, tuple[NDArray[np.uint8], Detections]]
    topology: CameraTopology


# The demo's motion detector: each camera's background plate is taken of the empty site, as at
# commissioning; a blob still for 1.5 s is held as a stopped object (hold_after_frames at 10 fps).
DEMO_MOTION: Mapping[str, Any] = {
    "scale": 1.0,
    "blur": 5,
    "plate_threshold": 18,
    "min_area": 40,
    "min_width": 3,
    "min_height": 6,
    "open_kernel": 3,
    "close_kernel": 9,
    "hold_after_frames": 15,
}


def demo_site_file(
    site: Site, rendered: RenderedSite, topology: CameraTopology, config: DemoConfig
) -> SiteFile:
    """The synthetic site as a site file (``rendered.root / "site.yaml"``), with its videos, its
    cameras' calibration and background plates, the demo's models and the learned topology: what
    ``crossview run`` reads, so ``crossview run site.yaml`` runs what the demo runs."""
    root = rendered.root
    (root / "plates").mkdir(parents=True, exist_ok=True)
    cameras = []
    for camera in site.cameras:
        plate = root / "plates" / f"{camera.id}.png"
        cv2.imwrite(str(plate), empty_view(site, camera))  # PNG: the plate's pixels exactly
        calibration: dict[str, Any] = {
            "K": camera.camera.intrinsics,
            "R": camera.camera.rotation,
            "t": camera.camera.translation,
        }
        if camera.camera.distortion:
            calibration["distortion"] = camera.camera.distortion
        cameras.append(
            {
                "id": camera.id,
                "source": rendered.videos[camera.id].relative_to(root).as_posix(),
                "calibration": calibration,
                "background": plate.relative_to(root).as_posix(),
            }
        )
    data = {
        "name": f"synthetic parking site ({config.scenario}, seed {config.seed})",
        "cameras": cameras,
        "models": {"detector": "motion", "detector_options": dict(DEMO_MOTION), "embedder": "color"},
        # lost tracks are kept 3 s (30 frames at 10 fps)
        "tracker": {"name": config.tracker, "options": {"max_age": 90}},
        "association": _ASSOCIATION.model_dump(),
        "topology": {
            "overlaps": [list(pair) for pair in sorted(topology.overlaps)],
            "transitions": {
                f"{a}->{b}": list(window) for (a, b), window in sorted(topology.transitions.items())
            },
            "discover_overlaps": False,  # declared above, from the same geometry
        },
    }
    path = root / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_site(path)


class _ParkingSink(Sink):
    """Feeds each newly associated tracklet to the parking flow, once: the flow decides at first
    sight, as a gate would (later corrections of its identity are not replayed)."""

    def __init__(self, flow: ParkingFlow) -> None:
        self.flow = flow
        self._seen: set[tuple[str, int]] = set()

    def assigned(self, tracklet: Tracklet, global_id: int) -> None:
        if tracklet.key not in self._seen:
            self._seen.add(tracklet.key)
            self.flow.observe(tracklet, global_id)


class _SnapshotSink(Sink):
    """Keeps each camera's frame ``index`` and its tracked detections, for the report."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.snapshots: dict[str, tuple[NDArray[np.uint8], Detections]] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        if tracked.index == self.index and tracked.image is not None:
            self.snapshots[tracked.camera_id] = (tracked.image, tracked.detections)


def _run_cameras(
    site: Site,
    rendered: RenderedSite,
    topology: CameraTopology,
    config: DemoConfig,
    warn: Callable[[str], None],
) -> _Run:
    """The site file run by the runtime (``run_site``), with the parking flow and snapshots as sinks."""
    site_file = demo_site_file(site, rendered, topology, config)
    entries = frozenset(c.id for c in site.cameras if c.role == "gate")
    exits = frozenset(c.id for c in site.cameras if c.role == "exit")
    flow = ParkingFlow(
        ParkingConfig(entry_cameras=entries, exit_cameras=exits, vehicle_classes=frozenset({CAR}))
    )
    predictions = MtmcSink()
    snapshots = _SnapshotSink(site.num_frames // 2)
    result = run_site(
        site_file,
        rendered.root.parent / "run",
        sinks=[_ParkingSink(flow), snapshots, predictions],
        min_samples=config.min_samples,
        warn=warn,
    )
    stage = result.site
    return _Run(
        stage.builders,
        stage.associator,
        flow,
        predictions.table,
        result.latency(),
        result.seconds,
        snapshots.snapshots,
        topology,  # the cameras' (the associator's takes each fused group as one camera)
    )


def _predictions(
    builders: dict[str, TrackletBuilder], global_ids: Mapping[tuple[str, int], int]
) -> MtmcTable:
    """Every tracked box of the tracklets that have a global id, with its ground position."""
    cameras: list[str] = []
    rows: list[NDArray[np.float64]] = []
    for camera_id, builder in builders.items():
        for tracklet in builder.tracklets(min_samples=1):
            global_id = global_ids.get((camera_id, tracklet.track_id))
            if global_id is None:
                continue
            frames, boxes, ground = builder.rows(tracklet.track_id)
            world = np.where(np.isfinite(ground), ground, -1.0)
            block = np.column_stack(
                [
                    np.full(len(frames), global_id + 1),
                    frames + 1,
                    boxes[:, 0],
                    boxes[:, 1],
                    boxes[:, 2] - boxes[:, 0],
                    boxes[:, 3] - boxes[:, 1],
                    world,
                ]
            )
            rows.append(block)
            cameras.extend([camera_id] * len(frames))
    if not rows:
        return MtmcTable.from_rows([], np.zeros((0, 8)))
    return MtmcTable.from_rows(cameras, np.concatenate(rows))


def _truth_of_tracklets(rendered: RenderedSite, run: _Run) -> dict[tuple[str, int], int]:
    """Each predicted tracklet's ground-truth object: the one its boxes overlap most (IoU >= 0.3)."""
    truth: dict[tuple[str, int], int] = {}
    for camera_id, builder in run.builders.items():
        gt = rendered.gt[camera_id]
        frames_gt = gt.frame.astype(np.int64)
        by_frame = {
            frame: (
                gt.track_id[frames_gt == frame].astype(np.int64),
                np.asarray(gt.xywh[frames_gt == frame], np.float64),
            )
            for frame in np.unique(frames_gt).tolist()
        }
        for tracklet in builder.tracklets(min_samples=1):
            frames, boxes, _ = builder.rows(tracklet.track_id)
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
            votes: dict[int, int] = {}
            for frame, box in zip((frames + 1).tolist(), xywh, strict=True):
                if frame not in by_frame:
                    continue
                ids, gt_boxes = by_frame[frame]
                overlap = iou_xywh(box[None, :], gt_boxes)[0]
                best = int(np.argmax(overlap))
                if overlap[best] >= 0.3:
                    votes[int(ids[best])] = votes.get(int(ids[best]), 0) + 1
            if votes:
                truth[(camera_id, tracklet.track_id)] = max(votes, key=lambda k: votes[k])
    return truth


def _evaluate(site: Site, rendered: RenderedSite, run: _Run, config: DemoConfig) -> dict[str, Any]:
    protocol = MotProtocol.mot15()
    per_camera: dict[str, dict[str, float]] = {}
    for camera in site.cameras:  # single-camera tracking as produced: per-camera track ids
        local = _local_ids(run, camera.id)
        scores = evaluate_sequence(
            rendered.gt[camera.id], local, protocol=protocol, num_frames=site.num_frames, name=camera.id
        ).summary()
        per_camera[camera.id] = {"HOTA": scores["HOTA"], "IDF1": scores["IDF1"], "MOTA": scores["MOTA"]}
    mtmc = evaluate_mtmc(rendered.mtmc, run.predictions).to_dict()
    # offline: the whole recording's tracklets associated at once, for comparison with the live ids
    tracklets = [
        t for builder in run.builders.values() for t in builder.tracklets(min_samples=config.min_samples)
    ]
    offline = associate(tracklets, run.topology, _ASSOCIATION)
    offline_mtmc = evaluate_mtmc(
        rendered.mtmc, _predictions(run.builders, offline.mapping(tracklets))
    ).to_dict()
    located = localisation_error(rendered.mtmc, run.predictions)
    truth = _truth_of_tracklets(rendered, run)
    complete = {s.object_id for s in site.sessions if s.complete}
    scored = [s for s in run.flow.sessions if truth.get((s.exit_camera, s.exit_track)) in complete]
    latency = {
        stage: {"p50_ms": summary.p50, "p99_ms": summary.p99, "count": summary.count}
        for stage, summary in run.latency.items()
    }
    total = run.latency.get("total")
    return {
        "scenario": config.scenario,
        "seed": config.seed,
        "cameras": len(site.cameras),
        "frames_per_camera": site.num_frames,
        "per_camera": per_camera,
        "mtmc_idf1": mtmc["mtmc_idf1"],
        "mtmc_hota": mtmc["mtmc_hota"],
        "mtmc_idf1_offline": offline_mtmc["mtmc_idf1"],
        "global_ids_offline": int(offline.global_ids.max()) + 1 if len(tracklets) else 0,
        "localization_error_median_m": located.median,
        "localization_error_p90_m": located.p90,
        "localized_matches": located.compared,
        "session_match_top1": session_accuracy(scored, truth) if scored else float("nan"),
        "sessions_true": len(complete),
        "sessions_scored": len(scored),
        "global_ids": run.associator.identities,
        "objects_true": len(site.actors),
        "latency_p50_ms": total.p50 if total else float("nan"),
        "latency_p99_ms": total.p99 if total else float("nan"),
        "latency": latency,
    }


def _local_ids(run: _Run, camera_id: str) -> MotTable:
    """The camera's predictions with per-camera track ids (single-camera tracking as produced)."""
    builder = run.builders[camera_id]
    rows = []
    for tracklet in builder.tracklets(min_samples=1):
        frames, boxes, _ = builder.rows(tracklet.track_id)
        rows.append(
            np.column_stack(
                [
                    frames + 1,
                    np.full(len(frames), tracklet.track_id),
                    boxes[:, :2],
                    boxes[:, 2:] - boxes[:, :2],
                    np.ones(len(frames)),
                ]
            )
        )
    return MotTable.from_array(np.concatenate(rows) if rows else np.zeros((0, 7)))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _report(
    out: Path, site: Site, rendered: RenderedSite, run: _Run, figures: dict[str, Any], config: DemoConfig
) -> Path:
    """``report.html``: the figures, per-camera scores, sessions, the site map with trajectories, frames."""
    images = out / "report"
    images.mkdir(exist_ok=True)
    loaded = cv2.imread(str(rendered.site_map))
    if loaded is not None:
        site_map = np.asarray(loaded, np.uint8)
        _draw_trajectories(site_map, rendered, run)
        cv2.imwrite(str(images / "site_map.png"), site_map)
    for camera_id, (image, tracked) in run.snapshots.items():
        builder = run.builders[camera_id]
        identities = {
            track: (global_id, builder.class_of(track))  # the track's class: a car is labelled a car
            for track in set(tracked.tracker_id.tolist())
            if track >= 0 and (global_id := run.associator.global_id(camera_id, track)) is not None
        }
        labelled = label_by_identity(tracked, identities)
        cv2.imwrite(str(images / f"{camera_id}.jpg"), draw_tracks(image, labelled, CLASS_NAMES))
    story, legend = _identity_story(run, _truth_of_tracklets(rendered, run), len(site.actors))
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{s['HOTA']:.3f}</td><td>{s['IDF1']:.3f}</td><td>{s['MOTA']:.3f}</td></tr>"
        for c, s in figures["per_camera"].items()
    )
    sessions = "".join(
        "<tr>"
        f"<td>{s.exit_camera}/{s.exit_track}</td><td>{s.exit_time:.1f}</td>"
        f"<td>{'-' if s.entry_track is None else f'{s.entry_camera}/{s.entry_track}'}</td>"
        f"<td>{'-' if s.entry_time is None else f'{s.entry_time:.1f}'}</td>"
        f"<td>{' → '.join(s.path)}</td>"
        f"<td>{_best_hit(s)}</td>"
        "</tr>"
        for s in run.flow.sessions
    )
    headline = "".join(
        f"<tr><td>{key}</td><td>{_format(figures[key])}</td></tr>"
        for key in (
            "mtmc_idf1",
            "mtmc_idf1_offline",
            "mtmc_hota",
            "localization_error_median_m",
            "session_match_top1",
            "latency_p50_ms",
            "latency_p99_ms",
            "global_ids",
            "objects_true",
            "seconds_total",
        )
    )
    frames = "".join(
        f'<figure><img src="report/{c}.jpg" width="480"><figcaption>{c}</figcaption></figure>'
        for c in run.snapshots
    )
    warnings_html = "".join(f"<li>{html.escape(w)}</li>" for w in figures["warnings"])
    page = f"""<!doctype html><meta charset="utf-8"><title>crossview demo: {config.scenario}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
td,th{{padding:2px 10px}}figure{{display:inline-block}}</style>
<h1>crossview demo: {html.escape(config.scenario)} (seed {config.seed})</h1>
<h2>Figures</h2><table>{headline}</table>
<h2>Per camera</h2><table><tr><th>camera</th><th>HOTA</th><th>IDF1</th><th>MOTA</th></tr>{rows}</table>
<h2>Parking sessions</h2><table><tr><th>exit track</th><th>exit s</th><th>entry track</th><th>entry s</th>
<th>path</th><th>best hit: appearance / context</th></tr>{sessions}</table>
<h2>Global identities</h2><p>{html.escape(story)}</p>
<table><tr><th></th><th>global id</th><th>class</th><th>cameras</th><th>seconds</th>
<th>true object</th></tr>{legend}</table>
<h2>Site map and trajectories (by global id, in the colours of the table and of the boxes)</h2>
<img src="report/site_map.png" width="900">
<h2>Frames (mid-recording, labelled by global id)</h2>{frames}
<h2>Warnings</h2><ul>{warnings_html}</ul>
"""
    path = out / "report.html"
    path.write_text(page)
    return path


def _identity_story(run: _Run, truth: Mapping[tuple[str, int], int], objects: int) -> tuple[str, str]:
    """Why there are as many global ids as there are, in words, and the legend's table rows.

    Each identity is matched to the true object most of its tracks show. An object with several
    identities was split: by a track broken inside one camera that association did not join back
    (its cameras are among those of the object's main identity), or at a change of camera.
    """
    members: dict[int, list[tuple[str, int]]] = {}
    for camera_id, builder in run.builders.items():
        for tracklet in builder.tracklets(min_samples=1):
            global_id = run.associator.global_id(camera_id, tracklet.track_id)
            if global_id is not None:
                members.setdefault(global_id, []).append((camera_id, tracklet.track_id))
    owner: dict[int, int | None] = {}
    for global_id, keys in members.items():
        votes = [truth[key] for key in keys if key in truth]
        owner[global_id] = max(set(votes), key=votes.count) if votes else None
    by_object: dict[int, list[int]] = {}
    for global_id, true_id in owner.items():
        if true_id is not None:
            by_object.setdefault(true_id, []).append(global_id)
    within = across = 0
    for ids in by_object.values():
        ids.sort(key=lambda g: -len(members[g]))
        main = {camera for camera, _ in members[ids[0]]}
        for extra in ids[1:]:
            if {camera for camera, _ in members[extra]} <= main:
                within += 1
            else:
                across += 1
    kept = sum(len(ids) == 1 for ids in by_object.values())
    unmatched = sum(true_id is None for true_id in owner.values())
    story = (
        f"{len(members)} global ids for {objects} objects. {kept} of the {len(by_object)} objects tracked "
        f"kept one id. The {within + across} extra ids of the others: {_count(within, 'track')} broken "
        "inside one camera (occlusion, a stop, the edge of the view) that association did not join back, "
        f"and {_count(across, 'change')} of camera it did not link. {_count(unmatched, 'id')} follow no "
        "object: no true object covers their boxes (IoU under 0.3), as with a motion blob of two objects "
        "merged or of part of one."
    )
    rows = []
    for global_id in sorted(members):
        keys = members[global_id]
        builder_of = run.builders
        classes = [builder_of[camera].class_of(track) for camera, track in keys]
        tracklets = [builder_of[camera].tracklet(track) for camera, track in keys]
        start, end = min(t.t_start for t in tracklets), max(t.t_end for t in tracklets)
        b, g, r = colour_of(global_id + 1)
        true_id = owner[global_id]
        rows.append(
            f'<tr><td style="background:rgb({r},{g},{b});width:18px"></td><td>{global_id + 1}</td>'
            f"<td>{CLASS_NAMES.get(max(set(classes), key=classes.count), '?')}</td>"
            f"<td>{' '.join(sorted({camera for camera, _ in keys}))}</td><td>{start:.1f}-{end:.1f}</td>"
            f"<td>{'-' if true_id is None else true_id}</td></tr>"
        )
    return story, "".join(rows)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _draw_trajectories(image: NDArray[np.uint8], rendered: RenderedSite, run: _Run) -> None:
    geometry = json.loads(rendered.site_json.read_text())["map"]["image"]
    scale, (x_origin, y_origin) = geometry["pixels_per_metre"], geometry["origin"]
    for camera_id, builder in run.builders.items():
        for tracklet in builder.tracklets(min_samples=1):
            global_id = run.associator.global_id(camera_id, tracklet.track_id)
            finite = tracklet.ground[np.all(np.isfinite(tracklet.ground), axis=1)]
            if global_id is None or len(finite) < 2:
                continue
            colour = colour_of(global_id + 1)  # the colour its boxes are drawn in
            points = np.column_stack([(finite[:, 0] - x_origin) * scale, (y_origin - finite[:, 1]) * scale])
            points = np.round(points).astype(np.int32)
            cv2.polylines(image, [points.reshape(-1, 1, 2)], False, colour, 2)


def _best_hit(session: ParkingSession) -> str:
    if not session.hits:
        return ""
    hit = session.hits[0]
    return f"{hit.appearance:.3f} / {hit.context:+.3f} ({hit.verdict})"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))
