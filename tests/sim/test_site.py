"""The synthetic parking site: camera geometry, ground truth, scenarios and determinism.

Ground-truth boxes are checked against an independent projection of each object's boxes
through the cameras written to ``site.json``, using the positions in ``trajectories.csv``.
Renders are kept small (low frame rate, small images, mostly without video encoding) so the
whole file runs in a few seconds.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.core.camera import Camera
from crossview.io.formats.mot import read_mot, read_seqinfo
from crossview.io.formats.mtmc import read_mtmc
from crossview.io.sources import VideoFileSource
from crossview.multicam.geometry import look_at_camera, pinhole_matrices
from crossview.sim.site import (
    PEDESTRIAN_CLASS,
    SCENARIOS,
    VEHICLE_CLASS,
    RenderedSite,
    Scenario,
    SiteSpec,
    empty_view,
    generate_site,
    render_site,
    simulate_site,
)

NEAR = 0.1
SMALL: dict[str, Any] = {"width": 320, "height": 180, "fps": 5.0}  # the default 60 s, cheaper to draw
TINY: dict[str, Any] = {"width": 160, "height": 96, "fps": 5.0, "duration": 20.0}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> RenderedSite:
    return simulate_site(tmp_path_factory.mktemp("default"), SiteSpec(**SMALL), seed=0, write_video=False)


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Scenario], RenderedSite]:
    """Each scenario rendered once (short, tiny, with video), on demand."""
    runs: dict[str, RenderedSite] = {}

    def run(scenario: Scenario) -> RenderedSite:
        if scenario not in runs:
            root = tmp_path_factory.mktemp(scenario)
            runs[scenario] = simulate_site(root, SiteSpec(scenario=scenario, **TINY), seed=4)
        return runs[scenario]

    return run


# ------------------------------------------------------------------------------ independent geometry
def _site_json(root: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((root / "site.json").read_text())
    return payload


def _trajectories(root: Path) -> dict[tuple[int, int], tuple[float, float, float]]:
    with (root / "trajectories.csv").open() as handle:
        return {
            (int(row["frame"]), int(row["object_id"])): (
                float(row["x"]),
                float(row["y"]),
                float(row["heading"]),
            )
            for row in csv.DictReader(handle)
        }


def _corners(obj: dict[str, Any], x: float, y: float, heading: float) -> NDArray[np.float64]:
    """World corners of every box of an object placed at ``(x, y)`` facing ``heading``."""
    points = []
    for part in obj["parts"]:
        (cx, cy), (length, width, height), base = part["centre"], part["size"], part["base"]
        for dx in (-length / 2, length / 2):
            for dy in (-width / 2, width / 2):
                for z in (base, base + height):
                    points.append((cx + dx, cy + dy, z))
    local = np.array(points)
    cos, sin = np.cos(heading), np.sin(heading)
    return np.column_stack(
        [x + cos * local[:, 0] - sin * local[:, 1], y + sin * local[:, 0] + cos * local[:, 1], local[:, 2]]
    )


def _box(camera: Camera, corners: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """The clipped image box ``x0, y0, x1, y1`` of points all in front of the camera, else None."""
    local = corners @ np.asarray(camera.rotation).T + np.asarray(camera.translation)
    if local[:, 2].min() <= NEAR + 1e-3:
        return None
    pixels = local @ np.asarray(camera.intrinsics).T
    uv = pixels[:, :2] / pixels[:, 2:]
    low = np.clip(uv.min(axis=0), 0, [camera.width, camera.height])
    high = np.clip(uv.max(axis=0), 0, [camera.width, camera.height])
    return np.concatenate([low, high])


def _sightings(run: RenderedSite, camera: str) -> set[tuple[int, int]]:
    table = run.gt[camera]
    return set(zip(table.frame.tolist(), table.track_id.tolist(), strict=True))


# ------------------------------------------------------------------------------ cameras
def _look_at(
    position: NDArray[np.float64], target: NDArray[np.float64], fov: float, width: int, height: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(K, R, t)`` of the look-at camera the site places (``multicam.look_at_camera``)."""
    return pinhole_matrices(look_at_camera("c", width, height, fov, position, target))


