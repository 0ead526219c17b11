"""Multi-camera IDF1 of detection-level fusion against per-camera tracking and tracklet association.

    python benchmarks/bench_fusion.py [--seeds 3] [--jobs 2] [--json results.json]
                                      [--skip-ucla] [--skip-parking]

Ways to give global ids to the boxes of overlapping calibrated views, on the same boxes:

- **fusion**: ``crossview.multicam.fusion.GroundFusion`` with its defaults, once per instant; it
  uses no appearance;
- **tracklets**: what ``crossview run`` does today: SORT per camera
  (``make_tracker("sort", frame_rate=fps)``), then the runtime's ``SiteStage`` (tracklets located
  on the ground, ``OnlineAssociator`` every second with the site file's default association
  ``max_cost=0.25, linkage="single"``, overlaps from the calibration, ``min_samples=5``), fed
  ``TrackedFrame``s of ``Frame``s with a blank image of the camera's size. Rows are scored with the
  id their track has when it ends (``MtmcSink``, the ``mtmc.txt`` it writes): a retroactive
  labelling that fusion, which labels each row as it comes, does not get. Boxes carry no image, so
  it gets one constant embedding (no appearance, as fusion);
- **tracklets + ReID**: the same with a simulated re-identification embedding (``appearance``),
  which tracklet association relies on and fusion does not use: one person's boxes share a
  direction, each box adds its own noise; averaged over a tracklet it is nearly an oracle;
- **tracklets + ReID with views**: the same, and each camera also sees each person a little
  differently (viewpoint, light), which averaging does not remove: a good real embedder.
- **auto**, **auto + ReID with views**: the runtime as a site file's default ``fusion: auto``
  sets it up: each connected group of overlapping calibrated views fused on the ground, its ground
  tracks joined with the other cameras' tracks (and with each other) by the same association;
  without appearance and with the good embedder.

Inputs:

- the UCLA CAMPUS auditorium (``../shared/data/ucla-campus-auditorium``): the true boxes of the
  two calibrated, overlapping views (HC3, HC4), at 2 fps (every 15th frame) and at 30 fps, and at
  2 fps with box jitter (3% of the box height per edge) and 10% of the boxes missed; also all four
  views at 2 fps, where IP2 and IP5 have no calibration (fusion leaves their rows at -1);
- synthetic crowds (the generator of ``tests/multicam/test_fusion.py``): 6 cameras around a
  12 x 12 m square, 20 and 40 people for 30 s at 2 fps, true boxes and noisy ones (jitter 3%, 10%
  missed, 0.5 false positives per view and instant, calibration off by 3 cm and 0.1 degree),
  ``--seeds`` seeds each;
- the synthetic parking site (``crossview.sim.site`` with the demo's defaults: 4 cameras at
  10 fps overlapping in strips, vehicles and pedestrians, 60 s), true boxes.

Prints a markdown table (mean ± standard deviation over seeds) and, with ``--json``, writes every
figure. The IDF1 is ``crossview.eval.mtmc.evaluate_mtmc``'s (global ids matched over all views).
Inputs run in ``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the synthetic crowd generator lives with its tests

from crossview.core.camera import Camera  # noqa: E402
from crossview.core.detections import Detections  # noqa: E402
from crossview.core.frame import Frame  # noqa: E402
from crossview.eval.mtmc import evaluate_mtmc  # noqa: E402
from crossview.io.formats.mtmc import MtmcTable  # noqa: E402
from crossview.io.formats.ucla import load_ucla_cameras, load_ucla_ground_truth  # noqa: E402
from crossview.multicam.fusion import GroundFusion  # noqa: E402
from crossview.multicam.topology import CameraTopology, overlaps_from_geometry  # noqa: E402
from crossview.runtime.engine import SiteStage, TrackedFrame  # noqa: E402
from crossview.runtime.sinks import MtmcSink  # noqa: E402
from crossview.runtime.site import parse_site  # noqa: E402
from crossview.track.factory import make_tracker  # noqa: E402
from tests.multicam.test_fusion import Noise, observe, walk  # noqa: E402

CROWD_SECONDS = 30.0
UCLA = ROOT.parent / "shared" / "data" / "ucla-campus-auditorium"
UCLA_CALIBRATED = ("HC3", "HC4")
NOISY = Noise(jitter=0.03, miss=0.1, false_positives=0.5, calibration_m=0.03, calibration_deg=0.1)
MOT_TO_COCO = {1: 0, 3: 2}  # the parking site's MOTChallenge classes: pedestrian, vehicle


@dataclass(frozen=True)
class Scene:
    """Boxes of synchronised views, instant by instant, and their ground truth (frames from 1)."""

    name: str
    cameras: tuple[Camera, ...]  # as calibrated (uncalibrated ones without calibration)
    fps: float
    times: NDArray[np.float64]
    instants: list[dict[str, Detections]]  # detections' frame_index = instant number
    truth: MtmcTable


# ------------------------------------------------------------------------------------ methods
def table_of(rows: list[NDArray[np.float64]], cameras: list[str]) -> MtmcTable:
    return MtmcTable.from_rows(cameras, np.concatenate([np.zeros((0, 8)), *rows]))


def run_fusion(scene: Scene) -> MtmcTable:
    fusion = GroundFusion(scene.cameras)
    rows: list[NDArray[np.float64]] = []
    cameras: list[str] = []
    for index, (time_s, views) in enumerate(zip(scene.times, scene.instants, strict=True)):
        fused = fusion.update(float(time_s), views)
        for name, detections in views.items():
            ids = fused.global_ids[name]
            kept = ids >= 0
            boxes = detections.xyxy[kept].astype(np.float64)
            count = int(kept.sum())
            rows.append(
                np.column_stack(
                    [
                        ids[kept] + 1,
                        np.full(count, index + 1),
                        boxes[:, :2],
                        boxes[:, 2:] - boxes[:, :2],
                        np.full((count, 2), -1.0),
                    ]
                )
            )
            cameras += [name] * count
    return table_of(rows, cameras)


def appearance(scene: Scene, view_spread: float, seed: int = 0) -> list[dict[str, Detections]]:
    """The instants with a simulated re-identification embedding on every row.

    Each person has a random direction in 64 dimensions, and each (person, camera) a fixed offset
    of ``view_spread`` times its length (the viewpoint and the light: what averaging a tracklet's
    boxes does not remove); each box adds noise of its length again (pose, blur, occluders). A
    false positive's embedding is noise alone. Two people's boxes have cosine 0 (sd 0.13); two
    boxes of one person 0.5 with ``view_spread = 0``, and with 0.75, 0.6 in one camera and 0.4
    across two, two of her tracklets in two cameras about 0.65.
    """
    rng = np.random.default_rng([seed, 17])
    dimension = 64

    def unit_noise(*shape: int) -> NDArray[np.float64]:
        return rng.normal(size=(*shape, dimension)) / np.sqrt(dimension)

    people = np.unique(scene.truth.obj_id)
    identity = unit_noise(len(people)) * np.sqrt(dimension)
    identity /= np.linalg.norm(identity, axis=1, keepdims=True)
    views = {camera.id: view_spread * unit_noise(len(people)) for camera in scene.cameras}
    out = []
    for instant in scene.instants:
        changed = {}
        for name, detections in instant.items():
            person = np.asarray(detections.data["person"])
            slot = np.clip(np.searchsorted(people, person), 0, len(people) - 1)
            known = ((person >= 0) & (people[slot] == person))[:, None]
            base = np.where(known, identity[slot] + views[name][slot], 0.0)
            embedding = base + unit_noise(len(detections))
            changed[name] = detections.replace(embedding=embedding.astype(np.float32))
        out.append(changed)
    return out


def run_tracklets(scene: Scene, fuse: bool = False) -> MtmcTable:
    """Per-camera SORT, then the runtime's site stage; with ``fuse``, as ``fusion: auto`` sets it up:
    each connected group of overlapping calibrated views fused, the rest joined as tracklets."""
    calibrated = [camera for camera in scene.cameras if camera.has_ground_calibration]
    topology = CameraTopology(
        cameras=tuple(camera.id for camera in scene.cameras), overlaps=overlaps_from_geometry(calibrated)
    )
    site_file = parse_site({"cameras": [{"id": camera.id, "source": "push"} for camera in scene.cameras]})
    by_id = {camera.id: camera for camera in calibrated}
    groups = site_file.fusion_groups(calibrated, topology, motion=False) if fuse else []  # object boxes
    sink = MtmcSink(keep=True)
    site = SiteStage(
        by_id,
        topology,
        site_file.association,
        sinks=[sink],
        min_samples=5,
        classify_by_size=False,
        fusion=[GroundFusion([by_id[name] for name in group]) for group in groups],
    )
    trackers = {camera.id: make_tracker("sort", frame_rate=scene.fps) for camera in scene.cameras}
    images = {camera.id: np.zeros((camera.height, camera.width, 3), np.uint8) for camera in scene.cameras}
    for index, (time_s, views) in enumerate(zip(scene.times, scene.instants, strict=True)):
        for camera in scene.cameras:
            detections = views.get(camera.id)
            if detections is None:
                continue
            embedding = detections.embedding
            if embedding is None:  # no appearance: one embedding for all
                embedding = np.ones((len(detections), 8), np.float32)
            embedded = detections.replace(embedding=embedding, timestamp=float(time_s))
            tracked = trackers[camera.id].update(embedded)
            frame = Frame(images[camera.id], camera.id, index, float(time_s))
            site.apply(TrackedFrame.of(frame, tracked))
    site.close()
    return sink.table


METHODS: dict[str, Callable[[Scene], MtmcTable]] = {
    "fusion": run_fusion,
    "tracklets": run_tracklets,
    "tracklets + ReID": lambda scene: run_tracklets(replace(scene, instants=appearance(scene, 0.0))),
    "tracklets + ReID with views": lambda scene: run_tracklets(
        replace(scene, instants=appearance(scene, 0.75))
    ),
    "auto": lambda scene: run_tracklets(scene, fuse=True),
    "auto + ReID with views": lambda scene: run_tracklets(
        replace(scene, instants=appearance(scene, 0.75)), fuse=True
    ),
}


def score(scene: Scene, method: str) -> dict[str, float]:
    started = time.perf_counter()
    predicted = METHODS[method](scene)
    seconds = time.perf_counter() - started
    summary = evaluate_mtmc(scene.truth, predicted).overall.summary()
    return {
        "idf1": float(summary["IDF1"]),
        "idp": float(summary["IDP"]),
        "idr": float(summary["IDR"]),
        "idsw": float(summary["IDSW"]),
        "seconds": seconds,
    }


# ------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Recipe:
    """One input, made in the worker process that scores it."""

    kind: str  # "ucla", "crowd" or "parking"
    people: int = 0
    noisy: bool = False
    step: int = 1  # UCLA: every step-th frame of 30
    all_views: bool = False  # UCLA: the uncalibrated views too

    @property
    def label(self) -> str:
        boxes = "noisy boxes" if self.noisy else "true boxes"
        if self.kind == "ucla":
            views = "all 4 views (IP2, IP5 uncalibrated)" if self.all_views else "HC3+HC4"
            if self.noisy:
                boxes = "true boxes, jitter 3% + 10% missed"
            return f"UCLA auditorium, {views}, {30 / self.step:g} fps, {boxes}"
        if self.kind == "crowd":
            return f"synthetic crowd, 6 cameras, {self.people} people, 2 fps, {boxes}"
        return "synthetic parking site (demo: 4 cameras, 10 fps), true boxes"


def degrade(
    instants: list[dict[str, Detections]], jitter: float, miss: float, seed: int
) -> list[dict[str, Detections]]:
    """Each box's edges moved by ``jitter`` of its height (sd) and ``miss`` of the boxes dropped."""
    rng = np.random.default_rng(seed)
    out = []
    for views in instants:
        changed = {}
        for name, detections in views.items():
            kept = detections[rng.random(len(detections)) >= miss]
            boxes = kept.xyxy.astype(np.float64)
            boxes += rng.normal(0, jitter, boxes.shape) * (boxes[:, 3] - boxes[:, 1])[:, None]
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 2)
            changed[name] = kept.replace(xyxy=boxes)
        out.append(changed)
    return out


