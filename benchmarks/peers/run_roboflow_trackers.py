"""Run roboflow ``trackers`` (SORT, ByteTrack, OC-SORT) with their defaults on MOTChallenge det.txt.

Runs in the *peer's* environment (``pip install trackers==2.6.1``), never crossview's:

    PEER_PYTHON benchmarks/peers/run_roboflow_trackers.py --data ../shared/data/mot17 --out OUT

Writes ``OUT/<tracker>/<seq>.txt`` (MOTChallenge results) and ``OUT/timing.json`` with the seconds
spent in the update loop alone (detections already in memory), per tracker and sequence. Only
``frame_rate`` from ``seqinfo.ini`` is set, as in BASELINES.md.
"""

from __future__ import annotations

import argparse
import configparser
import json
import time
from pathlib import Path

import numpy as np
import supervision as sv
import trackers

TRACKERS = {
    "sort": trackers.SORTTracker,
    "bytetrack": trackers.ByteTrackTracker,
    "ocsort": trackers.OCSORTTracker,
}


def load(sequence: Path) -> tuple[list[sv.Detections], float]:
    info = configparser.ConfigParser()
    info.read(sequence / "seqinfo.ini")
    length = int(info["Sequence"]["seqLength"])
    rate = float(info["Sequence"].get("frameRate", "30"))
    rows = np.loadtxt(sequence / "det" / "det.txt", delimiter=",", ndmin=2)
    frames = []
    for frame in range(1, length + 1):
        mine = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([mine[:, 2], mine[:, 3], mine[:, 2] + mine[:, 4], mine[:, 3] + mine[:, 5]])
        frames.append(
            sv.Detections(xyxy=xyxy.reshape(-1, 4), confidence=mine[:, 6], class_id=np.zeros(len(mine), int))
        )
    return frames, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sequences", nargs="+", default=["MOT17-02", "MOT17-04", "MOT17-05", "MOT17-09"])
    parser.add_argument(
        "--repeats", type=int, default=1, help="time the update loop this many times, keep the best"
    )
    args = parser.parse_args()
    timing: dict[str, dict[str, float]] = {name: {} for name in TRACKERS}
    for sequence in args.sequences:
        frames, rate = load(args.data / sequence)
        for name, constructor in TRACKERS.items():
            best = float("inf")
            for _ in range(args.repeats):
                tracker = constructor(frame_rate=rate)
                start = time.perf_counter()
                outputs = [tracker.update(detections) for detections in frames]
                best = min(best, time.perf_counter() - start)
            timing[name][sequence] = best
            lines = []
            for index, out in enumerate(outputs, start=1):
                for (x1, y1, x2, y2), track in zip(out.xyxy, out.tracker_id, strict=True):
                    if track >= 0:
                        lines.append(
                            f"{index},{track},{x1:.3f},{y1:.3f},{x2 - x1:.3f},{y2 - y1:.3f},1,-1,-1,-1\n"
                        )
            (args.out / name).mkdir(parents=True, exist_ok=True)
            (args.out / name / f"{sequence}.txt").write_text("".join(lines))
    frames_total = {s: len(load(args.data / s)[0]) for s in args.sequences}
    (args.out / "timing.json").write_text(json.dumps({"seconds": timing, "frames": frames_total}, indent=2))


if __name__ == "__main__":
    main()