def test_look_at_puts_the_target_at_the_centre_and_up_up() -> None:
    position, target = np.array([3.0, 20.0, 8.0]), np.array([-5.0, 14.0, 0.0])
    intrinsics, rotation, translation = _look_at(position, target, 60.0, 640, 360)
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)

    def pixel(point: NDArray[np.float64]) -> NDArray[np.float64]:
        local = rotation @ point + translation
        assert local[2] > 0
        projected = intrinsics @ local
        return np.asarray(projected[:2] / projected[2], dtype=np.float64)

    assert np.allclose(pixel(target), [320, 180])
    assert pixel(target + np.array([0.0, 0.0, 1.0]))[1] < 180  # above the target: above the image centre
    right = np.cross(target - position, [0, 0, 1.0])  # the camera's right on the ground
    assert pixel(target + right / np.linalg.norm(right))[0] > 320
    assert np.isclose(intrinsics[0, 0], 320 / np.tan(np.radians(30)))


def test_spec_defaults_describe_the_demo_site() -> None:
    spec = SiteSpec()
    assert (spec.lot_length, spec.lot_width, spec.num_cameras, spec.fps, spec.duration) == (50, 30, 4, 10, 60)
    assert (spec.width, spec.height, spec.scenario, spec.num_frames) == (640, 360, "default", 600)
    with pytest.raises(ValueError):
        SiteSpec(scenario="fog")  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [2, 3, 4, 6])
def test_cameras_stand_on_poles_gate_first_exit_last(count: int) -> None:
    site = generate_site(SiteSpec(num_cameras=count, duration=5.0, num_vehicles=1, num_pedestrians=0), seed=2)
    roles = [camera.role for camera in site.cameras]
    assert roles == ["gate", *["rows"] * (count - 2), "exit"]
    assert site.camera_ids == tuple(f"c{i}" for i in range(1, count + 1))
    for camera in site.cameras:
        assert 6.0 <= camera.position[2] <= 10.0
        assert camera.camera.has_ground_calibration and camera.camera.fps == 10.0


def test_site_json_holds_calibrated_cameras_sessions_and_map(default_run: RenderedSite) -> None:
    payload = _site_json(default_run.root)
    cameras = [Camera.model_validate(entry) for entry in payload["cameras"]]
    assert cameras == [camera.camera for camera in default_run.site.cameras]
    assert payload["scenario"] == "default" and payload["num_frames"] == 300
    assert len(payload["map"]["spaces"]) >= 8 and payload["map"]["image"]["file"] == "site_map.png"
    assert (default_run.root / "site_map.png").stat().st_size > 0
    sessions = payload["sessions"]
    assert {"object_id", "entry_time", "exit_time"} <= set(sessions[0])
    for name in default_run.site.camera_ids:
        info = read_seqinfo(default_run.root / "gt" / name / "seqinfo.ini")
        assert (info.length, info.width, info.height, info.frame_rate) == (300, 320, 180, 5.0)


# ------------------------------------------------------------------------------ ground truth
def test_gt_boxes_are_the_projected_cuboids(default_run: RenderedSite) -> None:
    root = default_run.root
    payload = _site_json(root)
    cameras = {entry["id"]: Camera.model_validate(entry) for entry in payload["cameras"]}
    objects = {obj["id"]: obj for obj in payload["objects"]}
    positions = _trajectories(root)
    for name, camera in cameras.items():
        table = read_mot(root / "gt" / name / "gt" / "gt.txt")
        assert len(table) > 50
        assert set(np.unique(table.extra[:, 0]).tolist()) <= {PEDESTRIAN_CLASS, VEHICLE_CLASS}
        assert ((table.visibility >= 0) & (table.visibility <= 1)).all() and (table.score == 1).all()
        rows = {
            (f, i): box
            for f, i, box in zip(table.frame.tolist(), table.track_id.tolist(), table.xywh, strict=True)
        }
        compared = 0
        for (frame, obj), (x, y, heading) in positions.items():
            box = _box(camera, _corners(objects[obj], x, y, heading))
            if box is None:  # partly behind the camera: clipped at the near plane, not recomputed here
                continue
            width, height = box[2] - box[0], box[3] - box[1]
            if (frame, obj) in rows:
                expected = np.array([box[0], box[1], width, height])
                np.testing.assert_allclose(
                    rows[(frame, obj)], expected, atol=0.05, err_msg=f"{name} {frame} {obj}"
                )
                compared += 1
            else:  # absent only when (almost) nothing of it is in the image
                assert width < 1.05 or height < 1.05, (
                    f"{name}: object {obj} in view at frame {frame} has no row"
                )
        assert compared >= 0.95 * len(table)


