"""The site file: every calibration form gives the same camera, every mistake names its camera and
field, and ``crossview site validate`` / ``crossview calibrate`` on real files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from crossview.multicam.geometry import GroundProjector, ground_homography, ground_to_image, look_at_camera
from crossview.runtime.check import check_site, leave_one_out
from crossview.runtime.site import (
    ImageFolderInput,
    PushInput,
    SiteError,
    SiteFile,
    StreamInput,
    VideoInput,
    load_site,
    parse_site,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
POSE2SIM = SHARED / "data" / "pose2sim"
PIXELS = np.array([[100.0, 400.0], [320.0, 300.0], [600.0, 470.0], [320.0, 479.0], [50.0, 250.0]])


def reference_camera() -> Any:
    """A real-looking camera: 4 m up, looking down the y axis at a point 10 m ahead."""
    return look_at_camera("gate", 640, 480, 60, position=(1.0, -2.0, 4.0), target=(1.5, 10.0, 0.0))


def ground_of(site: SiteFile, camera_id: str = "gate") -> np.ndarray:
    camera = site.calibrated(site.camera(camera_id))
    return GroundProjector(camera).to_ground(PIXELS)


def one_camera(calibration: dict[str, Any], **camera: Any) -> dict[str, Any]:
    return {
        "cameras": [
            {"id": "gate", "source": "push", "resolution": [640, 480], "calibration": calibration, **camera}
        ]
    }


def test_every_calibration_form_gives_the_same_ground(tmp_path: Path) -> None:
    camera = reference_camera()
    expected = GroundProjector(camera).to_ground(PIXELS)
    rotation = np.asarray(camera.rotation)
    rvec, _ = cv2.Rodrigues(rotation)
    pinhole = {"K": camera.intrinsics, "R": camera.rotation, "t": camera.translation}
    opencv_style = {"K": camera.intrinsics, "rvec": rvec.ravel().tolist(), "tvec": camera.translation}
    homography = {"homography": ground_homography(camera).tolist()}
    grid = np.array([[x, y] for x in (-4.0, 0.0, 4.0) for y in (6.0, 10.0, 16.0)])
    image = ground_to_image(camera, grid)
    pairs = [{"image": uv.tolist(), "ground": xy.tolist()} for uv, xy in zip(image, grid, strict=True)]
    storage = cv2.FileStorage(str(tmp_path / "gate.yml"), cv2.FILE_STORAGE_WRITE)
    storage.write("camera_matrix", np.asarray(camera.intrinsics))
    storage.write("distortion_coefficients", np.zeros((1, 5)))
    storage.write("rvec", rvec)
    storage.write("tvec", np.asarray(camera.translation).reshape(3, 1))
    storage.release()
    csv = tmp_path / "gate.csv"
    csv.write_text(
        "u,v,x,y\n"
        + "".join(f"{p['image'][0]},{p['image'][1]},{p['ground'][0]},{p['ground'][1]}\n" for p in pairs)
    )
    for calibration in (
        pinhole,
        opencv_style,
        homography,
        {"points": pairs},
        {"points": "gate.csv"},
        {"opencv": "gate.yml"},
    ):
        site = parse_site(one_camera(calibration), base=tmp_path)
        np.testing.assert_allclose(ground_of(site), expected, atol=1e-6, err_msg=str(list(calibration)))


def test_sources_in_long_and_short_forms() -> None:
    site = SiteFile.model_validate(
        {
            "cameras": [
                {"id": "a", "source": "videos/a.mp4"},
                {"id": "b", "source": {"images": "frames/b", "fps": 2}},
                {"id": "c", "source": "rtsp://user:secret@10.0.0.9/stream"},
                {"id": "d", "source": "push"},
                {"id": "e", "source": {"video": "e.mkv"}},
            ]
        }
    )
    kinds = [type(camera.source) for camera in site.cameras]
    assert kinds == [VideoInput, ImageFolderInput, StreamInput, PushInput, VideoInput]
    assert isinstance(site.cameras[1].source, ImageFolderInput) and site.cameras[1].source.fps == 2


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (
            lambda d: d["cameras"][0].update(colour="red"),
            "camera 'gate': colour: Extra inputs are not permitted",
        ),
        (lambda d: d.update(frames_per_second=3), "frames_per_second: Extra inputs are not permitted"),
        (lambda d: d["cameras"].append(dict(d["cameras"][0])), "ids must be unique, repeated: ['gate']"),
        (
            lambda d: d["cameras"][0].update(source={"images": "x"}),
            "camera 'gate': source.fps: Field required",
        ),
        (
            lambda d: d["cameras"][0].update(source="ftp://x/y"),
            "camera 'gate': source.url: a stream URL needs one of the schemes",
        ),
        (
            lambda d: d["cameras"][0].update(
                calibration={"K": [[1, 0, 0], [0, 1, 0]], "R": np.eye(3).tolist(), "t": [0, 0, 1]}
            ),
            "camera 'gate': calibration.K: List should have at least 3 items",
        ),
        (
            lambda d: d["cameras"][0]["calibration"].update(rvec=[0, 0, 0], tvec=[0, 0, 1]),
            "camera 'gate': calibration: give the pose as R and t, or as rvec and tvec (exactly one",
        ),
        (
            lambda d: d["cameras"][0].update(calibration={"focal": 800}),
            "camera 'gate': calibration: give one of: homography, K (with R and t, or rvec and tvec), points",
        ),
        (
            lambda d: d["cameras"][0]["calibration"].update(distortion=[0.1, 0.2]),
            "calibration.distortion: must hold 4, 5, 8, 12, 14",
        ),
        (lambda d: d.update(topology={"overlaps": [["gate", "dock"]]}), "names unknown camera(s) ['dock']"),
        (lambda d: d["cameras"][0].pop("id"), "cameras[0]: id: Field required"),
        (
            lambda d: d["cameras"][0].update(id="two words"),
            "camera 'two words': id: String should match pattern",
        ),
    ],
)
def test_mistakes_are_named_by_camera_and_field(mutation: Any, message: str) -> None:
    camera = reference_camera()
    data = one_camera({"K": camera.intrinsics, "R": camera.rotation, "t": camera.translation})
    mutation(data)
    with pytest.raises(SiteError) as caught:
        parse_site(data)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert "pydantic" not in str(caught.value) and "errors.pydantic.dev" not in str(caught.value)


def test_the_file_itself_is_checked(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("cameras:\n  - id: gate\n    source: [unclosed\n")
    with pytest.raises(SiteError, match=r"line \d+, column \d+"):
        load_site(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(SiteError, match="the top level must be a mapping with 'cameras'"):
        load_site(listed)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (5 * 1024 * 1024))
    with pytest.raises(SiteError, match="a site file may be at most"):
        load_site(huge)
    with pytest.raises(SiteError, match="cannot read it"):
        load_site(tmp_path / "missing.yaml")


def test_resolution_is_read_from_the_source_or_required(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000001.jpg"), np.zeros((360, 640, 3), np.uint8))
    video = tmp_path / "a.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(3):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    homography = {"homography": ground_homography(reference_camera()).tolist()}
    site = parse_site(
        {
            "cameras": [
                {"id": "a", "source": "a.mp4", "calibration": homography},
                {"id": "b", "source": {"images": "frames", "fps": 5}, "calibration": homography},
                {"id": "c", "source": "push", "calibration": homography},
            ]
        },
        base=tmp_path,
    )
    assert site.resolution(site.camera("a")) == (320, 240)
    assert site.resolution(site.camera("b")) == (640, 360)
    with pytest.raises(SiteError) as caught:
        site.calibrated_cameras()
    assert caught.value.problems == [
        "camera 'c': calibration: resolution: a push camera needs its resolution declared ([width, height])"
    ]


def test_validation_reports_fits_ground_and_overlaps(tmp_path: Path) -> None:
    gate, yard = (
        reference_camera(),
        look_at_camera("yard", 640, 480, 60, position=(2.0, 24.0, 4.0), target=(1.5, 12.0, 0.0)),
    )
    grid = np.array([[x, y] for x in (-3.0, 0.0, 3.0) for y in (6.0, 9.0, 13.0)])
    image = ground_to_image(gate, grid)
    image[4] += (30.0, -25.0)  # one pair clicked wrong
    pairs = [{"image": uv.tolist(), "ground": xy.tolist()} for uv, xy in zip(image, grid, strict=True)]
    four = [pairs[i] for i in (0, 2, 6, 8)]  # the corners of the grid
    sky = look_at_camera("sky", 640, 480, 60, position=(0, 0, 2), target=(0, 10, 6))
    data = {
        "name": "yard",
        "cameras": [
            {"id": "gate", "source": "push", "resolution": [640, 480], "calibration": {"points": pairs}},
            {
                "id": "yard",
                "source": "push",
                "resolution": [640, 480],
                "calibration": {"K": yard.intrinsics, "R": yard.rotation, "t": yard.translation},
            },
            {"id": "four", "source": "push", "resolution": [640, 480], "calibration": {"points": four}},
            {
                "id": "sky",
                "source": "push",
                "resolution": [640, 480],
                "calibration": {"K": sky.intrinsics, "R": sky.rotation, "t": sky.translation},
            },
            {"id": "dock", "source": "push"},
        ],
        "topology": {"overlaps": [["dock", "gate"]]},
        "models": {"detector": "yolox:models/yolox_nano.onnx"},
    }
    report = check_site(parse_site(data))
    by_id = {camera.id: camera for camera in report.cameras}
    gate_report = by_id["gate"]
    assert any("9 point pairs, 8 inliers" in line for line in gate_report.lines)
    assert any("leave-one-out error: median" in line for line in gate_report.lines)
    assert "calibration.points: pairs [4] are outliers, left out of the fit" in gate_report.warnings
    assert any("4 pairs determine the homography exactly" in w for w in by_id["four"].warnings)
    assert not any("rmse" in line for line in by_id["four"].lines)  # no "rmse 0.000" from 4 pairs
    assert any("sees no ground" in problem for problem in by_id["sky"].problems)
    assert by_id["dock"].warnings[0].startswith("no calibration")
    assert [(a, b) for a, b, _ in report.overlaps] == [("four", "gate"), ("four", "yard"), ("gate", "yard")]
    assert any("camera 'dock' overlaps 'gate' but has no calibration" in w for w in report.warnings)
    # the three overlapping calibrated views are fused; 'dock' (no calibration) and 'sky' join as tracklets
    assert (
        report.identities
        == "ground fusion of gate + yard + four; joined by tracklet association with sky, dock"
    )
    assert not report.ok and "not usable" in report.text()


def test_leave_one_out_finds_the_wrong_pair() -> None:
    camera = reference_camera()
    grid = np.array([[x, y] for x in (-3.0, -1.0, 1.0, 3.0) for y in (6.0, 10.0, 14.0)])
    image = ground_to_image(camera, grid)
    held = leave_one_out(image, grid, threshold_m=0.25)
    assert held is not None and np.nanmax(held) < 1e-6  # exact pairs predict each other exactly
    assert leave_one_out(image[:4], grid[:4], threshold_m=0.25) is None


def test_a_camera_below_the_ground_is_a_problem() -> None:
    camera = reference_camera()
    translation = np.asarray(camera.translation)
    flipped = (np.asarray(camera.rotation) @ np.array([0.0, 0.0, 8.0]) + translation).tolist()  # 4 m under
    data = one_camera({"K": camera.intrinsics, "R": camera.rotation, "t": flipped})
    (report,) = check_site(parse_site(data)).cameras
    assert any("below the ground" in problem for problem in report.problems)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossview.cli", *args], capture_output=True, text=True, check=False
    )


def test_validate_and_calibrate_from_the_command_line(tmp_path: Path) -> None:
    camera = reference_camera()
    grid = np.array([[x, y] for x in (-3.0, 0.0, 3.0) for y in (6.0, 9.0, 13.0)])
    image = ground_to_image(camera, grid)
    rows = [f"{u},{v},{x},{y}\n" for (u, v), (x, y) in zip(image, grid, strict=True)]
    (tmp_path / "gate.csv").write_text("".join(rows))
    site = tmp_path / "site.yaml"
    site.write_text("name: one\ncameras:\n  - id: gate\n    source: push\n    resolution: [640, 480]\n")
    checked = run_cli("site", "validate", str(site))
    assert checked.returncode == 0, checked.stderr
    assert "no calibration" in checked.stdout
    dry = run_cli("calibrate", str(site), "gate", "--points", str(tmp_path / "gate.csv"), "--dry-run")
    assert (
        dry.returncode == 0 and "leave-one-out error" in dry.stdout and "calibration" not in site.read_text()
    )
    written = run_cli("calibrate", str(site), "gate", "--points", str(tmp_path / "gate.csv"))
    assert written.returncode == 0, written.stderr
    assert yaml.safe_load(site.read_text())["cameras"][0]["calibration"] == {
        "points": "gate.csv",
        "ransac_threshold_m": 0.25,
    }
    report = run_cli("site", "validate", str(site), "--json", str(tmp_path / "report.json"))
    assert report.returncode == 0 and "sees ground" in report.stdout
    assert json.loads((tmp_path / "report.json").read_text())["ok"] is True
    data = yaml.safe_load(site.read_text())
    data["cameras"][0]["tint"] = "blue"
    site.write_text(yaml.safe_dump(data))
    refused = run_cli("site", "validate", str(site))
    assert refused.returncode == 2 and "camera 'gate': tint: Extra inputs are not permitted" in refused.stderr


@pytest.mark.skipif(not POSE2SIM.is_dir(), reason="needs ../shared/data/pose2sim (the real 4-camera room)")
def test_a_real_calibrated_room_validates_with_every_pair_of_views_overlapping(tmp_path: Path) -> None:
    calibration = json.loads((POSE2SIM / "cameras.json").read_text())
    cameras = []
    for spec in calibration["cameras"]:
        rvec, _ = cv2.Rodrigues(np.asarray(spec["R"]))  # in OpenCV's form, as calibration scripts write it
        cameras.append(
            {
                "id": spec["id"],
                "source": str(POSE2SIM / "videos" / f"{spec['id']}.mp4"),
                "calibration": {
                    "K": spec["K"],
                    "distortion": spec["distortion"],
                    "rvec": rvec.ravel().tolist(),
                    "tvec": spec["t"],
                },
            }
        )
    site_path = tmp_path / "room.yaml"
    site_path.write_text(yaml.safe_dump({"name": "pose2sim-room", "cameras": cameras}))
    motion = check_site(load_site(site_path), max_range_m=8.0)  # the default detector: motion
    assert motion.identities.startswith("tracklet association of every camera (views overlap, but")
    models = {"models": {"detector": "yolox:yolox_nano.onnx"}}
    site_path.write_text(yaml.safe_dump({"name": "pose2sim-room", "cameras": cameras, **models}))
    report = check_site(load_site(site_path), max_range_m=8.0)
    assert report.ok, report.text()
    assert all(camera.camera is not None and camera.camera.width == 1088 for camera in report.cameras)
    assert len(report.overlaps) == 6  # one room: every pair of the four views shares floor
    assert report.identities == "ground fusion of cam01 + cam02 + cam03 + cam04"
    assert "identities across cameras: ground fusion" in report.text()
    for camera, spec in zip(report.cameras, calibration["cameras"], strict=True):
        centre = spec["centre"]
        assert any(f"height {centre[2]:.2f} m" in line for line in camera.lines), camera.lines


def test_the_documented_example_is_a_valid_site() -> None:
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "site.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    site = parse_site(yaml.safe_load(example.group(1)))
    assert [camera.id for camera in site.cameras] == ["gate", "yard", "exit", "kiosk"]
    kinds = [type(camera.calibration).__name__ for camera in site.cameras]
    assert kinds == ["PointsCalibration", "PinholeCalibration", "OpenCvCalibration", "HomographyCalibration"]


def test_probe_contacts_every_stream(tmp_path: Path) -> None:
    """``site validate --probe`` reaches a real HTTP stream on 127.0.0.1: its frame size checks the
    declared resolution; a camera nobody answers for is a warning (a run would go on without it)."""
    from tests.io.test_sources import HEIGHT, WIDTH, LocalStreamServer, write_transport_stream

    local = LocalStreamServer(write_transport_stream(tmp_path / "live.ts", frames=100), seconds=10.0)
    local.start()
    try:
        with socket.socket() as closed:  # a port that was free a moment ago: nothing listens
            closed.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/live.ts"
        site = parse_site(
            {
                "cameras": [
                    {"id": "door", "source": local.url, "resolution": [WIDTH, HEIGHT]},
                    {"id": "hall", "source": local.url, "resolution": [2 * WIDTH, HEIGHT]},
                    {"id": "yard", "source": dead_url},
                ]
            }
        )
        unprobed = check_site(site)
        assert unprobed.ok  # streams are not contacted
        before = {camera.id: camera.warnings for camera in unprobed.cameras}  # uncalibrated: said
        report = {camera.id: camera for camera in check_site(site, probe_s=3.0).cameras}
    finally:
        local.stop()
    assert f"probe: first frame {WIDTH}x{HEIGHT}" in " ".join(report["door"].lines)
    assert not report["door"].problems and report["door"].warnings == before["door"]
    assert report["hall"].problems == [
        f"resolution: declared {2 * WIDTH}x{HEIGHT} but the stream sends {WIDTH}x{HEIGHT}; "
        "the calibration is for the declared size"
    ]
    *same, warning = report["yard"].warnings
    assert same == before["yard"]
    assert (
        warning.startswith(f"source.url: {dead_url} gave no frame within 3 s (")
        and not report["yard"].problems
    )
