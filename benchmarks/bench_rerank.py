"""Re-ranking on Market-1501 with OSNet x0.25 (MSMT17): quality and time against BASELINES.md.

Embeds every crop of ``../shared/data/market1501`` once (not timed, nothing cached), then scores
(Market-1501 protocol, ``crossview.eval.reid.reid_metrics``) and times the distance computation of:
cosine, full k-reciprocal (k1=20, k2=6, lambda=0.3; original distance |x - y|^4 as the
distance-matrix reference given squared Euclidean distances, and |x - y|^2 as the feature reference),
the sparse forms of ``k_reciprocal_topk`` (transductive and online, one call each: graph built and
queried), the online ``KReciprocalIndex`` (its gallery graph built once, timed on its own row, then
queried: top-K = 100, 200, 500 and all), alpha-QE (k=5, alpha=3) and alpha-QE followed by full
k-reciprocal.
Seconds are the best of ``--repeat`` runs; "x full" is the full form's seconds over the row's.
Prints a markdown table.

    python benchmarks/bench_rerank.py [--threads N] [--repeat N]
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
from typing import TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.embed.onnx import OnnxReidEmbedder
from crossview.eval.reid import cosine_distance, reid_metrics
from crossview.io.formats.reid import read_reid_manifest
from crossview.search.rerank import (
    KReciprocalIndex,
    alpha_query_expansion,
    k_reciprocal_distances,
    k_reciprocal_topk,
)

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
Result = TypeVar("Result")


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
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (the best is kept)")
    arguments = parser.parse_args(argv)
    if not MARKET.is_file() or not OSNET.is_file():
        raise SystemExit(f"needs {MARKET} and {OSNET}")
    manifest = read_reid_manifest(MARKET)
    embedder = OnnxReidEmbedder(OSNET, threads=arguments.threads)
    query_set, gallery_set = manifest.query, manifest.gallery
    query, gallery = embed(embedder, query_set.files), embed(embedder, gallery_set.files)
    labels = (query_set.pids, gallery_set.pids, query_set.camids, gallery_set.camids)
    repeat = max(1, arguments.repeat)

    def timed(method: Callable[[], Result]) -> tuple[Result, float]:
        best, result = float("inf"), None
        for _ in range(repeat):
            started = time.perf_counter()
            result = method()
            best = min(best, time.perf_counter() - started)
        assert result is not None
        return result, best

    index, build_seconds = timed(lambda: KReciprocalIndex(gallery))
    methods: dict[str, Callable[[], NDArray[np.float32]]] = {
        "cosine": lambda: cosine_distance(query, gallery),
        "k-reciprocal (full)": lambda: k_reciprocal_distances(query, gallery),
        "k-reciprocal (full), distance_power=2": lambda: k_reciprocal_distances(
            query, gallery, distance_power=2
        ),
        "k_reciprocal_topk transductive, top-K=200 (one call)": lambda: k_reciprocal_topk(
            query, gallery, top_k=200
        ),
        "k_reciprocal_topk online, top-K=200 (one call)": lambda: k_reciprocal_topk(
            query, gallery, top_k=200, include_queries=False
        ),
        **{
            f"KReciprocalIndex online, top-K={k} (query only)": (lambda k=k: index.distances(query, top_k=k))
            for k in (100, 200, 500)
        },
        "KReciprocalIndex online, all (query only)": lambda: index.distances(query),
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
    print(
        f"data: {len(query)} queries, {len(gallery)} gallery images; seconds: distances alone, "
        f"best of {repeat}\n"
    )
    print(
        "| method | rank-1 | rank-5 | rank-10 | mAP | seconds | x full "
        "| BASELINES (r1 / r5 / r10 / mAP / s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows: list[tuple[str, str, float]] = []
    full_seconds = float("nan")
    for name, method in methods.items():
        distances, seconds = timed(method)
        result = reid_metrics(distances, *labels)
        if name == "k-reciprocal (full)":
            full_seconds = seconds
        baseline = BASELINES.get(name)
        reference = " / ".join(f"{value:g}" for value in baseline) if baseline else "-"
        figures = (
            f"{100 * result.rank1:.2f} | {100 * result.rank5:.2f} | {100 * result.rank10:.2f} "
            f"| {100 * result.mAP:.2f}"
        )
        rows.append((f"| {name} | {figures} | {seconds:.3f}", reference, seconds))
    build = f"| KReciprocalIndex build, gallery only (once) | - | - | - | - | {build_seconds:.3f}"
    first_index_row = next(i for i, row in enumerate(rows) if row[0].startswith("| KReciprocalIndex"))
    rows.insert(first_index_row, (build, "-", build_seconds))
    for head, reference, seconds in rows:
        print(f"{head} | {full_seconds / seconds:.1f} | {reference} |")


if __name__ == "__main__":
    main()
