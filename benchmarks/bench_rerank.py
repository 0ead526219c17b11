"""Re-ranking on Market-1501 with OSNet x0.25 (MSMT17): quality and time against BASELINES.md.

Embeds every crop of ``../shared/data/market1501`` once (not timed, nothing cached), then scores
(Market-1501 protocol, ``crossview.eval.reid.reid_metrics``) and times the distance computation of:
cosine, full k-reciprocal (k1=20, k2=6, lambda=0.3), top-K k-reciprocal (K=100, 200), alpha-QE
(k=5, alpha=3) and alpha-QE followed by full k-reciprocal. Prints a markdown table.

    python benchmarks/bench_rerank.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.embed.onnx import OnnxReidEmbedder
from crossview.eval.reid import cosine_distance, reid_metrics
from crossview.io.formats.reid import read_reid_manifest
from crossview.search.rerank import alpha_query_expansion, k_reciprocal_distances, k_reciprocal_topk

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MARKET = SHARED / "data" / "market1501" / "manifest.csv"
OSNET = SHARED / "models" / "osnet_x0_25_msmt17.onnx"

# BASELINES.md: (rank-1, rank-5, rank-10, mAP, seconds) in percent / seconds.
BASELINES: dict[str, tuple[float, float, float, float, float]] = {
    "cosine": (65.69, 80.59, 87.77, 43.02, 0.02),
    "k-reciprocal (full)": (71.28, 79.52, 84.84, 58.88, 6.19),
    "alpha-QE k=5 alpha=3": (66.49, 78.46, 82.45, 47.43, 0.15),
}

Features = NDArray[np.float32]


def embed(embedder: OnnxReidEmbedder, files: NDArray[np.str_]) -> Features:
    images = []
    for file in files.tolist():
        image = cv2.imread(file, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {file}")
        images.append(np.asarray(image, np.uint8))
    return embedder.embed_images(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    arguments = parser.parse_args(argv)
    if not MARKET.is_file() or not OSNET.is_file():
        raise SystemExit(f"needs {MARKET} and {OSNET}")
    manifest = read_reid_manifest(MARKET)
    embedder = OnnxReidEmbedder(OSNET, threads=arguments.threads)
    query_set, gallery_set = manifest.query, manifest.gallery
    query, gallery = embed(embedder, query_set.files), embed(embedder, gallery_set.files)
    labels = (query_set.pids, gallery_set.pids, query_set.camids, gallery_set.camids)

    methods: dict[str, Callable[[], NDArray[np.float32]]] = {
        "cosine": lambda: cosine_distance(query, gallery),
        "k-reciprocal (full)": lambda: k_reciprocal_distances(query, gallery),
        "k-reciprocal top-K=100": lambda: k_reciprocal_topk(query, gallery, top_k=100),
        "k-reciprocal top-K=200": lambda: k_reciprocal_topk(query, gallery, top_k=200),
        "alpha-QE k=5 alpha=3": lambda: cosine_distance(
            alpha_query_expansion(query, gallery, 5, 3.0), gallery
        ),
        "alpha-QE + k-reciprocal (full)": lambda: k_reciprocal_distances(
            alpha_query_expansion(query, gallery, 5, 3.0), gallery
        ),
    }
    command = shlex.join(["python", *sys.argv])
    print(f"command: `{command}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}  ")
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}  ")
    print(f"data: {len(query)} queries, {len(gallery)} gallery images; seconds: distances alone\n")
    print("| method | rank-1 | rank-5 | rank-10 | mAP | seconds | BASELINES (r1 / r5 / r10 / mAP / s) |")
    print("|---|---|---|---|---|---|---|")
    for name, method in methods.items():
        started = time.perf_counter()
        distances = method()
        seconds = time.perf_counter() - started
        result = reid_metrics(distances, *labels)
        baseline = BASELINES.get(name)
        reference = " / ".join(f"{value:g}" for value in baseline) if baseline else "-"
        print(
            f"| {name} | {100 * result.rank1:.2f} | {100 * result.rank5:.2f} | {100 * result.rank10:.2f} "
            f"| {100 * result.mAP:.2f} | {seconds:.2f} | {reference} |"
        )


if __name__ == "__main__":
    main()
