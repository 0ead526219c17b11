"""Tracking accuracy and speed on MOT17 with a common detection input, peers in the same run.

    python benchmarks/bench_trackers.py --peer-python PATH/TO/peer-venv/bin/python [--repeats 3]

Our SORT, ByteTrack and OC-SORT (defaults) and roboflow ``trackers`` 2.6.1 (SORT, ByteTrack,
OC-SORT with their defaults, run by ``benchmarks/peers/run_roboflow_trackers.py`` in the peer's own
environment) track ``../shared/data/mot17/*/det/det.txt``; every output is scored by crossview's
TrackEval-equal metrics (MOTChallenge 2D-box protocol). Speed is frames per second of the update
loop alone, detections already in memory, best of ``--repeats`` runs for both.
Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from crossview.core.detections import Detections
from crossview.eval.mot import MotScores, evaluate_sequence
from crossview.io.formats.mot import MotTable, read_mot, read_seqinfo
from crossview.track import make_tracker
from crossview.track.replay import detections_by_frame, tracked_rows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mot17"
SEQUENCES = ("MOT17-02", "MOT17-04", "MOT17-05", "MOT17-09")
OURS = ("sort", "bytetrack", "ocsort")
COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "CLR_FP", "CLR_FN")


def run_ours(
    name: str, frames: dict[str, list[Detections]], rates: dict[str, float], repeats: int
) -> tuple[dict[str, MotTable], float]:
    """Results per sequence and the best total update-loop time over ``repeats`` runs."""
    best = float("inf")
    results: dict[str, MotTable] = {}
    for _ in range(repeats):
        total = 0.0
        for sequence, detections in frames.items():
            tracker = make_tracker(name, frame_rate=rates[sequence])
            start = time.perf_counter()
            outputs = [tracker.update(d) for d in detections]
            total += time.perf_counter() - start
            parts = [tracked_rows(out) for out in outputs]
            results[sequence] = MotTable.concatenate(parts)
        best = min(best, total)
    return results, best


def score(
    results: dict[str, MotTable], gts: dict[str, MotTable], lengths: dict[str, int]
) -> tuple[dict, list]:
    per = [evaluate_sequence(gts[s], results[s], num_frames=lengths[s], name=s) for s in SEQUENCES]
    return MotScores.combine(per).summary(), [p.summary()["HOTA"] for p in per]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer-python", type=Path, help="python of an environment with trackers==2.6.1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the shared MOT17 data at {DATA}")
    lengths = {s: read_seqinfo(DATA / s / "seqinfo.ini").length for s in SEQUENCES}
    rates = {s: read_seqinfo(DATA / s / "seqinfo.ini").frame_rate for s in SEQUENCES}
    gts = {s: read_mot(DATA / s / "gt" / "gt.txt") for s in SEQUENCES}
    frames = {
        s: list(detections_by_frame(read_mot(DATA / s / "det" / "det.txt"), lengths[s])) for s in SEQUENCES
    }
    total_frames = sum(lengths.values())

    rows: dict[str, tuple[dict, list, float]] = {}
    for name in OURS:
        results, seconds = run_ours(name, frames, rates, args.repeats)
        rows[f"crossview {name}"] = (*score(results, gts, lengths), total_frames / seconds)
    if args.peer_python:
        with tempfile.TemporaryDirectory() as out:
            script = Path(__file__).parent / "peers" / "run_roboflow_trackers.py"
            subprocess.run(
                [str(args.peer_python), str(script), "--data", str(DATA), "--out", out], check=True
            )
            timing = json.loads(Path(out, "timing.json").read_text())
            for name in OURS:
                results = {s: read_mot(Path(out, name, f"{s}.txt")) for s in SEQUENCES}
                seconds = sum(timing["seconds"][name].values())
                rows[f"roboflow trackers {name}"] = (*score(results, gts, lengths), total_frames / seconds)

    print(f"command: `python benchmarks/bench_trackers.py {' '.join(sys.argv[1:])}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}  ")
    print()
    print("| tracker | " + " | ".join(c.removeprefix("CLR_") for c in COLUMNS) + " | fps |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))
    for label, (summary, _, fps) in rows.items():
        cells = [
            f"{100 * summary[c]:.2f}" if c in ("HOTA", "DetA", "AssA", "MOTA", "IDF1") else str(summary[c])
            for c in COLUMNS
        ]
        print(f"| {label} | " + " | ".join(cells) + f" | {fps:.0f} |")
    print()
    print("| tracker | " + " | ".join(SEQUENCES) + " |")
    print("|---|" + "---|" * len(SEQUENCES))
    for label, (_, per, _) in rows.items():
        print(f"| {label} | " + " | ".join(f"{100 * h:.2f}" for h in per) + " |")
    if args.peer_python:
        print()
        print("| ours vs namesake | HOTA difference | speed ratio |")
        print("|---|---|---|")
        for name in OURS:
            ours, peer = rows[f"crossview {name}"], rows[f"roboflow trackers {name}"]
            print(f"| {name} | {100 * (ours[0]['HOTA'] - peer[0]['HOTA']):+.2f} | {ours[2] / peer[2]:.1f}x |")
        best_ours = max(rows[f"crossview {n}"][0]["HOTA"] for n in OURS)
        best_peer = max(rows[f"roboflow trackers {n}"][0]["HOTA"] for n in OURS)
        print()
        print(
            f"best crossview HOTA {100 * best_ours:.2f} vs best peer {100 * best_peer:.2f}: "
            f"{100 * (best_ours - best_peer):+.2f}"
        )


if __name__ == "__main__":
    main()
