"""Vector index scale: build time, memory, single-query latency and recall@10, plus filtered search.

    python benchmarks/bench_index_scale.py [--size 1000000] [--backends faiss-hnsw,faiss-ivf,milvus]

Data: real OSNet x0.25 embeddings of the shared Market-1501 crops (512-d), completed to ``--size``
with synthetic clustered vectors (random unit centres, per-cluster spread like the real data's);
1,000 held-out queries from the same mixture. Ground truth: exact top-10 by brute force. Each
backend is built in a temporary folder (persistent mode, as deployed), then queried one vector at a
time. Filtered queries (a camera subset, a time range) check that exactly k hits come back.
Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.eval.latency import LatencySummary
from crossview.eval.retrieval import recall_at_k
from crossview.search.index import Entry, Filter, VectorIndex

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CAMERAS = tuple(f"cam{i}" for i in range(8))


def real_embeddings() -> tuple[NDArray[np.float32], float]:
    """OSNet embeddings of all Market crops, and the typical distance of a crop to its identity's mean."""
    from crossview.embed.onnx import OnnxReidEmbedder
    from crossview.io.formats.reid import read_reid_manifest

    manifest = read_reid_manifest(SHARED / "data" / "market1501" / "manifest.csv")
    images = [np.asarray(cv2.imread(path), np.uint8) for path in manifest.files.tolist()]
    features = OnnxReidEmbedder(SHARED / "models" / "osnet_x0_25_msmt17.onnx").embed_images(images)
    spreads = []
    for pid in np.unique(manifest.pids).tolist():
        members = features[manifest.pids == pid]
        if len(members) > 1:
            spreads.append(np.linalg.norm(members - members.mean(axis=0), axis=1))
    return features, float(np.median(np.concatenate(spreads)))


def mixture(real: NDArray[np.float32], spread: float, size: int, seed: int) -> NDArray[np.float32]:
    """``size`` unit vectors: the real ones, then identity-like clusters as tight as real identities."""
    rng = np.random.default_rng(seed)
    parts = [real]
    remaining = size - len(real)
    while remaining > 0:
        count = min(remaining, 200_000)
        centres = rng.normal(size=(max(1, count // 20), real.shape[1])).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        members = centres[rng.integers(0, len(centres), count)]
        noise = rng.normal(0, spread / np.sqrt(real.shape[1]), members.shape).astype(np.float32)
        block = members + noise
        parts.append(block / np.linalg.norm(block, axis=1, keepdims=True))
        remaining -= count
    return np.concatenate(parts)[:size].astype(np.float32)


def exact_top(queries: NDArray[np.float32], data: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    best = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(queries), 100):
        scores = queries[start : start + 100] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        best[start : start + 100] = np.take_along_axis(top, order, 1)
    return best


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_backend(name: str, folder: Path, dim: int) -> VectorIndex:
    if name == "milvus":
        from crossview.search.milvus import MilvusIndex

        return MilvusIndex(str(folder / "milvus.db"), dim, index_type="HNSW", flush=False)
    from crossview.search.faiss_index import FaissIndex

    factory = {"faiss-hnsw": "HNSW32", "faiss-ivf": "IVF4096,Flat", "faiss-flat": "Flat"}[name]
    return FaissIndex(folder, dim, factory=factory, save_every=10**9)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--backends", default="faiss-hnsw,faiss-ivf,milvus")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()
    real, spread = real_embeddings()
    data = mixture(real, spread, args.size, seed=0)
    # Queries: other views of indexed identities (real crops and synthetic members), not the vectors.
    rng_queries = np.random.default_rng(1)
    picks = data[rng_queries.integers(0, args.size, args.queries)]
    noisy = picks + rng_queries.normal(0, spread / np.sqrt(data.shape[1]), picks.shape).astype(np.float32)
    queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    truth = exact_top(queries, data, 10)
    rng = np.random.default_rng(2)
    cameras = rng.integers(0, len(CAMERAS), args.size)
    times = rng.uniform(0, 86_400, args.size)
    print(f"command: `python benchmarks/bench_index_scale.py {' '.join(sys.argv[1:])}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.size:,} vectors of 512-d "
        f"({len(real):,} real OSNet embeddings of Market-1501), {args.queries} single-vector queries  "
    )
    print()
    print(
        "| backend | build s | RSS growth MiB | p50 ms | p99 ms | recall@10 | filtered p50 / p99 ms | "
        "filtered exact k |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        gc.collect()
        with tempfile.TemporaryDirectory() as tmp:
            before = rss_mib()
            index = open_backend(name, Path(tmp), data.shape[1])
            started = time.perf_counter()
            for start in range(0, args.size, args.batch):
                stop = min(start + args.batch, args.size)
                entries = [
                    Entry(camera_id=CAMERAS[c], t_start=t, t_end=t + 10.0)
                    for c, t in zip(cameras[start:stop].tolist(), times[start:stop].tolist(), strict=True)
                ]
                index.add(np.arange(start, stop), data[start:stop], entries)
            if hasattr(index, "flush"):
                index.flush()
            build = time.perf_counter() - started
            grown = rss_mib() - before
            found, latencies = [], []
            for query in queries:
                started = time.perf_counter()
                hits = index.search(query[None, :], 10)
                latencies.append(time.perf_counter() - started)
                found.append(hits.ids[0])
            summary = LatencySummary.from_seconds(latencies)
            recall = recall_at_k(np.array(found), truth, 10)
            chosen = Filter(cameras=frozenset(CAMERAS[:2]), time_range=(20_000.0, 60_000.0))
            filtered, exact = [], 0
            probes = queries[:200]
            for query in probes:
                started = time.perf_counter()
                hits = index.search(query[None, :], 10, chosen)
                filtered.append(time.perf_counter() - started)
                exact += int((hits.ids[0] >= 0).sum() == 10)
            filtered_summary = LatencySummary.from_seconds(filtered)
            index.close()
        print(
            f"| {name} | {build:.0f} | {grown:.0f} | {summary.p50:.2f} | {summary.p99:.2f} | {recall:.3f} | "
            f"{filtered_summary.p50:.2f} / {filtered_summary.p99:.2f} | {exact}/{len(probes)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