def test_visibility_drops_where_objects_overlap(default_run: RenderedSite) -> None:
    visibility = np.concatenate([table.visibility for table in default_run.gt.values()])
    assert (visibility == 1).mean() > 0.5  # the default scene is mostly unoccluded ...
    assert (visibility < 0.9).sum() > 0  # ... but objects do pass behind one another


def test_mtmc_world_positions_are_the_ground_points(default_run: RenderedSite) -> None:
    table = read_mtmc(default_run.root / "gt" / "mtmc.txt")
    assert table.cameras() == default_run.site.camera_ids
    assert len(table) == sum(len(gt) for gt in default_run.gt.values())
    positions = _trajectories(default_run.root)
    expected = np.array(
        [positions[(f, i)][:2] for f, i in zip(table.frame.tolist(), table.obj_id.tolist(), strict=True)]
    )
    np.testing.assert_allclose(table.world_xy, expected, atol=1e-3)
    site = default_run.site
    column = {actor.id: n for n, actor in enumerate(site.actors)}
    exact = site.trajectories.position[table.frame - 1, [column[i] for i in table.obj_id.tolist()]]
    np.testing.assert_allclose(table.world_xy, exact, atol=1e-3)
    for name in table.cameras():  # the same boxes as the per-camera files
        np.testing.assert_array_equal(
            np.sort(table.for_camera(name).xywh, axis=0), np.sort(default_run.gt[name].xywh, axis=0)
        )


def test_overlapping_and_disjoint_camera_pairs(default_run: RenderedSite) -> None:
    gate, rows_west, rows_east, exit_ = (_sightings(default_run, name) for name in ("c1", "c2", "c3", "c4"))
    assert len(rows_west & rows_east) > 20  # the strip both row cameras watch
    assert not gate & exit_
    assert not gate & rows_west and not rows_east & exit_  # the gate and exit cameras do not see the rows
    pairs = {tuple(pair["cameras"]): pair for pair in _site_json(default_run.root)["camera_pairs"]}
    assert pairs[("c2", "c3")]["overlap"] and not pairs[("c1", "c4")]["overlap"]
    transit = pairs[("c1", "c2")]["transit_seconds"]  # gate to rows: seen apart, a little later
    assert transit["count"] >= 3 and 0 < transit["min"] <= transit["median"] < 10


def test_complete_parking_sessions(default_run: RenderedSite) -> None:
    site = default_run.site
    complete = [session for session in site.sessions if session.complete]
    assert len(complete) >= 3
    kinds = {actor.id: actor.kind for actor in site.actors}
    gate, exit_ = default_run.gt["c1"], default_run.gt["c4"]
    for session in complete:
        assert kinds[session.object_id] == "vehicle"
        assert session.entry_time is not None and session.exit_time is not None
        assert session.park_time is not None and session.leave_time is not None
        assert (
            0
            < session.entry_time
            < session.park_time
            < session.leave_time
            < session.exit_time
            < site.spec.duration
        )
        assert 8.0 <= session.leave_time - session.park_time <= 30.0
        seen_at_gate = (gate.frame[gate.track_id == session.object_id] - 1) / site.spec.fps
        seen_at_exit = (exit_.frame[exit_.track_id == session.object_id] - 1) / site.spec.fps
        assert np.abs(seen_at_gate - session.entry_time).min() < 2.0
        assert np.abs(seen_at_exit - session.exit_time).min() < 2.0
    spaces = [session.space_id for session in site.sessions]
    assert len(spaces) == len(set(spaces))