@cache
def ucla_data() -> tuple[dict[str, Camera], MtmcTable]:
    return load_ucla_cameras(UCLA, all_views=True), load_ucla_ground_truth(UCLA)


def ucla_scene(recipe: Recipe) -> Scene:
    """The chosen views' true boxes at every ``step``-th frame, instants numbered from 0."""
    cameras, truth = ucla_data()
    views = tuple(cameras) if recipe.all_views else UCLA_CALIBRATED
    names = np.asarray(truth.camera_of_rows())
    chosen = np.isin(names, list(views)) & ((truth.frame - 1) % recipe.step == 0)
    rows = truth[chosen]
    names = names[chosen]
    frames = np.unique(rows.frame)
    instant_of = np.searchsorted(frames, rows.frame)
    instants: list[dict[str, Detections]] = [{} for _ in frames]
    for name in views:
        mine = np.flatnonzero(names == name)
        mine = mine[np.argsort(instant_of[mine], kind="stable")]
        bounds = np.searchsorted(instant_of[mine], np.arange(len(frames) + 1))
        for index in range(len(frames)):
            block = mine[bounds[index] : bounds[index + 1]]
            instants[index][name] = Detections.from_xywh(
                rows.xywh[block], data={"person": rows.obj_id[block]}, camera_id=name, frame_index=index
            )
    if recipe.noisy:
        instants = degrade(instants, 0.03, 0.1, seed=0)
    renumbered = MtmcTable.from_rows(
        list(names),
        np.column_stack([rows.obj_id, instant_of + 1, rows.xywh, np.full((len(rows), 2), -1.0)]),
    )
    return Scene(
        name=recipe.label,
        cameras=tuple(cameras[name] for name in views),
        fps=30.0 / recipe.step,
        times=(frames - 1) / 30.0,
        instants=instants,
        truth=renumbered,
    )


