"""The demo's figures on the default site and on every long-tail scenario.

    python benchmarks/bench_demo.py [--seeds 0] [--scenarios default,low_light,...]

Runs ``crossview.demo.run_demo`` (render, detect, track, embed, associate, index, parking flow,
evaluate) once per scenario and seed, one after the other, and prints a markdown table for
docs/benchmarks.md with the issue's figures and the wall time of each run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime

from crossview.demo import DemoConfig, run_demo
from crossview.sim.site import SCENARIOS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    print(f"command: `python benchmarks/bench_demo.py {' '.join(sys.argv[1:])}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 4 cameras, 60 s at 10 fps, 640x360  ")
    print()
    print(
        "| scenario | seed | per-camera IDF1 | MTMC IDF1 online / offline | loc. error median m | "
        "exit-to-entry top-1 (exits) | global ids / objects | latency p50 / p99 ms | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as folder:
                figures = run_demo(folder, DemoConfig(scenario=scenario, seed=seed)).figures
            cameras = " / ".join(f"{100 * s['IDF1']:.0f}" for s in figures["per_camera"].values())
            print(
                f"| {scenario} | {seed} | {cameras} | {100 * figures['mtmc_idf1']:.1f} / "
                f"{100 * figures['mtmc_idf1_offline']:.1f} | "
                f"{figures['localization_error_median_m']:.2f} | {figures['session_match_top1']:.2f} "
                f"({figures['sessions_scored']}) | {figures['global_ids']} / {figures['objects_true']} | "
                f"{figures['latency_p50_ms']:.1f} / {figures['latency_p99_ms']:.1f} | "
                f"{figures['seconds_total']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