def test_motion_is_smooth_and_within_speed(default_run: RenderedSite) -> None:
    site = default_run.site
    trajectories = site.trajectories
    step = np.diff(trajectories.position, axis=0)
    moving = trajectories.active[1:] & trajectories.active[:-1]
    speed = np.linalg.norm(step, axis=-1)[moving] * site.spec.fps
    assert speed.max() < 6.0  # no teleports; vehicles drive at most 5.5 m/s
    kinds = np.array([actor.kind for actor in site.actors])
    walking = np.linalg.norm(step, axis=-1) * site.spec.fps
    assert walking[:, kinds == "pedestrian"][moving[:, kinds == "pedestrian"]].max() < 1.55


# ------------------------------------------------------------------------------ files and determinism
def test_same_seed_same_files_and_frames(tmp_path: Path) -> None:
    spec = SiteSpec(width=160, height=96, fps=5.0, duration=6.0, num_vehicles=3, num_pedestrians=2)
    first = simulate_site(tmp_path / "a", spec, seed=7)
    second = simulate_site(tmp_path / "b", spec, seed=7)
    files = ["site.json", "trajectories.csv", "site_map.png", "gt/mtmc.txt"]
    files += [f"gt/{name}/gt/gt.txt" for name in first.site.camera_ids]
    files += [f"gt/{name}/seqinfo.ini" for name in first.site.camera_ids]
    for name in files:
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes(), name
    for name, video in first.videos.items():
        with VideoFileSource(video) as a, VideoFileSource(second.videos[name]) as b:
            for frame_a, frame_b in zip(a, b, strict=True):
                assert np.abs(frame_a.image.astype(int) - frame_b.image.astype(int)).mean() < 0.5
    other = generate_site(spec, seed=8)
    assert other.to_dict() != first.site.to_dict()


def test_video_has_the_expected_frames_and_size(scenario_run: Callable[[Scenario], RenderedSite]) -> None:
    run = scenario_run("default")
    assert sorted(run.videos) == ["c1", "c2", "c3", "c4"]
    for name, video in run.videos.items():
        with VideoFileSource(video, camera_id=name) as source:
            frames = list(source)
        assert len(frames) == run.site.num_frames == 100
        assert {frame.size for frame in frames} == {(160, 96)}


# ------------------------------------------------------------------------------ scenarios
def _mean_brightness(video: Path) -> tuple[float, float]:
    with VideoFileSource(video) as source:
        images = np.stack([frame.image for frame in source]).astype(np.float64)
    return float(images.mean()), float(images.std(axis=(1, 2, 3)).mean())


def test_every_scenario_is_known() -> None:
    assert set(SCENARIOS) == {
        "default",
        "heavy_occlusion",
        "low_light",
        "camera_outage",
        "lookalike_vehicles",
        "pedestrian_crossing",
    }


def test_low_light_darkens_some_cameras(scenario_run: Callable[[Scenario], RenderedSite]) -> None:
    dark, default = scenario_run("low_light"), scenario_run("default")
    darkened = dark.site.scenario["cameras"]
    assert darkened and set(darkened) < set(dark.site.camera_ids)
    for name in dark.site.camera_ids:
        mean, contrast = _mean_brightness(dark.videos[name])
        mean_default, contrast_default = _mean_brightness(default.videos[name])
        if name in darkened:
            assert mean < 0.5 * mean_default and contrast < 0.6 * contrast_default
            assert dark.site.camera(name).lighting.noise > default.site.camera(name).lighting.noise
        else:
            assert abs(mean - mean_default) < 1.0
    assert dark.gt.keys() == default.gt.keys()  # the same scene: only the cameras changed


def test_camera_outage_sends_black_frames(scenario_run: Callable[[Scenario], RenderedSite]) -> None:
    run = scenario_run("camera_outage")
    (outage,) = _site_json(run.root)["outages"]
    name, (first, last) = outage["camera"], outage["frames"]
    assert name == run.site.scenario["camera"] and run.site.camera(name).role == "rows"
    assert 1 < first < last < run.site.num_frames and outage["start_time"] == (first - 1) / run.site.spec.fps
    with VideoFileSource(run.videos[name]) as source:
        means = np.array([frame.image.mean() for frame in source])
    assert len(means) == run.site.num_frames
    assert (
        (means[first - 1 : last] < 2).all() and (means[: first - 1] > 20).all() and (means[last:] > 20).all()
    )
    frames = run.gt[name].frame
    assert not ((frames >= first) & (frames <= last)).any()
    assert ((frames < first) | (frames > last)).any()