def crowd_scene(recipe: Recipe, seed: int) -> Scene:
    crowd = walk(recipe.people, CROWD_SECONDS, 2.0, seed=seed, cameras=6)
    instants, truth, cameras = observe(crowd, NOISY if recipe.noisy else Noise(), seed=seed)
    return Scene(recipe.label, cameras, 2.0, crowd.times, instants, truth)


def parking_scene(recipe: Recipe, seed: int) -> Scene:
    from crossview.sim.site import SiteSpec, generate_site, render_site

    site = generate_site(SiteSpec(), seed)
    with tempfile.TemporaryDirectory(prefix="crossview-fusion-") as folder:
        rendered = render_site(site, folder, write_video=False)
    fps = site.spec.fps
    count = site.num_frames
    instants: list[dict[str, Detections]] = [{} for _ in range(count)]
    for camera in site.cameras:
        table = rendered.gt[camera.id]
        classes = np.array([MOT_TO_COCO.get(int(c), -1) for c in table.extra[:, 0].tolist()], np.int64)
        for index in range(count):
            rows = table.frame == index + 1
            instants[index][camera.id] = Detections.from_xywh(
                table.xywh[rows],
                class_id=classes[rows],
                data={"person": table.track_id[rows]},
                camera_id=camera.id,
                frame_index=index,
            )
    cameras = tuple(camera.camera for camera in site.cameras)
    return Scene(recipe.label, cameras, fps, np.arange(count) / fps, instants, rendered.mtmc)


