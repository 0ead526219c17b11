"""Vector index scale: build time, memory, single-query latency and recall@10, plus filtered search.

    python benchmarks/bench_index_scale.py [--size 1000000] [--backends faiss-hnsw,faiss-ivf,milvus]

Data: real OSNet x0.25 embeddings of the shared Market-1501 crops (512-d), completed to ``--size``
with synthetic identities drawn from a Gaussian model fitted to the real ones (``IdentityModel``);
1,000 queries that are new views of indexed identities. Ground truth: exact top-10 by brute force. Each
backend is built in a temporary folder (persistent mode, as deployed), then queried one vector at a
time, at several query-time settings (``efSearch``, ``nprobe``). Filtered queries (a camera subset
and a time range: one fixed filter, and a different time window per query) check that exactly k
hits come back.
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


def real_embeddings() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """OSNet embeddings of all Market crops, and their identities."""
    from crossview.embed.onnx import OnnxReidEmbedder
    from crossview.io.formats.reid import read_reid_manifest

    manifest = read_reid_manifest(SHARED / "data" / "market1501" / "manifest.csv")
    images = [np.asarray(cv2.imread(path), np.uint8) for path in manifest.files.tolist()]
    features = OnnxReidEmbedder(SHARED / "models" / "osnet_x0_25_msmt17.onnx").embed_images(images)
    return features, np.asarray(manifest.pids, dtype=np.int64)


class IdentityModel:
    """A Gaussian model of re-id embeddings fitted to real ones: identity means, and views around them.

    Identity centres are drawn with the mean and covariance of the real identities' mean embeddings;
    each view adds a residual drawn with the covariance of the real views around their identity
    mean; then everything is L2-normalised. Synthetic identities therefore have the real data's
    effective dimension (about 46 of 512) and spread, rather than isotropic noise in 512-d, which
    no embedding model produces and which is the worst case for graph and cluster indexes alike.
    """

    def __init__(self, real: NDArray[np.float32], pids: NDArray[np.int64]) -> None:
        identities = np.unique(pids)
        means = np.stack([real[pids == pid].mean(axis=0) for pid in identities.tolist()])
        residuals = np.concatenate(
            [real[pids == pid] - real[pids == pid].mean(axis=0) for pid in identities.tolist()]
        )
        self.mean = means.mean(axis=0)
        self.centre_factor = _covariance_factor(means - self.mean)
        self.view_factor = _covariance_factor(residuals)

    def views(self, centres: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
        """One new unit-norm view of each centre row."""
        noise = rng.standard_normal((len(centres), self.view_factor.shape[0]), dtype=np.float32)
        return _unit(centres + noise @ self.view_factor)

    def mixture(self, real: NDArray[np.float32], size: int, seed: int) -> NDArray[np.float32]:
        """``size`` unit vectors: the real ones, then synthetic identities of 20 views on average."""
        rng = np.random.default_rng(seed)
        parts = [real]
        remaining = size - len(real)
        while remaining > 0:
            count = min(remaining, 200_000)
            noise = rng.standard_normal((max(1, count // 20), self.centre_factor.shape[0]), dtype=np.float32)
            centres = self.mean + noise @ self.centre_factor
            parts.append(self.views(centres[rng.integers(0, len(centres), count)], rng))
            remaining -= count
        return np.concatenate(parts)[:size].astype(np.float32)


def _covariance_factor(centred: NDArray[np.float32]) -> NDArray[np.float32]:
    """``F`` with ``F.T @ F`` the sample covariance of the rows, so ``z @ F`` has that covariance."""
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    return np.asarray(singular[:, None] * rows / np.sqrt(len(centred) - 1), dtype=np.float32)


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


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

    factory = {"faiss-hnsw": "HNSW32", "faiss-ivf": "IVF1024,Flat", "faiss-flat": "Flat"}[name]
    return FaissIndex(folder, dim, factory=factory, save_every=10**9)


# query-time settings swept per backend (the first is measured with filters too); None: fixed
SWEEPS: dict[str, tuple[str, tuple[int, ...]] | None] = {
    "faiss-hnsw": ("ef_search", (384, 128, 256, 512)),
    "faiss-ivf": ("nprobe", (16, 32, 64, 128)),
    "faiss-flat": None,
    "milvus": None,
}


def single_queries(
    index: VectorIndex, queries: NDArray[np.float32], k: int, filters: list[Filter | None]
) -> tuple[LatencySummary, NDArray[np.int64]]:
    """One search per query, timed; the ids found."""
    found, latencies = [], []
    for query, search_filter in zip(queries, filters, strict=True):
        started = time.perf_counter()
        hits = index.search(query[None, :], k, search_filter)
        latencies.append(time.perf_counter() - started)
        found.append(hits.ids[0])
    return LatencySummary.from_seconds(latencies), np.array(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--backends", default="faiss-hnsw,faiss-ivf,milvus")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()
    real, pids = real_embeddings()
    model = IdentityModel(real, pids)
    data = model.mixture(real, args.size, seed=0)
    # Queries: new views of indexed identities (around an indexed view), never the indexed vectors.
    rng_queries = np.random.default_rng(1)
    queries = model.views(data[rng_queries.integers(0, args.size, args.queries)], rng_queries)
    truth = exact_top(queries, data, 10)
    rng = np.random.default_rng(2)
    cameras = rng.integers(0, len(CAMERAS), args.size)
    times = rng.uniform(0, 86_400, args.size)
    # filters: one fixed (cached after its first use), and a different time window for every query
    probes = queries[:200]
    fixed = Filter(cameras=frozenset(CAMERAS[:2]), time_range=(20_000.0, 60_000.0))
    windows = rng.uniform(0, 86_400 - 7_200, len(probes))
    varying = [Filter(cameras=frozenset(CAMERAS[:4]), time_range=(w, w + 7_200.0)) for w in windows.tolist()]
    print(f"command: `python benchmarks/bench_index_scale.py {' '.join(sys.argv[1:])}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.size:,} vectors of 512-d "
        f"({len(real):,} real OSNet embeddings of Market-1501), {args.queries} single-vector queries  "
    )
    print()
    print(
        "| backend | setting | build s | RSS growth MiB | p50 ms | p99 ms | recall@10 | "
        "fixed filter p50 / p99 ms | per-query filter p50 / p99 ms | filtered exact k |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
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
            sweep = SWEEPS[name]
            settings: tuple[int | None, ...] = sweep[1] if sweep is not None else (None,)
            for position, value in enumerate(settings):
                if sweep is not None:
                    setattr(index, sweep[0], value)
                summary, found = single_queries(index, queries, 10, [None] * len(queries))
                recall = recall_at_k(found, truth, 10)
                label = f"{sweep[0]}={value}" if sweep is not None else "default"
                if position == 0:
                    allowed = [fixed] * len(probes), varying
                    fixed_summary, fixed_found = single_queries(index, probes, 10, allowed[0])
                    varying_summary, varying_found = single_queries(index, probes, 10, allowed[1])
                    exact = int(((fixed_found >= 0).sum(axis=1) == 10).sum())
                    exact += int(((varying_found >= 0).sum(axis=1) == 10).sum())
                    filtered = (
                        f"{fixed_summary.p50:.2f} / {fixed_summary.p99:.2f} | "
                        f"{varying_summary.p50:.2f} / {varying_summary.p99:.2f} | {exact}/{2 * len(probes)}"
                    )
                else:
                    filtered = "- | - | -"
                print(
                    f"| {name} | {label} | {build:.0f} | {grown:.0f} | {summary.p50:.2f} | "
                    f"{summary.p99:.2f} | {recall:.3f} | {filtered} |",
                    flush=True,
                )
            index.close()


if __name__ == "__main__":
    main()