def test_lookalike_vehicles_share_a_colour(scenario_run: Callable[[Scenario], RenderedSite]) -> None:
    run = scenario_run("lookalike_vehicles")
    ids = run.site.scenario["vehicle_ids"]
    assert len(ids) >= 3
    colours = {actor.id: np.array(actor.colour, dtype=float) for actor in run.site.actors}
    group = np.stack([colours[i] for i in ids])
    assert np.abs(group[:, None] - group[None]).max() <= 8
    default = scenario_run("default").site
    others = np.stack([np.array(a.colour, dtype=float) for a in default.actors if a.kind == "vehicle"])
    gaps = np.abs(others[:, None] - others[None]).max(axis=-1) + np.eye(len(others)) * 1e3
    assert gaps.min() > 20  # by default every vehicle has its own colour


def test_heavy_occlusion_parks_vans_in_front_of_a_camera(
    scenario_run: Callable[[Scenario], RenderedSite],
) -> None:
    run, default = scenario_run("heavy_occlusion"), scenario_run("default")
    assert len(run.site.actors) > len(default.site.actors) + 4
    column = {actor.id: n for n, actor in enumerate(run.site.actors)}
    for van in run.site.scenario["parked_vans"]:
        track = run.site.trajectories.position[:, column[van]]
        assert np.ptp(track, axis=0).max() == 0 and run.site.trajectories.active[:, column[van]].all()
    watched = run.site.scenario["camera"]

    def occluded(result: RenderedSite) -> float:
        return float((result.gt[watched].visibility < 0.7).mean())

    assert occluded(run) > 2 * occluded(default) and occluded(run) > 0.05
    gt = run.gt[watched]
    kinds = {actor.id: actor.kind for actor in run.site.actors}
    passing = [
        i
        for i in set(gt.track_id.tolist())
        if kinds[i] == "vehicle" and i not in run.site.scenario["parked_vans"]
    ]
    assert min(gt.visibility[gt.track_id == i].min() for i in passing) < 0.3  # a car driving behind the vans


def test_pedestrian_crosses_in_front_of_a_stopped_vehicle(
    scenario_run: Callable[[Scenario], RenderedSite],
) -> None:
    run = scenario_run("pedestrian_crossing")
    details = run.site.scenario
    person, vehicle, camera = details["pedestrian_id"], details["vehicle_id"], details["camera"]
    assert run.site.camera(camera).role == "gate"
    column = {actor.id: n for n, actor in enumerate(run.site.actors)}
    trajectories = run.site.trajectories
    both = trajectories.active[:, column[person]] & trajectories.active[:, column[vehicle]]
    gap = np.linalg.norm(
        trajectories.position[both, column[person]] - trajectories.position[both, column[vehicle]], axis=-1
    )
    assert 2.0 < gap.min() < 4.5  # right in front of it, without touching
    gt = run.gt[camera]
    frames = set(gt.frame[gt.track_id == person].tolist()) & set(gt.frame[gt.track_id == vehicle].tolist())
    assert frames
    closest = np.inf
    for frame in frames:
        a = gt.xywh[(gt.frame == frame) & (gt.track_id == person)][0]
        b = gt.xywh[(gt.frame == frame) & (gt.track_id == vehicle)][0]
        apart = max(a[0] - (b[0] + b[2]), b[0] - (a[0] + a[2]), a[1] - (b[1] + b[3]), b[1] - (a[1] + a[3]))
        closest = min(closest, apart)
    assert closest < 3.0  # in the image the two (nearly) touch: one blob for a motion detector