def build(recipe: Recipe, seed: int) -> Scene:
    if recipe.kind == "ucla":
        return ucla_scene(recipe)
    if recipe.kind == "crowd":
        return crowd_scene(recipe, seed)
    return parking_scene(recipe, seed)


def evaluate(recipe: Recipe, seed: int) -> dict[str, dict[str, float]]:
    """Every method on one input (in a worker process)."""
    scene = build(recipe, seed)
    figures = {method: score(scene, method) for method in METHODS}
    print(
        f"{recipe.label} seed {seed}: " + ", ".join(f"{m} {f['idf1']:.3f}" for m, f in figures.items()),
        file=sys.stderr,
        flush=True,
    )
    return figures


# -------------------------------------------------------------------------------------- main
def summarise(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per synthetic crowd")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--skip-ucla", action="store_true")
    parser.add_argument("--skip-parking", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()

    plan: list[tuple[Recipe, list[int]]] = []
    if not args.skip_ucla and UCLA.is_dir():
        plan += [
            (Recipe("ucla", step=15), [0]),
            (Recipe("ucla", step=1), [0]),
            (Recipe("ucla", step=15, noisy=True), [0]),
            (Recipe("ucla", step=15, all_views=True), [0]),
        ]
    elif not args.skip_ucla:
        print(f"skipping UCLA: {UCLA} is missing", file=sys.stderr)
    seeds = list(range(args.seeds))
    plan += [(Recipe("crowd", people=p, noisy=n), seeds) for n in (False, True) for p in (20, 40)]
    if not args.skip_parking:
        plan.append((Recipe("parking"), [0]))

    jobs = [(recipe, seed) for recipe, group in plan for seed in group]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(evaluate, recipe, seed) for recipe, seed in jobs]
        done = {job: future.result() for job, future in zip(jobs, futures, strict=True)}

    methods = list(METHODS)
    lines = [
        "| input | seeds | "
        + " | ".join(f"{m} IDF1" for m in methods)
        + " | seconds: "
        + " / ".join(methods)
        + " |",
        "|---|---|" + "---|" * len(methods) + "---|",
    ]
    results = []
    for recipe, group in plan:
        figures = {m: [done[(recipe, seed)][m] for seed in group] for m in methods}
        results.append({"input": recipe.label, "seeds": group, **figures})
        idf1 = " | ".join(summarise([f["idf1"] for f in figures[m]]) for m in methods)
        seconds = " / ".join(f"{statistics.mean(f['seconds'] for f in figures[m]):.1f}" for m in methods)
        lines.append(f"| {recipe.label} | {len(group)} | {idf1} | {seconds} |")
    elapsed = time.perf_counter() - started
    header = [
        f"command: `python benchmarks/bench_fusion.py --seeds {args.seeds} --jobs {args.jobs}`  ",
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}  ",
        f"wall time: {elapsed:.0f} s",
        "",
    ]
    print("\n".join(header + lines))
    if args.json is not None:
        payload = {"elapsed_s": elapsed, "crowd_seconds": CROWD_SECONDS, "results": results}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
