"""The runtime (``crossview run``) on this machine: how many cameras it keeps up with, and its memory
over a long run.

    python benchmarks/bench_runtime.py [--cameras 1,2,4,8] [--frames 200] [--minutes 30] [--quick]

1. *Throughput.* For each camera count N, a site of N cameras runs through ``run_site`` (camera
   stages in threads, the site stage, every standard output) for ``--frames`` frames per camera:
   - *motion*: the synthetic parking site's videos (640 x 360; the motion detector against each
     camera's background plate, the colour embedder, SORT);
   - *YOLOX-Nano*: the real street video ``../shared/data/video/vtest.avi`` (768 x 576), one copy
     per camera, YOLOX-Nano for persons and cars, the colour embedder, ByteTrack.
   Each is run twice, and the faster run is kept (the first warms the caches and the model). Frames
   per second over all cameras, divided by N, is the rate each camera could stream at in real
   time.
2. *Memory.* A synthetic site of 2 cameras at 5 fps for ``--minutes`` of site time, with a steady
   flow of vehicles and pedestrians, runs with the same outputs, first, in the fresh process, while
   a sink samples its resident memory every 30 s of site time. Reported: RSS every 5 minutes, after
   warm-up (12 minutes: the site stage drops tracks 10 minutes after they end, so memory fills
   until then) and at the end, and the least-squares slope after warm-up in MiB per hour.

Progress goes to stderr; stdout is the markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import yaml

from crossview.runtime.engine import Sink, TrackedFrame
from crossview.runtime.run import run_site
from crossview.runtime.site import SiteFile, load_site
from crossview.sim.site import SiteSpec, generate_site, render_site
from crossview.sim.site.render import empty_view

SHARED = Path(__file__).resolve().parents[2] / "shared"
STREET = SHARED / "data" / "video" / "vtest.avi"
YOLOX = SHARED / "models" / "yolox_nano.onnx"
WINDOW_S = 600.0  # the site stage's forget_after_s


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_site(
    folder: Path, cameras: int, seconds: float, fps: float, vehicles: int, pedestrians: int
) -> Path:
    """A rendered synthetic site as a site file (videos, calibration, background plates); with one
    camera, the first of a two-camera site."""
    spec = SiteSpec(
        num_cameras=max(2, cameras),
        duration=seconds,
        fps=fps,
        num_vehicles=vehicles,
        num_pedestrians=pedestrians,
    )
    site = generate_site(spec, seed=7)
    rendered = render_site(site, folder)
    entries = []
    for camera in site.cameras[:cameras]:
        plate = folder / f"{camera.id}-plate.png"
        cv2.imwrite(str(plate), empty_view(site, camera))
        entries.append(
            {
                "id": camera.id,
                "source": rendered.videos[camera.id].name,
                "background": plate.name,
                "calibration": {
                    "K": camera.camera.intrinsics,
                    "R": camera.camera.rotation,
                    "t": camera.camera.translation,
                },
            }
        )
    data = {
        "name": f"synthetic {cameras} cameras",
        "cameras": entries,
        "models": {
            "detector": "motion",
            "detector_options": {"scale": 1.0, "blur": 5, "plate_threshold": 18},
        },
        "tracker": {"name": "sort"},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def street_site(folder: Path, cameras: int) -> Path:
    """N cameras all showing the real street video, with YOLOX-Nano for persons and cars."""
    data = {
        "name": f"street x{cameras}",
        "cameras": [{"id": f"s{n + 1}", "source": str(STREET)} for n in range(cameras)],
        "models": {"detector": f"yolox:{YOLOX}", "embedder": "color"},
        "classes": {0: "person", 2: "car"},
        "tracker": {"name": "bytetrack"},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def throughput(site: SiteFile, frames: int, out: Path) -> tuple[float, dict[str, float]]:
    """Frames per second over all cameras (the better of two runs) and its per-frame p50 latencies."""
    best = 0.0
    latency: dict[str, float] = {}
    for attempt in range(2):
        result = run_site(site, out / f"run{attempt}", max_frames=frames)
        total = sum(stats.frames for stats in result.cameras.values())
        rate = total / result.seconds
        if rate > best:
            best = rate
            latency = {stage: summary.p50 for stage, summary in result.latency().items()}
    return best, latency


class MemorySampler(Sink):
    """Resident memory every ``every_s`` of site time."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._next = 0.0

    def frame(self, tracked: TrackedFrame) -> None:
        if tracked.timestamp >= self._next:
            self.samples.append((tracked.timestamp, rss_mib()))
            self._next = tracked.timestamp + self.every_s