def test_render_without_video_writes_the_same_ground_truth(tmp_path: Path) -> None:
    site = generate_site(SiteSpec(width=160, height=96, fps=5.0, duration=4.0, num_vehicles=2), seed=1)
    with_video = render_site(site, tmp_path / "video")
    without = render_site(site, tmp_path / "none", write_video=False)
    assert without.videos == {} and not list((tmp_path / "none").glob("*.mp4"))
    for name in site.camera_ids:
        assert with_video.gt_paths[name].read_bytes() == without.gt_paths[name].read_bytes()


def _clip_near(polygon: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sutherland-Hodgman against the plane ``z = NEAR`` (camera coordinates), written afresh."""
    out: list[NDArray[np.float64]] = []
    for start, end in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        if start[2] >= NEAR:
            out.append(start)
        if (start[2] - NEAR) * (end[2] - NEAR) < 0:
            out.append(start + (end - start) * (NEAR - start[2]) / (end[2] - start[2]))
    return np.array(out).reshape(-1, 3)


def test_objects_across_the_near_plane_are_clipped(tmp_path: Path) -> None:
    """A camera at a van's flank, level with it: half the van is behind the camera."""
    site = generate_site(SiteSpec(scenario="heavy_occlusion", **TINY), seed=4)
    van = next(actor for actor in site.actors if actor.id == site.scenario["parked_vans"][0])
    column = site.actors.index(van)
    x, y = site.trajectories.position[0, column]
    position, target = np.array([x + 2.5, y, 1.2]), np.array([x + 2.5, y - 10.0, 1.2])
    intrinsics, rotation, translation = _look_at(position, target, 90.0, 160, 96)
    flank = Camera(
        id="c1",
        width=160,
        height=96,
        fps=5.0,
        intrinsics=intrinsics.tolist(),
        rotation=rotation.tolist(),
        translation=translation.tolist(),
    )
    original = site.cameras[0]
    camera = replace(original, camera=flank, position=tuple(position.tolist()), target=tuple(target.tolist()))
    run = render_site(replace(site, cameras=(camera,)), tmp_path, write_video=False)
    rows = run.gt["c1"]
    mine = rows.xywh[rows.track_id == van.id]
    assert len(mine) == site.num_frames  # parked all along, always half in view
    corners = _corners(van.to_dict(), float(x), float(y), float(site.trajectories.heading[0, column]))
    local = corners @ rotation.T + translation
    assert local[:, 2].min() < 0 < local[:, 2].max()
    low, high = np.full(2, np.inf), np.full(2, -np.inf)
    for part in range(len(van.parts)):
        box = local[8 * part : 8 * part + 8]
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            for side in (0, 1):
                ring = [(0, 0), (0, 1), (1, 1), (1, 0)]
                index = [side << (2 - axis) | p << (2 - others[0]) | q << (2 - others[1]) for p, q in ring]
                face = _clip_near(box[index])
                if len(face):
                    projected = face @ intrinsics.T
                    uv = projected[:, :2] / projected[:, 2:]
                    low, high = np.minimum(low, uv.min(axis=0)), np.maximum(high, uv.max(axis=0))
    low, high = np.clip(low, 0, [160, 96]), np.clip(high, 0, [160, 96])
    np.testing.assert_allclose(mine[0], [*low, *(high - low)], atol=0.02)
    visibility = rows.visibility[rows.track_id == van.id]
    assert ((visibility > 0) & (visibility <= 1)).all()


def test_empty_view_is_the_background_of_the_video(tmp_path: Path) -> None:
    spec = SiteSpec(width=160, height=96, fps=5.0, duration=2.0, num_vehicles=0, num_pedestrians=0, noise=0.0)
    run = simulate_site(tmp_path, spec, seed=3)
    assert all(len(table) == 0 for table in run.gt.values())
    plates = {camera.id: empty_view(run.site, camera) for camera in run.site.cameras}
    for name, plate in plates.items():
        assert plate.shape == (96, 160, 3) and plate.dtype == np.uint8
        with VideoFileSource(run.videos[name]) as source:
            frame = next(iter(source)).image.astype(int)
        assert np.abs(frame - plate).mean() < 6.0  # the same picture, up to compression
        for other, view in plates.items():
            if other != name:
                assert np.abs(frame - view).mean() > 3 * np.abs(frame - plate).mean()
