"""Appearance embedders: speed (crops/s) and Market-1501 quality, OSNet (ONNX) against colour histograms.

Reads every crop of ``../shared/data/market1501`` into memory first (decoding is not timed), then:

- speed: ``embed_images`` over ``--crops`` crops (median of ``--repeats`` runs, after one warm-up
  call) for the ONNX OSNet x0.25 model at batch sizes 1, 8 and 32, and for the colour embedder;
  resizing and normalisation are inside the timing, JPEG decoding is not;
- quality: rank-1, rank-5, mAP over the full shared query/gallery split (Market-1501 protocol,
  cosine distance, ``crossview.eval.reid.reid_metrics_from_features``).

Prints a markdown block for ``docs/benchmarks.md``.

    python benchmarks/bench_embedders.py [--crops 1024] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.embed.color import ColorHistogramEmbedder
from crossview.embed.onnx import OnnxReidEmbedder
from crossview.eval.reid import ReidResult, reid_metrics_from_features
from crossview.io.formats.reid import ReidManifest, read_reid_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MARKET = SHARED / "data" / "market1501" / "manifest.csv"
OSNET = SHARED / "models" / "osnet_x0_25_msmt17.onnx"

Images = list[NDArray[np.uint8]]


def read_images(manifest: ReidManifest) -> Images:
    images = []
    for file in manifest.files.tolist():
        image = cv2.imread(file, cv2.IMREAD_COLOR)
        if image is None:
            sys.exit(f"cannot read {file}")
        images.append(np.asarray(image, dtype=np.uint8))
    return images


def crops_per_second(
    embed: Callable[[Sequence[NDArray[np.uint8]]], NDArray[np.float32]], images: Images, repeats: int
) -> tuple[float, list[float]]:
    """Median crops/s over ``repeats`` timed calls (after an untimed warm-up call) and every run's figure."""
    embed(images[:32])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed(images)
        rates.append(len(images) / (time.perf_counter() - start))
    return statistics.median(rates), rates


def quality(
    embed: Callable[[Sequence[NDArray[np.uint8]]], NDArray[np.float32]],
    manifest: ReidManifest,
    images: Images,
) -> tuple[ReidResult, float]:
    """Market-1501 metrics of one embedder, and the seconds embedding all crops took."""
    start = time.perf_counter()
    features = embed(images)
    seconds = time.perf_counter() - start
    query = manifest.is_query
    result = reid_metrics_from_features(
        features[query],
        features[~query],
        manifest.pids[query],
        manifest.pids[~query],
        manifest.camids[query],
        manifest.camids[~query],
    )
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=int, default=1024, help="crops per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all)")
    args = parser.parse_args()
    for needed in (MARKET, OSNET):
        if not needed.exists():
            sys.exit(f"needs the shared data: {needed} is missing")

    manifest = read_reid_manifest(MARKET)
    images = read_images(manifest)
    timed = images[:: max(1, len(images) // args.crops)][: args.crops]

    speed_rows = []
    for batch_size in (1, 8, 32):
        osnet = OnnxReidEmbedder(OSNET, batch_size=batch_size, threads=args.threads)
        median, runs = crops_per_second(osnet.embed_images, timed, args.repeats)
        speed_rows.append((f"OSNet x0.25 (ONNX), batch {batch_size}", median, runs))
    colour = ColorHistogramEmbedder()
    median, runs = crops_per_second(colour.embed_images, timed, args.repeats)
    speed_rows.append(("colour histograms (no weights)", median, runs))

    osnet = OnnxReidEmbedder(OSNET, threads=args.threads)  # defaults: batch 32
    quality_rows = [
        (
            f"OSNet x0.25 (ONNX), batch {osnet.batch_size}",
            osnet.dim,
            *quality(osnet.embed_images, manifest, images),
        ),
        ("colour histograms (no weights)", colour.dim, *quality(colour.embed_images, manifest, images)),
    ]

    command = " ".join(["python benchmarks/bench_embedders.py", *map(shlex.quote, sys.argv[1:])])
    print(f"- command: `{command}`")
    print(
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"nproc {os.cpu_count()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"onnxruntime {version('onnxruntime')}, OpenCV {cv2.__version__}"
    )
    print(
        f"- data: {len(images)} Market-1501 crops (64x128), {int(manifest.is_query.sum())} queries, "
        f"{int((~manifest.is_query).sum())} gallery; speed over {len(timed)} crops, median of "
        f"{args.repeats} runs, decoding excluded; onnxruntime threads: {args.threads or 'default'}"
    )
    print()
    print("| embedder | crops/s (median) | runs |")
    print("|---|---:|---|")
    for name, rate, runs in speed_rows:
        print(f"| {name} | {rate:.0f} | {', '.join(f'{run:.0f}' for run in runs)} |")
    print()
    print("| embedder | dim | rank-1 | rank-5 | rank-10 | mAP | embedding all crops (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, dim, result, seconds in quality_rows:
        print(
            f"| {name} | {dim} | {100 * result.rank1:.2f} | {100 * result.rank5:.2f} | "
            f"{100 * result.rank10:.2f} | {100 * result.mAP:.2f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
