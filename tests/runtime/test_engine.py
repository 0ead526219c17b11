"""The runtime graph on real rendered video: ``crossview run``, the demo and the engine agree, runs
are deterministic, a dead camera is reported, dead feeds are skipped, memory is windowed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.demo import DemoConfig, run_demo
from crossview.eval.mtmc import evaluate_mtmc
from crossview.io.formats.mot import read_mot
from crossview.io.formats.mtmc import MtmcTable, read_mtmc
from crossview.multicam.fusion import GroundFusion
from crossview.multicam.geometry import look_at_camera
from crossview.multicam.topology import CameraTopology, overlaps_from_geometry
from crossview.runtime.engine import GROUND_XY, FinishedTrack, Sink, SiteStage, TrackedFrame
from crossview.runtime.run import open_camera_source, run_site
from crossview.runtime.sinks import MtmcSink
from crossview.runtime.site import SiteError, SiteFile, load_site, parse_site
from crossview.search.faiss_index import FaissIndex
from crossview.serve.store import ServiceStore
from crossview.sim.site import SiteSpec, generate_site, render_site
from crossview.track.factory import make_tracker
from tests.serve.conftest import ServerProcess, auth, encoded, make_key, wait_until


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered two-camera parking site (8 s at 10 fps) and its site file."""
    root = tmp_path_factory.mktemp("site")
    site = generate_site(SiteSpec(num_cameras=2, duration=8.0), seed=3)
    videos = render_site(site, root).videos
    cameras = []
    for camera in site.cameras:
        calibration = {
            "K": camera.camera.intrinsics,
            "R": camera.camera.rotation,
            "t": camera.camera.translation,
        }
        cameras.append({"id": camera.id, "source": videos[camera.id].name, "calibration": calibration})
    (root / "site.yaml").write_text(yaml.safe_dump({"name": "two", "cameras": cameras}))
    return root


