"""MOT metric speed: crossview against TrackEval on the 12 MPNTrack result files, same run.

    python benchmarks/bench_mot_metrics.py [--repeats 3]

Both sides read the files from disk and compute HOTA, CLEAR and Identity for every sequence
plus the combined figures. TrackEval (1.3.0, installed with ``--no-deps``) runs single-process.
Prints a markdown block for docs/benchmarks.md and checks that both agree on every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from crossview.eval.mot import MotScores, evaluate_mot_dirs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mot17"
SEQUENCES = ("MOT17-02", "MOT17-04", "MOT17-05", "MOT17-09")
DETECTORS = ("FRCNN", "SDP", "DPM")


def layout(root: Path) -> tuple[Path, Path, list[str]]:
    """One GT folder per result file (<seq>-<detector>), as TrackEval's MOT17 layout expects."""
    gt, pred = root / "gt", root / "trackers" / "mpn" / "data"
    pred.mkdir(parents=True)
    names = []
    for sequence in SEQUENCES:
        for detector in DETECTORS:
            name = f"{sequence}-{detector}"
            (gt / name / "gt").mkdir(parents=True)
            shutil.copy(SHARED / sequence / "gt" / "gt.txt", gt / name / "gt" / "gt.txt")
            shutil.copy(SHARED / sequence / "seqinfo.ini", gt / name / "seqinfo.ini")
            shutil.copy(SHARED / "mpntrack" / f"{name}.txt", pred / f"{name}.txt")
            names.append(name)
    return gt, pred, names


def run_crossview(gt: Path, pred: Path, names: list[str]) -> MotScores:
    return evaluate_mot_dirs(gt, pred, sequences=names).combined


def run_trackeval(gt: Path, trackers: Path, names: list[str]) -> dict[str, float]:
    import trackeval

    eval_config = trackeval.Evaluator.get_default_eval_config()
    eval_config.update(
        PRINT_RESULTS=False,
        PRINT_CONFIG=False,
        TIME_PROGRESS=False,
        OUTPUT_SUMMARY=False,
        OUTPUT_DETAILED=False,
        PLOT_CURVES=False,
        USE_PARALLEL=False,
    )
    dataset_config = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
    dataset_config.update(
        GT_FOLDER=str(gt),
        TRACKERS_FOLDER=str(trackers),
        SEQ_INFO=dict.fromkeys(names),
        SKIP_SPLIT_FOL=True,
        PRINT_CONFIG=False,
        GT_LOC_FORMAT="{gt_folder}/{seq}/gt/gt.txt",
    )
    quiet = {"PRINT_CONFIG": False}
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet)]
    with contextlib.redirect_stdout(io.StringIO()):
        results, _ = trackeval.Evaluator(eval_config).evaluate(
            [trackeval.datasets.MotChallenge2DBox(dataset_config)], metrics
        )
    combined = results["MotChallenge2DBox"]["mpn"]["COMBINED_SEQ"]["pedestrian"]
    return {
        "HOTA": float(np.mean(combined["HOTA"]["HOTA"])),
        "MOTA": float(combined["CLEAR"]["MOTA"]),
        "IDF1": float(combined["Identity"]["IDF1"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs the shared MOT17 data at {SHARED}")
    import trackeval  # noqa: F401  (fail early when the reference is not installed)

    with tempfile.TemporaryDirectory() as tmp:
        gt, pred, names = layout(Path(tmp))
        ours_times, reference_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = run_crossview(gt, pred, names).summary()
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            reference = run_trackeval(gt, pred.parent.parent, names)
            reference_times.append(time.perf_counter() - start)
    for field, value in reference.items():
        if abs(float(ours[field]) - value) > 1e-9:
            sys.exit(f"disagreement on {field}: crossview {ours[field]} vs TrackEval {value}")
    ours_s, reference_s = statistics.median(ours_times), statistics.median(reference_times)
    command = "python benchmarks/bench_mot_metrics.py " + " ".join(sys.argv[1:])
    print(f"command: `{command.strip()}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}  "
    )
    print()
    print("| implementation | median seconds (12 files, read + HOTA + CLEAR + Identity) | runs |")
    print("|---|---|---|")
    print(f"| crossview | {ours_s:.2f} | {', '.join(f'{t:.2f}' for t in ours_times)} |")
    print(f"| TrackEval 1.3.0 | {reference_s:.2f} | {', '.join(f'{t:.2f}' for t in reference_times)} |")
    print()
    print(
        f"speed-up: **{reference_s / ours_s:.1f}x**; combined HOTA {ours['HOTA']:.6f}, "
        f"MOTA {ours['MOTA']:.6f}, IDF1 {ours['IDF1']:.6f} (equal to TrackEval's to 1e-9)"
    )


if __name__ == "__main__":
    main()
