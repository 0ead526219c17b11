"""``crossview run`` on a real calibrated room: ``../shared/data/pose2sim`` (4 synchronised cameras,
1088x1920 at 60 fps, 100 frames; two actors and a bystander) with YOLOX-Nano and ByteTrack.

    python benchmarks/bench_runtime_pose2sim.py [--images docs/images] [--snapshot 50]

The site file is written from the room's calibration (``cameras.json``: ``K``, distortion, ``R``,
``t``); persons only (COCO class 0). Prints the markdown for docs/benchmarks.md: every global
identity with its cameras and rows, the rate and per-stage latency; ``--images`` also copies the
snapshot (one frame per camera, labelled by global id) and the site map there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import yaml

from crossview.io.formats.mtmc import read_mtmc
from crossview.runtime.run import run_site
from crossview.runtime.site import load_site

SHARED = Path(__file__).resolve().parents[2] / "shared"
ROOM = SHARED / "data" / "pose2sim"
MODEL = SHARED / "models" / "yolox_nano.onnx"


def site_file(folder: Path) -> Path:
    """The room as a site file: video sources, pinhole calibration, YOLOX-Nano for persons."""
    calibration = json.loads((ROOM / "cameras.json").read_text())
    cameras = [
        {
            "id": camera["id"],
            "source": str(ROOM / "videos" / f"{camera['id']}.mp4"),
            "calibration": {
                "K": camera["K"],
                "distortion": camera["distortion"],
                "R": camera["R"],
                "t": camera["t"],
            },
        }
        for camera in calibration["cameras"]
    ]
    site = {
        "name": "pose2sim room",
        "cameras": cameras,
        "models": {"detector": f"yolox:{MODEL}", "embedder": "color"},
        "classes": {0: "person"},
        "tracker": {"name": "bytetrack"},
        "topology": {"overlap_range_m": 8.0},  # a room: each camera sees a few metres of floor
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, help="copy the snapshot and the site map here")
    parser.add_argument("--snapshot", type=int, default=50, help="the frame to draw")
    args = parser.parse_args()
    if not ROOM.is_dir() or not MODEL.is_file():
        sys.exit(f"needs {ROOM} and {MODEL}")
    folder = Path(tempfile.mkdtemp(prefix="crossview-pose2sim-"))
    out = folder / "out"
    result = run_site(load_site(site_file(folder)), out, snapshot=args.snapshot)
    table = read_mtmc(out / "mtmc.txt")
    cameras: dict[int, set[str]] = defaultdict(set)
    rows: dict[int, int] = defaultdict(int)
    for camera, identity in zip(table.camera.tolist(), table.obj_id.tolist(), strict=True):
        cameras[identity].add(table.camera_names[camera])
        rows[identity] += 1
    figures = result.to_dict()
    print("## `crossview run` on a real calibrated room (issue 13)\n")
    print(f"command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    machine = f"{platform.platform()}, os.cpu_count() {os.cpu_count()}; Python {platform.python_version()}"
    print(f"machine: {machine}\n")
    print("| global id | cameras | boxes |")
    print("|---|---|---|")
    for identity in sorted(rows):
        print(f"| {identity} | {', '.join(sorted(cameras[identity]))} | {rows[identity]} |")
    total_frames = sum(c["frames"] for c in figures["cameras"].values())
    rate = total_frames / result.seconds
    print(f"\n{total_frames} frames in {result.seconds:.1f} s ({rate:.1f} frames/s over the 4 cameras)")
    for stage, values in figures["latency_ms"].items():
        print(f"- {stage}: p50 {values['p50']:.1f} ms, p99 {values['p99']:.1f} ms")
    if args.images is not None:
        args.images.mkdir(parents=True, exist_ok=True)
        frames = [cv2.imread(str(out / "snapshots" / f"{c}.jpg")) for c in sorted(figures["cameras"])]
        frames = [cv2.resize(f, (340, 600), interpolation=cv2.INTER_AREA) for f in frames]
        cv2.imwrite(
            str(args.images / "pose2sim-frames.jpg"), np.hstack(frames), [cv2.IMWRITE_JPEG_QUALITY, 82]
        )
        cv2.imwrite(str(args.images / "pose2sim-map.png"), cv2.imread(str(out / "snapshots" / "map.png")))


if __name__ == "__main__":
    main()