class Located(Sink):
    """The frames the sinks see: per row, the global id and ground position the site stage wrote."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, tuple[float, ...]], tuple[int, float, float]] = {}

    def frame(self, tracked: TrackedFrame) -> None:
        detections = tracked.detections
        ground = detections.data[GROUND_XY]
        for row in np.flatnonzero(detections.tracker_id >= 0).tolist():
            box = tuple(round(float(v), 1) for v in detections.xywh[row])
            key = (tracked.camera_id, tracked.index + 1, box)
            assert key not in self.rows
            self.rows[key] = (int(detections.global_id[row]), *map(float, ground[row]))


def test_run_writes_every_output_and_is_deterministic(rendered: Path, tmp_path: Path) -> None:
    site = load_site(rendered / "site.yaml")
    located = Located()
    first = run_site(site, tmp_path / "a", sinks=[located])
    second = run_site(site, tmp_path / "b")
    assert (tmp_path / "a" / "mtmc.txt").read_text() == (tmp_path / "b" / "mtmc.txt").read_text()
    mtmc = read_mtmc(tmp_path / "a" / "mtmc.txt")
    assert len(mtmc.frame) > 50 and set(mtmc.camera_names) <= {"c1", "c2"}
    placed = np.all(np.isfinite(mtmc.world_xy), axis=1)
    assert placed.mean() > 0.9  # boxes placed on the ground, in site metres
    # the frames every sink sees carry the same ground positions, and the global id as soon as
    # their track has one (rows before its 5th and before the next association pass have -1)
    labelled = agreed = 0
    for camera, obj, frame, box, world in zip(
        mtmc.camera.tolist(), mtmc.obj_id, mtmc.frame, mtmc.xywh, mtmc.world_xy, strict=True
    ):
        key = (mtmc.camera_names[camera], int(frame), tuple(round(float(v), 1) for v in box))
        global_id, x, y = located.rows[key]
        labelled += global_id >= 0
        agreed += global_id == obj - 1  # a later correction may have moved the track since
        assert np.allclose([x, y], np.where(world == -1, np.nan, world), atol=0.01, equal_nan=True)
    assert labelled > 0.6 * len(mtmc.frame) and agreed > 0.9 * labelled
    assert first.site.associator.identities == second.site.associator.identities > 0
    tracks = {camera: read_mot(tmp_path / "a" / "tracks" / f"{camera}.txt") for camera in ("c1", "c2")}
    rows = sum(len(table.frame) for table in tracks.values())
    # every tracked box of an associated track has its global id; tracks under 5 rows have none
    assert 0.95 * rows <= len(mtmc.frame) <= rows
    for table in tracks.values():
        assert len(table.frame) == 0 or table.frame.min() >= 1
        assert set(np.unique(table.extra[:, 0]).tolist()) <= {0.0}  # the class column: motion's class
    figures = json.loads((tmp_path / "a" / "run.json").read_text())
    assert (
        figures["cameras"]["c1"]["frames"] == 80 and figures["global_ids"] == first.site.associator.identities
    )
    assert set(figures["latency_ms"]) == {"detect", "embed", "track", "total", "associate (per period)"}
    thumbnails = sorted((tmp_path / "a" / "thumbnails").glob("*.jpg"))
    assert 0 < len(thumbnails) <= first.site.associator.identities
    assert cv2.imread(str(thumbnails[0])) is not None
    index = FaissIndex(tmp_path / "a" / "index", 480, factory="Flat")
    try:
        assert index.count() >= len(set(mtmc.obj_id.tolist()))
    finally:
        index.close()


def identities_of_rows(path: Path) -> set[frozenset[tuple[str, int, float, float]]]:
    """The global tracks of an MTMC file: for each global id, the set of its boxes (camera, frame,
    x, y), so that two runs compare whatever numbers their ids got."""
    table = read_mtmc(path)
    grouped: dict[int, set[tuple[str, int, float, float]]] = {}
    for camera, obj, frame, (x, y, _, _) in zip(
        table.camera.tolist(), table.obj_id.tolist(), table.frame.tolist(), table.xywh.tolist(), strict=True
    ):
        grouped.setdefault(obj, set()).add((table.camera_names[camera], frame, round(x, 1), round(y, 1)))
    return {frozenset(boxes) for boxes in grouped.values()}


def identities_of_service(data_dir: Path) -> set[frozenset[tuple[str, int, float, float]]]:
    """The same, from a service's store: each global id's tracks and their stored boxes."""
    store = ServiceStore(data_dir / "service.sqlite")
    try:
        found = set()
        for _, members in store.global_tracks(limit=10_000):
            boxes = {
                (row.camera_id, row.frame_index + 1, round(row.xyxy[0], 1), round(row.xyxy[1], 1))
                for track in members
                for row in store.detections_of(track.camera_id, track.track_id)
            }
            found.add(frozenset(boxes))
        return found
    finally:
        store.close()


def push_videos(url: str, token: str, site: SiteFile, chunk: int = 10) -> int:
    """Every camera's video pushed to the service as PNG frames over HTTP, ``chunk`` frames per
    request, the cameras interleaved in time as live cameras send; the frames pushed."""
    sources = {spec.id: open_camera_source(site, spec) for spec in site.cameras}
    frames = {camera: list(source) for camera, source in sources.items() if source is not None}
    pushed = 0
    for start in range(0, max(len(f) for f in frames.values()), chunk):
        for camera, sequence in frames.items():
            batch = sequence[start : start + chunk]
            if not batch:
                continue
            files = [("images", (f"{f.index}.png", encoded(f.image), "image/png")) for f in batch]
            form = {
                "camera_id": camera,
                "timestamps": ",".join(repr(f.timestamp) for f in batch),  # the video's clock, exactly
                "frame_indices": ",".join(str(f.index) for f in batch),
            }
            answer = httpx.post(
                f"{url}/v1/ingest/frames", data=form, files=files, headers=auth(token), timeout=60
            )
            assert answer.status_code == 202, answer.text
            pushed += len(batch)
    return pushed


def test_run_demo_and_service_give_the_same_global_tracks(tmp_path: Path) -> None:
    """One input, three ways in: ``crossview demo``, ``crossview run`` on the demo's site file, and
    ``crossview serve --site`` with the same cameras declared ``push`` and their frames pushed over
    HTTP. All three run the one runtime, so they find the same global tracks."""
    result = run_demo(tmp_path / "demo", DemoConfig(cameras=3, seconds=15.0, seed=2))
    site_file = tmp_path / "demo" / "site" / "site.yaml"
    assert site_file.is_file() and load_site(site_file).cameras[0].background is not None
    again = subprocess.run(
        [sys.executable, "-m", "crossview.cli", "run", str(site_file), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "global identities" in again.stdout
    demo_rows = (tmp_path / "demo" / "run" / "mtmc.txt").read_text()
    assert demo_rows and (tmp_path / "run" / "mtmc.txt").read_text() == demo_rows  # the same global tracks
    assert (
        result.figures["global_ids"] == json.loads((tmp_path / "run" / "run.json").read_text())["global_ids"]
    )
    expected = identities_of_rows(tmp_path / "run" / "mtmc.txt")
    assert any(len({camera for camera, *_ in boxes}) > 1 for boxes in expected)  # some span cameras

    pushed = yaml.safe_load(site_file.read_text())
    pulled = load_site(site_file)
    for camera, spec in zip(pushed["cameras"], pulled.cameras, strict=True):
        camera["source"], camera["fps"] = "push", 10.0
        camera["resolution"] = list(pulled.resolution(spec))  # a push camera states its frame size
    push_file = site_file.with_name("push.yaml")
    push_file.write_text(yaml.safe_dump(pushed, sort_keys=False))
    data_dir = tmp_path / "service"
    server = ServerProcess(data_dir, "--site", str(push_file))
    try:
        token, _ = make_key(data_dir, "cameras", "ingest,read")
        frames = push_videos(server.url, token, load_site(site_file))
        assert frames == 3 * 150
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()["batches_queued"] == 0,
            timeout=120,
            what="every pushed frame to be processed",
        )
    finally:
        assert server.terminate()  # the trackers end with the process: every track finished
    assert identities_of_service(data_dir) == expected

    # and the service pulling the site's videos itself, from the demo's own site file
    data_dir = tmp_path / "pulling"
    server = ServerProcess(data_dir, "--site", str(site_file))
    try:
        token, _ = make_key(data_dir, "viewer", "read")

        def pulled() -> dict[str, dict[str, object]]:
            answer: dict[str, dict[str, object]] = httpx.get(
                f"{server.url}/v1/stats", headers=auth(token)
            ).json()["pulled"]
            return answer

        wait_until(lambda: not any(c["running"] for c in pulled().values()), timeout=120, what="the videos")
        assert {c: (v["frames"], v["stopped"]) for c, v in pulled().items()} == {
            camera: (150, "its source ended") for camera in ("c1", "c2", "c3")
        }
        refused = httpx.post(
            f"{server.url}/v1/ingest/frames",
            data={"camera_id": "c1", "timestamps": "100.0"},
            files=[("images", ("x.png", encoded(np.zeros((8, 8, 3), np.uint8)), "image/png"))],
            headers=auth(make_key(data_dir, "pusher", "ingest")[0]),
        )
        assert refused.status_code == 422 and "pulled by the service" in refused.text
    finally:
        assert server.terminate()
    assert identities_of_service(data_dir) == expected


def test_a_camera_that_fails_is_reported_and_the_others_go_on(rendered: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4000))
    data = yaml.safe_load((rendered / "site.yaml").read_text())
    data["cameras"][0]["source"] = str(rendered / data["cameras"][0]["source"])
    data["cameras"].append({"id": "broken", "source": str(tmp_path / "broken.mp4")})
    warnings: list[str] = []
    result = run_site(parse_site(data, base=rendered), tmp_path / "out", warn=warnings.append)
    assert result.cameras["broken"].error is not None and result.cameras["broken"].frames == 0
    assert any(w.startswith("camera broken stopped:") for w in warnings)
    assert result.cameras["c1"].frames == 80 and result.cameras["c2"].frames == 80


def test_dead_feeds_are_skipped_and_reported(rendered: Path, tmp_path: Path) -> None:
    source = cv2.VideoCapture(str(rendered / "c1.mp4"))
    writer = cv2.VideoWriter(str(tmp_path / "c1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 360))
    for index in range(80):
        ok, image = source.read()
        assert ok
        writer.write(np.zeros_like(image) if 30 <= index < 45 else image)
    writer.release()
    source.release()
    data = yaml.safe_load((rendered / "site.yaml").read_text())
    data["cameras"] = [dict(data["cameras"][0], source=str(tmp_path / "c1.mp4"))]
    warnings: list[str] = []
    result = run_site(parse_site(data, base=rendered), None, warn=warnings.append)
    assert result.cameras["c1"].skipped_blank == 15 and result.cameras["c1"].frames == 65
    assert any("went silent (blank frames) at 3.0 s" in w for w in warnings)
    assert any("is back at 4.5 s after 1.5 s of silence" in w for w in warnings)


def test_push_cameras_are_left_to_the_service() -> None:
    site = parse_site({"cameras": [{"id": "kiosk", "source": "push"}]})
    with pytest.raises(ValueError, match="no camera with a source to pull"):
        run_site(site, None)


class Collect(Sink):
    def __init__(self) -> None:
        self.finished_tracks: list[FinishedTrack] = []
        self.assigned_ids: list[int] = []

    def assigned(self, tracklet: object, global_id: int) -> None:
        self.assigned_ids.append(global_id)

    def finished(self, track: FinishedTrack) -> None:
        self.finished_tracks.append(track)


def test_the_site_stage_forgets_ended_tracks_so_memory_stays_flat() -> None:
    collect = Collect()
    stage = SiteStage(
        {}, None, _association(), sinks=[collect], min_samples=3, forget_after_s=2.0, memory_s=4.0
    )
    remembered = []
    image = np.zeros((48, 64, 3), np.uint8)
    held = []
    for index in range(600):  # 60 s at 10 fps; a new object every 2 s, each seen for 1 s
        t = index / 10
        track = index // 20
        visible = index % 20 < 10
        detections = Detections(
            xyxy=np.array([[10, 10, 20, 30]] if visible else np.zeros((0, 4)), np.float32),
            confidence=np.ones(1 if visible else 0, np.float32),
            tracker_id=np.array([track] if visible else [], np.int64),
            embedding=np.eye(32, dtype=np.float32)[[track % 32] if visible else []],  # each its own look
            camera_id="a",
            frame_index=index,
            timestamp=t,
        )
        stage.apply(TrackedFrame.of(Frame(image, "a", index, t), detections))
        held.append(len(stage.builders["a"]._tracks))
        remembered.append(stage.associator.live_identities)
    stage.close()
    assert max(held[100:]) <= 3  # recent tracks only, however long the run
    assert max(remembered[100:]) <= 4 and stage.associator.identities == 30  # and recent identities
    assert len(collect.finished_tracks) == 30 and len(collect.assigned_ids) == 30
    assert all(len(t.frames) == 10 and t.global_id is not None for t in collect.finished_tracks)


def _association():  # type: ignore[no-untyped-def]
    from crossview.multicam.association import AssociationConfig

    return AssociationConfig(max_cost=0.01)


POSE2SIM = Path(__file__).resolve().parents[3] / "shared" / "data" / "pose2sim"
YOLOX = POSE2SIM.parents[1] / "models" / "yolox_nano.onnx"


@pytest.mark.skipif(
    not (POSE2SIM.is_dir() and YOLOX.is_file()),
    reason="needs ../shared/data/pose2sim and the YOLOX-Nano model",
)
def test_a_real_room_gives_each_person_one_identity_across_its_views(tmp_path: Path) -> None:
    calibration = json.loads((POSE2SIM / "cameras.json").read_text())
    cameras = [
        {
            "id": camera["id"],
            "source": str(POSE2SIM / "videos" / f"{camera['id']}.mp4"),
            "calibration": {
                "K": camera["K"],
                "distortion": camera["distortion"],
                "R": camera["R"],
                "t": camera["t"],
            },
        }
        for camera in calibration["cameras"]
    ]
    site = parse_site(
        {
            "name": "room",
            "cameras": cameras,
            "models": {"detector": f"yolox:{YOLOX}", "embedder": "color"},
            "classes": {0: "person"},
            "tracker": {"name": "bytetrack"},
            "topology": {"overlap_range_m": 8.0},
        }
    )
    result = run_site(site, tmp_path / "out", snapshot=50)
    table = read_mtmc(tmp_path / "out" / "mtmc.txt")
    seen: dict[int, set[str]] = {}
    rows: dict[int, int] = {}
    for camera, identity in zip(table.camera.tolist(), table.obj_id.tolist(), strict=True):
        seen.setdefault(identity, set()).add(table.camera_names[camera])
        rows[identity] = rows.get(identity, 0) + 1
    # four calibrated views of one room: 'auto' fuses them on the ground
    assert [group.id for group in result.site.groups] == ["cam01+cam02+cam03+cam04"]
    assert any("fused on the ground" in w for w in result.warnings)
    # the two actors, each in all four views, and the bystander in the two that see him, hold
    # nearly every row (the rest: short fragments where views of one actor disagree)
    main = sorted(rows, key=rows.__getitem__)[-3:]
    assert sorted(len(seen[identity]) for identity in main) == [2, 4, 4]
    assert sum(rows[identity] for identity in main) > 0.9 * len(table.obj_id)
    assert result.site.identities <= 10
    assert sorted(p.name for p in (tmp_path / "out" / "snapshots").iterdir()) == [
        "cam01.jpg",
        "cam02.jpg",
        "cam03.jpg",
        "cam04.jpg",
        "map.png",
    ]


def test_frames_whose_clock_goes_back_are_skipped_and_reported() -> None:
    from crossview.embed.color import ColorHistogramEmbedder
    from crossview.io.sources import SourceStats
    from crossview.runtime.engine import CameraStage
    from crossview.track.factory import make_tracker

    class Repeating:  # a real frame iterator whose clock repeats itself, as a file with duplicate PTS does
        camera_id = "a"
        stats = SourceStats()

        def __iter__(self):  # type: ignore[no-untyped-def]
            image = np.full((48, 64, 3), 90, np.uint8)
            for index, t in enumerate((0.0, 0.1, 0.1, 0.2, 0.15, 0.3)):
                yield Frame(image, "a", index, t)

    class Nothing:
        def detect(self, frames):  # type: ignore[no-untyped-def]
            return [
                Detections.empty(camera_id=f.camera_id, frame_index=f.index, timestamp=f.timestamp)
                for f in frames
            ]

    warnings: list[str] = []
    stage = CameraStage(
        Repeating(), Nothing(), ColorHistogramEmbedder(), make_tracker("sort"), warn=warnings.append
    )  # type: ignore[arg-type]
    times = [tracked.timestamp for tracked in stage.frames()]
    assert times == [0.0, 0.1, 0.2, 0.3] and stage.stats.skipped_out_of_order == 2
    assert len(warnings) == 1 and "is not after the previous one" in warnings[0]


def crowd_frames(people: int, seed: int) -> tuple[list[TrackedFrame], MtmcTable, tuple[Camera, ...]]:
    """A 2 fps crowd on a square seen by 6 overlapping cameras, as camera stages would send it
    (one appearance for everyone: only where and when tell people apart)."""
    from tests.multicam.test_fusion import Noise, observe, walk

    crowd = walk(people, 20.0, 2.0, seed=seed, cameras=6)
    instants, truth, cameras = observe(crowd, Noise(jitter=0.02, miss=0.05), seed=seed)
    image = np.zeros((8, 8, 3), np.uint8)
    frames = []
    for index, (time_s, views) in enumerate(zip(crowd.times.tolist(), instants, strict=True)):
        for camera in cameras:
            detections = views.get(camera.id, Detections.empty()).replace(
                embedding=np.ones((len(views.get(camera.id, [])), 4), np.float32),
                camera_id=camera.id,
                frame_index=index,
                timestamp=time_s,
            )
            frames.append(TrackedFrame.of(Frame(image, camera.id, index, time_s), detections))
    return frames, truth, cameras


def test_overlapping_views_are_fused_on_the_ground_by_the_site_stage() -> None:
    """The site stage fuses a crowd's overlapping views (the choice ``auto`` makes for such a
    site) and every output gets the fused identities; joining per-camera tracklets instead, on the
    same boxes at 2 fps, loses most identities."""
    frames, truth, cameras = crowd_frames(20, seed=11)
    topology = CameraTopology(
        cameras=tuple(c.id for c in cameras), overlaps=overlaps_from_geometry(cameras, max_range_m=30.0)
    )
    site = parse_site({"cameras": [{"id": c.id, "source": "push"} for c in cameras]})
    assert site.fusion.mode == "auto"
    scores = {}
    for fused in (True, False):
        outputs = MtmcSink()
        stage = SiteStage(
            {c.id: c for c in cameras},
            topology,
            site.association,
            sinks=[outputs],
            min_samples=2,
            fusion=[GroundFusion(cameras)] if fused else [],
        )
        trackers = {c.id: make_tracker("sort", frame_rate=2.0) for c in cameras}
        for tracked in frames:
            stage.apply(replace(tracked, detections=trackers[tracked.camera_id].update(tracked.detections)))
        stage.close()
        scores[fused] = evaluate_mtmc(truth, outputs.table).overall.summary()["IDF1"]
        if fused:
            assert stage.identities == len(set(outputs.table.obj_id.tolist())) < 40
    assert scores[True] > 0.8 and scores[True] > scores[False] + 0.3, scores


def test_a_mixed_site_fuses_its_overlapping_views_and_joins_them_with_a_separate_camera() -> None:
    """Three people cross a square watched by two overlapping cameras, then, 4 s later, walk past a
    camera 60 m away. The square's views are fused (both views of a person carry one ground track
    id), and the ground tracks are joined by appearance with the far camera's tracks: one global
    id per person over all three cameras."""
    from tests.multicam.test_fusion import cylinder_boxes

    square = [
        look_at_camera(name, 640, 480, 60, position=(x, 0.0, 4.0), target=(0, 0, 0))
        for name, x in (("a", -9.0), ("b", 9.0))
    ]
    far = look_at_camera("c", 640, 480, 60, position=(60.0, -9.0, 4.0), target=(60.0, 0.0, 0.0))
    cameras = (*square, far)
    fps, people = 5.0, 3
    rng = np.random.default_rng(4)
    looks = np.eye(16, dtype=np.float32)[:people]  # each person's appearance, in every camera
    truth_cameras: list[str] = []
    truth_rows: list[list[float]] = []
    frames: list[TrackedFrame] = []
    image = np.zeros((8, 8, 3), np.uint8)
    for index in range(round(20 * fps)):
        t = index / fps
        if t < 8:  # on the square, a metre and a half apart, walking in parallel
            where = np.column_stack([np.linspace(-1.5, 1.5, people), np.full(people, -2.4 + 0.6 * t)])
            watching = square
        elif t >= 12:  # past the far camera
            where = np.column_stack([np.linspace(58.5, 61.5, people), np.full(people, -2.4 + 0.6 * (t - 12))])
            watching = [far]
        else:
            where, watching = np.zeros((0, 2)), []
        for camera in cameras:
            boxes, seen = np.zeros((0, 4)), np.zeros(0, bool)
            if camera in watching:
                boxes, seen = cylinder_boxes(camera, where, np.full(people, 1.75), 0.25)
            who = np.flatnonzero(seen)
            for person, box in zip(who.tolist(), boxes[seen].tolist(), strict=True):
                truth_cameras.append(camera.id)
                truth_rows.append(
                    [person + 1, index + 1, box[0], box[1], box[2] - box[0], box[3] - box[1], -1, -1]
                )
            found = Detections(
                xyxy=boxes[seen],
                class_id=np.zeros(len(who), np.int64),
                embedding=looks[who] + rng.normal(0, 0.05, (len(who), 16)).astype(np.float32),
                data={"person": who},
                camera_id=camera.id,
                frame_index=index,
                timestamp=t,
            )
            frames.append(TrackedFrame.of(Frame(image, camera.id, index, t), found))
    truth = MtmcTable.from_rows(truth_cameras, np.array(truth_rows).reshape(-1, 8))
    site = parse_site({"cameras": [{"id": c.id, "source": "push"} for c in cameras]})
    topology = CameraTopology(cameras=("a", "b", "c"), overlaps=overlaps_from_geometry(cameras))
    assert topology.overlaps == {("a", "b")}
    groups = site.fusion_groups(list(cameras), topology, motion=False)  # a detector's boxes
    assert groups == [("a", "b")]

    class Views(Sink):
        def __init__(self) -> None:
            self.rows: dict[tuple[int, str], Detections] = {}

        def frame(self, tracked: TrackedFrame) -> None:
            self.rows[(tracked.index, tracked.camera_id)] = tracked.detections

    outputs, views = MtmcSink(), Views()
    stage = SiteStage(
        {c.id: c for c in cameras},
        topology,
        site.association,
        sinks=[outputs, views],
        fusion=[GroundFusion(square)],
    )
    trackers = {c.id: make_tracker("sort", frame_rate=fps) for c in cameras}
    for tracked in frames:
        stage.apply(replace(tracked, detections=trackers[tracked.camera_id].update(tracked.detections)))
    stage.close()
    assert [group.id for group in stage.groups] == ["a+b"]
    assert stage.identities == people
    assert evaluate_mtmc(truth, outputs.table).overall.summary()["IDF1"] > 0.95
    # both views of a person on the square carry its ground track's id, and the global id
    index = round(5 * fps)
    a, b = views.rows[(index, "a")], views.rows[(index, "b")]
    for person in range(people):
        in_a, in_b = a[a.data["person"] == person], b[b.data["person"] == person]
        assert in_a.tracker_id.tolist() == in_b.tracker_id.tolist() and in_a.tracker_id[0] >= 0
        assert in_a.global_id.tolist() == in_b.global_id.tolist() and in_a.global_id[0] >= 0


def test_auto_fuses_each_connected_group_of_calibrated_overlapping_views() -> None:
    square = [
        look_at_camera(f"c{n}", 640, 480, 60, position=(x, -8.0, 4.0), target=(0, 0, 0))
        for n, x in enumerate((-3.0, 0.0, 3.0))
    ]
    far = look_at_camera("far", 640, 480, 60, position=(200.0, -8.0, 4.0), target=(200.0, 0.0, 0.0))
    yard = [
        look_at_camera(f"y{n}", 640, 480, 60, position=(x, 92.0, 4.0), target=(100.0, 100.0, 0.0))
        for n, x in enumerate((98.0, 102.0))
    ]

    def spec(camera: Camera) -> dict[str, object]:
        pose = {"K": camera.intrinsics, "R": camera.rotation, "t": camera.translation}
        return {"id": camera.id, "source": "push", "resolution": [640, 480], "calibration": pose}

    def groups(specs: list[dict[str, object]], **extra: object) -> list[tuple[str, ...]]:
        site = parse_site({"cameras": specs, **extra})
        calibrated = site.calibrated_cameras()
        return site.fusion_groups(calibrated, site.topology_of(calibrated))

    yolox = {"models": {"detector": "yolox:yolox_nano.onnx"}}
    assert groups([spec(c) for c in square], **yolox) == [("c0", "c1", "c2")]  # one square, three views
    # the motion detector's blobs are not objects' boxes: 'auto' joins tracklets, 'fusion' still fuses
    assert groups([spec(c) for c in square]) == []
    assert groups([spec(c) for c in square], fusion={"mode": "fusion"}) == [("c0", "c1", "c2")]
    # a camera elsewhere and an uncalibrated one are joined as tracklets; a second square is fused apart
    mixed = [spec(far), *map(spec, yard), {"id": "door", "source": "push"}, *map(spec, square)]
    assert groups(mixed, **yolox) == [("y0", "y1"), ("c0", "c1", "c2")]
    assert groups([spec(c) for c in square], fusion={"mode": "tracklets"}, **yolox) == []
    assert groups([spec(c) for c in [*square, far]], fusion={"mode": "fusion"}) == [("c0", "c1", "c2", "far")]
    # the fusion's state is its live tracks: their life is bounded, and so is the instant
    with pytest.raises(
        SiteError, match=r"fusion.config.max_unseen_s: Input should be less than or equal to 600"
    ):
        parse_site({"cameras": [spec(square[0])], "fusion": {"config": {"max_unseen_s": 1e9}}})
    with pytest.raises(SiteError, match=r"fusion.sync_s: Input should be less than or equal to 1"):
        parse_site({"cameras": [spec(square[0])], "fusion": {"sync_s": 5}})