def memory_run(root: Path, minutes: float) -> tuple[str, list[str]]:
    """The long run's summary line and table rows (see the module docstring)."""
    seconds = minutes * 60
    folder = root / "memory"
    folder.mkdir()
    log(f"rendering {minutes:g} minutes of a 2-camera site at 5 fps")
    actors = min(200, int(2 * minutes))  # about two vehicles and two pedestrians a minute
    long_site = load_site(synthetic_site(folder, 2, seconds, 5.0, actors, actors))
    sampler = MemorySampler(30.0)
    before = rss_mib()
    started = time.perf_counter()
    long_run = run_site(long_site, folder / "out", sinks=[sampler])
    log(f"memory run: {time.perf_counter() - started:.0f} s")
    times = np.array([t for t, _ in sampler.samples])
    rss = np.array([r for _, r in sampler.samples])
    # warm-up: until tracks start being finished and dropped (10 minutes of site time), plus margin
    warm = times >= min(0.5 * seconds, WINDOW_S + 120.0)
    slope = float(np.polyfit(times[warm] / 3600.0, rss[warm], 1)[0]) if warm.sum() >= 3 else float("nan")
    frames = sum(s.frames for s in long_run.cameras.values())
    associator = long_run.site.associator
    line = (
        f"Memory: {minutes:g} minutes of site time, 2 cameras at 5 fps ({frames} frames, "
        f"{associator.identities} global ids minted, {associator.live_identities} remembered at the end), "
        f"in {long_run.seconds:.0f} s, run first in a fresh process."
    )
    marks = " / ".join(f"{r:.0f}" for t, r in zip(times, rss, strict=True) if t % 300 < 30)
    table = [
        f"| RSS before the run (site rendered, nothing loaded yet) | {before:.0f} MiB |",
        f"| RSS every 5 minutes of site time | {marks} MiB |",
        f"| RSS after warm-up (12 minutes: tracks are dropped after 10) | {rss[warm][0]:.0f} MiB |",
        f"| RSS at the end | {rss[-1]:.0f} MiB |",
        f"| RSS peak | {rss.max():.0f} MiB |",
        f"| slope after warm-up | {slope:+.1f} MiB per hour of site time |",
    ]
    return line, table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", default="1,2,4,8", help="camera counts to try")
    parser.add_argument("--frames", type=int, default=200, help="frames per camera per throughput run")
    parser.add_argument("--minutes", type=float, default=30.0, help="site time of the memory run")
    parser.add_argument("--quick", action="store_true", help="cameras 1,2; 60 frames; 3 minutes")
    parser.add_argument(
        "--phases", default="memory,throughput", help="which to run (memory first: its RSS starts clean)"
    )
    args = parser.parse_args()
    if args.quick:
        args.cameras, args.frames, args.minutes = "1,2", 60, 3.0
    counts = [int(c) for c in args.cameras.split(",")] if "throughput" in args.phases else []
    root = Path(tempfile.mkdtemp(prefix="crossview-runtime-"))
    memory = memory_run(root, args.minutes) if "memory" in args.phases else None
    rows = []
    for count in counts:
        folder = root / f"motion-{count}"
        folder.mkdir()
        site = load_site(synthetic_site(folder, count, args.frames / 10 + 1, 10.0, 8, 6))
        rate, latency = throughput(site, args.frames, folder)
        log(f"motion, {count} camera(s): {rate:.1f} frames/s")
        rows.append(("motion (synthetic 640 x 360)", count, rate, latency))
    if STREET.is_file() and YOLOX.is_file() and counts:
        for count in counts:
            folder = root / f"yolox-{count}"
            folder.mkdir()
            rate, latency = throughput(load_site(street_site(folder, count)), args.frames, folder)
            log(f"YOLOX-Nano, {count} camera(s): {rate:.1f} frames/s")
            rows.append(("YOLOX-Nano (street 768 x 576)", count, rate, latency))
    else:
        log(f"skipping YOLOX-Nano: needs {STREET} and {YOLOX}")

    print("## The runtime: cameras kept up with, and memory over a long run (issue 13)\n")
    print(f"command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    machine = f"{platform.platform()}, os.cpu_count() {os.cpu_count()}; Python {platform.python_version()}"
    print(f"machine: {machine}\n")
    print(
        f"Throughput: {args.frames} frames per camera, the better of two runs (camera stages in parallel).\n"
    )
    print("| detector (input) | cameras | frames/s, all | frames/s each | p50 ms: detect / embed / track |")
    print("|---|---|---|---|---|")
    for name, count, rate, latency in rows:
        stages = " / ".join(f"{latency.get(s, float('nan')):.1f}" for s in ("detect", "embed", "track"))
        print(f"| {name} | {count} | {rate:.1f} | {rate / count:.1f} | {stages} |")
    if memory is not None:
        line, table = memory
        print(f"\n{line}\n")
        print("| figure | value |")
        print("|---|---|")
        for row in table:
            print(row)


if __name__ == "__main__":
    main()
