"""The REST service under load on loopback: search latency, ingest throughput, and overload.

    python benchmarks/bench_serve.py [--gallery 100000] [--requests 2000] [--seconds 20]
        [--ingest-seconds 30] [--overload-seconds 20] [--max-queued 32] [--quick] [--data-dir D]

1. *Gallery.* Before the server starts, ``data_dir/index`` (the service's durable ``FaissIndex``,
   HNSW32, 480-d like the default colour-histogram embedder) is filled directly with ``--gallery``
   entries: clustered, non-negative, L2-normalised histogram-like vectors (``--identities``
   centres, each entry a noisy view of one), 8 cameras, classes 0 and 2. Their ids start at
   ``GALLERY_ID0`` so the tracks the service indexes during the ingest phases (ids 1, 2, ... from
   its tracks table) never replace gallery entries. Then ``crossview serve`` runs as a child
   process on 127.0.0.1 with a rate limit high enough never to bite.
2. *Search.* For 1, 8 and 32 clients (threads, one ``httpx.Client`` each), a closed loop posts
   ``/v1/search`` ``{"embedding": q, "k": 10}`` (``q``: noisy copies of gallery vectors) until
   ``--requests`` per level or ``--seconds`` per level, whichever comes first, after 50 warm-up
   requests. Client-side latency per request; "top hit = source" is the share of answers whose
   first hit is the entry the query was copied from.
3. *Ingest.* 4 clients, one camera each, post batches of ``--frames-per-batch`` frames x 10
   detections with 480-d embeddings (4 decimals in the JSON) in a closed loop for
   ``--ingest-seconds``; then ``/v1/stats`` is polled until ``batches_queued == 0``. Every batch
   starts new tracks, so the previous ones end and are indexed while the worker runs. The
   sustainable rate is the batches processed over the whole time (clients' window + drain).
4. *Overload.* The server is restarted with ``--max-queued`` and an open loop offers batches at
   ``--overload-factor`` (2) times the sustainable rate for ``--overload-seconds``; accepted (202)
   and refused (503 queue full, 429) requests are counted and timed separately, and
   ``/metrics``'s ingest queue depth is sampled.

The load clients run in this process on the same machine as the server, so they share its cores:
the figures are those of the whole loopback system. Server and client CPU time per phase (from
``/proc``) shows who used the cores. Progress goes to stderr; stdout is the markdown block for
docs/benchmarks.md. ``--quick``: 10,000 gallery entries, 300 requests or 5 s per search level,
5 s of ingest and of overload, a queue bound of 8 (explicit options still win).
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faiss
import httpx
import numpy as np
from numpy.typing import NDArray

from crossview.eval.latency import LatencySummary
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry
from crossview.serve.keys import KeyStore

DIM = 480  # the default colour-histogram embedder's size
CAMERAS = tuple(f"c{i}" for i in range(8))
GALLERY_ID0 = 1_000_000_000  # gallery ids: far above the ids the service gives its own tracks
SEARCH_LEVELS = (1, 8, 32)
WARMUP = 50
INGEST_CLIENTS = 4
DETECTIONS_PER_FRAME = 10
FPS = 10.0
JSON = {"Content-Type": "application/json"}
QUEUE_DEPTH = re.compile(r"^crossview_ingest_queue_depth (\S+)$", re.MULTILINE)
FULL = {"gallery": 100_000, "identities": 5000, "requests": 2000, "seconds": 20.0}
FULL |= {"ingest_seconds": 30.0, "overload_seconds": 20.0, "max_queued": 32}
QUICK = {"gallery": 10_000, "identities": 500, "requests": 300, "seconds": 5.0}
QUICK |= {"ingest_seconds": 5.0, "overload_seconds": 5.0, "max_queued": 8}
EXACT_BELOW = 10_000  # FaissIndex's default: galleries this small are searched by an exact scan


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ gallery
def _unit(rows: NDArray[np.float64]) -> NDArray[np.float32]:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def _views(centres: NDArray[np.float64], noise: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """Non-negative unit vectors around ``centres`` (one per row)."""
    return _unit(np.maximum(centres + noise * rng.standard_normal(centres.shape), 0.0) + 1e-6)


@dataclass(frozen=True)
class Gallery:
    size: int
    identities: int
    build_s: float
    query_ids: NDArray[np.int64]
    queries: NDArray[np.float32]


def build_gallery(folder: Path, size: int, identities: int, n_queries: int, seed: int = 0) -> Gallery:
    """Fill a durable HNSW32 ``FaissIndex`` at ``folder``; queries are noisy copies of entries."""
    rng = np.random.default_rng(seed)
    centres = rng.random((identities, DIM)) ** 4  # peaked, like colour histograms
    chosen = np.sort(rng.choice(size, size=min(n_queries, size), replace=False))
    sources: list[NDArray[np.float32]] = []
    chunk = 10_000
    started = time.perf_counter()
    index = FaissIndex(folder, DIM, factory="HNSW32", save_every=10**12)
    try:
        for start in range(0, size, chunk):
            stop = min(start + chunk, size)
            owners = rng.integers(0, identities, stop - start)
            vectors = _views(centres[owners], 0.1, rng)
            t_start = rng.uniform(0.0, 86_400.0, stop - start)
            duration = rng.uniform(1.0, 60.0, stop - start)
            entries = [
                Entry(
                    camera_id=CAMERAS[i % len(CAMERAS)],
                    track_id=i + 1,
                    class_id=2 if i % 5 == 0 else 0,
                    t_start=float(t0),
                    t_end=float(t0 + d),
                )
                for i, t0, d in zip(range(start, stop), t_start.tolist(), duration.tolist(), strict=True)
            ]
            index.add(GALLERY_ID0 + np.arange(start, stop), vectors, entries)
            inside = chosen[(chosen >= start) & (chosen < stop)]
            sources.append(vectors[inside - start])
        index.flush()
    finally:
        index.close()
    build_s = time.perf_counter() - started
    queries = _views(np.concatenate(sources).astype(np.float64), 0.01, rng)
    order = rng.permutation(len(chosen))  # queries in random order, not by id
    return Gallery(size, identities, build_s, GALLERY_ID0 + chosen[order], queries[order])


# ------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``python -m crossview.cli serve`` on a free port of 127.0.0.1, logging to a file."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "crossview.cli", "serve", "--data-dir", str(data_dir)]
        command += ["--port", str(self.port), *args]
        self._log = log_path.open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after 600 s (log: {log_path})")
            time.sleep(0.1)
        self.ready_s = time.perf_counter() - started

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def stop(self) -> tuple[float, bool]:
        """SIGTERM (the service drains, indexes and flushes); seconds to exit, and a clean stop."""
        started = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()
        return time.perf_counter() - started, '"event": "stopped"' in self.log_path.read_text()


@dataclass
class Usage:
    """Wall time and CPU seconds of the server and of this (client) process over one phase."""

    server: Server
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    _marks: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __enter__(self) -> Usage:
        self._marks = (time.perf_counter(), self.server.cpu(), cpu_seconds())
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall, server, client = self._marks
        self.wall = time.perf_counter() - wall
        self.server_cpu = self.server.cpu() - server
        self.client_cpu = cpu_seconds() - client

    def cores(self) -> str:
        """Cores busy on average: server / client."""
        wall = max(self.wall, 1e-9)
        return f"{self.server_cpu / wall:.2f} / {self.client_cpu / wall:.2f}"


# ------------------------------------------------------------------------------------------- search
@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # per request: the HTTP status, or the error
    top_hits: int = 0
    elapsed: float = 0.0

    def record(self, latency: float, code: str) -> None:
        self.latencies.append(latency)
        self.codes.append(code)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(self.codes)

    @property
    def count(self) -> int:
        return len(self.codes)

    @property
    def errors(self) -> int:
        return self.count - self.statuses.get("200", 0)


def search_bodies(queries: NDArray[np.float32]) -> list[bytes]:
    return [
        ('{"k": 10, "embedding": [' + ",".join(f"{v:.6g}" for v in q.tolist()) + "]}").encode()
        for q in queries
    ]


def search_loop(
    url: str,
    token: str,
    bodies: list[bytes],
    sources: NDArray[np.int64],
    clients: int,
    limit: int,
    seconds: float,
) -> LoadResult:
    """``clients`` threads posting ``/v1/search`` back to back until ``limit`` requests or ``seconds``."""
    result = LoadResult()
    lock = threading.Lock()
    issued = 0
    deadline = time.perf_counter() + seconds

    def client() -> None:
        nonlocal issued
        headers = {"Authorization": f"Bearer {token}", **JSON}
        with httpx.Client(base_url=url, headers=headers, timeout=60.0) as http:
            while True:
                with lock:
                    if issued >= limit or time.perf_counter() >= deadline:
                        return
                    ticket = issued
                    issued += 1
                body = bodies[ticket % len(bodies)]
                started = time.perf_counter()
                top = False
                try:
                    response = http.post("/v1/search", content=body)
                    status = str(response.status_code)
                    if response.status_code == 200:
                        hits = response.json()["hits"]
                        top = bool(hits) and hits[0]["track"] == int(sources[ticket % len(sources)])
                except httpx.HTTPError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    result.record(elapsed, status)
                    result.top_hits += top

    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"search-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------------- ingest
class BatchTemplate:
    """Pre-encoded JSON pieces of ingest batches: ``frames`` frames x 10 detections with embeddings.

    Detection lists are encoded once per (batch parity, frame position): the boxes of batch ``b``
    start at the left (even ``b``) or 2000 px to the right (odd ``b``) and move 4 px per frame, so
    every batch starts new tracks and ends the previous batch's ones a few batches later. A body
    is then a join of bytes, so the clients spend their CPU on HTTP, not on JSON encoding.
    """

    def __init__(self, frames: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.frames = frames
        self.pieces: list[list[bytes]] = []
        for parity in range(2):
            looks = _unit(rng.random((DETECTIONS_PER_FRAME, DIM)) ** 4)
            encoded = ["[" + ",".join(f"{v:.4f}" for v in look.tolist()) + "]" for look in looks]
            per_frame = []
            for position in range(frames):
                detections = []
                for lane in range(DETECTIONS_PER_FRAME):
                    x = 20.0 + 2000.0 * parity + 4.0 * position
                    y = 40.0 + 150.0 * lane
                    box = f"[{x:.1f},{y:.1f},{x + 40.0:.1f},{y + 100.0:.1f}]"
                    confidence = 0.6 + 0.03 * lane
                    detections.append(
                        f'{{"xyxy":{box},"confidence":{confidence:.2f},"class_id":0,'
                        f'"embedding":{encoded[lane]}}}'
                    )
                per_frame.append(("[" + ",".join(detections) + "]").encode())
            self.pieces.append(per_frame)


class CameraFeed:
    """Successive batch bodies of one camera: frame indices and timestamps keep increasing."""

    def __init__(self, camera_id: str, template: BatchTemplate) -> None:
        self.camera_id = camera_id
        self.template = template
        self.batch = 0

    def next_body(self) -> bytes:
        frames = self.template.frames
        pieces = self.template.pieces[self.batch % 2]
        parts = [f'{{"camera_id":"{self.camera_id}","model":"bench","frames":['.encode()]
        for position in range(frames):
            index = self.batch * frames + position
            head = (
                f'{"," if position else ""}{{"frame_index":{index},"timestamp":{index / FPS!r},"detections":'
            )
            parts += [head.encode(), pieces[position], b"}"]
        parts.append(b"]}")
        self.batch += 1
        return b"".join(parts)


def stats(url: str, token: str) -> dict[str, int]:
    response = httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
    response.raise_for_status()
    return dict(response.json())


@dataclass
class IngestResult:
    load: LoadResult
    window: float
    drain_s: float
    drained: bool
    processed: int
    failed: int
    body_bytes: int


def ingest_loop(
    url: str, token: str, template: BatchTemplate, seconds: float, drain_timeout: float
) -> IngestResult:
    """4 closed-loop clients, one camera each, for ``seconds``; then wait for the queue to drain."""
    result = LoadResult()
    lock = threading.Lock()
    before = stats(url, token)
    started = time.perf_counter()
    deadline = started + seconds
    sizes: list[int] = []

    def client(number: int) -> None:
        feed = CameraFeed(f"bench-ingest-{number}", template)
        headers = {"Authorization": f"Bearer {token}", **JSON}
        with httpx.Client(base_url=url, headers=headers, timeout=120.0) as http:
            while time.perf_counter() < deadline:
                body = feed.next_body()
                sizes.append(len(body))
                begun = time.perf_counter()
                try:
                    status = str(http.post("/v1/ingest/detections", content=body).status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - begun
                with lock:
                    result.record(elapsed, status)
                if status != "202":
                    time.sleep(0.05)  # refused (queue full): back off a little, then go on

    threads = [threading.Thread(target=client, args=(i,), name=f"ingest-{i}") for i in range(INGEST_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stopped = time.perf_counter()
    result.elapsed = stopped - started
    drained = False
    while time.perf_counter() - stopped < drain_timeout:
        if stats(url, token)["batches_queued"] == 0:
            drained = True
            break
        time.sleep(0.25)
    drain_s = time.perf_counter() - stopped
    after = stats(url, token)
    return IngestResult(
        load=result,
        window=result.elapsed,
        drain_s=drain_s,
        drained=drained,
        processed=after["batches_done"] - before["batches_done"],
        failed=after["batches_failed"] - before["batches_failed"],
        body_bytes=int(np.mean(sizes)) if sizes else 0,
    )


# ----------------------------------------------------------------------------------------- overload
@dataclass
class Send:
    due: float
    started: float
    latency: float
    status: str


@dataclass
class OverloadResult:
    rate: float
    duration: float
    sends: list[Send]
    depth: list[tuple[float, float]]


def overload_loop(
    url: str, token: str, template: BatchTemplate, rate: float, seconds: float, workers: int
) -> OverloadResult:
    """Open loop: one batch every ``1 / rate`` s (on an absolute schedule) for ``seconds``.

    Each send takes a camera no other send is using (a pool), so a camera's batches stay in time
    order; ``workers`` threads send, so a slow answer does not delay the next send unless all of
    them are busy (then the send starts late: ``started - due`` is reported as send lag).
    """
    cameras: queue.SimpleQueue[CameraFeed] = queue.SimpleQueue()
    for number in range(2 * workers):
        cameras.put(CameraFeed(f"bench-overload-{number}", template))
    local = threading.local()
    sends: list[Send] = []
    opened: list[httpx.Client] = []
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}", **JSON}

    def send(due: float) -> None:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=url, headers=headers, timeout=120.0)
            with lock:
                opened.append(http)
        feed = cameras.get()
        try:
            body = feed.next_body()
            started = time.perf_counter()
            try:
                status = str(http.post("/v1/ingest/detections", content=body).status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            latency = time.perf_counter() - started
        finally:
            cameras.put(feed)
        with lock:
            sends.append(Send(due, started, latency, status))

    depth: list[tuple[float, float]] = []
    stop = threading.Event()
    begin = time.perf_counter()

    def sample() -> None:
        interval = max(0.5, seconds / 6)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0) as http:
            while not stop.wait(interval):
                try:
                    match = QUEUE_DEPTH.search(http.get("/metrics").text)
                except httpx.HTTPError:
                    continue
                if match:
                    depth.append((time.perf_counter() - begin, float(match.group(1))))

    sampler = threading.Thread(target=sample, name="metrics-sampler")
    sampler.start()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="overload") as pool:
        number = 0
        while True:
            due = begin + number / rate
            if due >= begin + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, due)
            number += 1
    stop.set()
    sampler.join()
    for http in opened:
        http.close()
    return OverloadResult(rate, seconds, sends, depth)


# ------------------------------------------------------------------------------------------- report
def ms(summary: LatencySummary) -> str:
    return f"{summary.p50:.1f} / {summary.p99:.1f}"


def statuses(counts: Counter[str]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(counts.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gallery", type=int, help="gallery entries (default 100,000; --quick 10,000)")
    parser.add_argument("--identities", type=int, help="identity centres (default 5,000; --quick 500)")
    parser.add_argument("--requests", type=int, help="search requests per level (default 2000)")
    parser.add_argument("--seconds", type=float, help="search seconds per level at most (default 20)")
    parser.add_argument("--ingest-seconds", type=float, help="closed-loop ingest window (default 30)")
    parser.add_argument("--frames-per-batch", type=int, default=30)
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="longest wait for the queue")
    parser.add_argument("--overload-seconds", type=float, help="open-loop overload window (default 20)")
    parser.add_argument("--overload-factor", type=float, default=2.0, help="offered / sustainable rate")
    parser.add_argument("--overload-rate", type=float, help="offered batches/s (default: factor x measured)")
    parser.add_argument("--overload-workers", type=int, default=64, help="sending threads")
    parser.add_argument("--max-queued", type=int, help="the overload server's queue bound (32; --quick 8)")
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--data-dir", type=Path, help="keep the service's data here (default: temporary)")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    temporary = None
    if args.data_dir is None:
        temporary = tempfile.mkdtemp(prefix="bench-serve-")
        root = Path(temporary)
        data_dir = root / "data"
    else:
        data_dir = args.data_dir
        if data_dir.exists() and any(data_dir.iterdir()):
            sys.exit(f"--data-dir {data_dir} is not empty")
        root = data_dir  # the server logs go beside the service's files
    data_dir.mkdir(parents=True, exist_ok=True)
    server: Server | None = None
    try:
        log(f"building a gallery of {args.gallery:,} entries in {data_dir / 'index'}")
        gallery = build_gallery(data_dir / "index", args.gallery, args.identities, n_queries=1000)
        log(f"gallery built in {gallery.build_s:.1f} s")
        with KeyStore(data_dir / "keys.sqlite") as keys:
            token, _ = keys.create("bench", "admin")
        limits = ["--rate", "100000", "--burst", "100000"]
        server = Server(data_dir, root / "server-1.log", *limits)
        first_ready = server.ready_s
        log(f"server ready in {first_ready:.1f} s on {server.url}")

        # search
        bodies = search_bodies(gallery.queries)
        search_loop(server.url, token, bodies, gallery.query_ids, 1, WARMUP, 60.0)
        searches: list[tuple[int, LoadResult, Usage]] = []
        for clients in SEARCH_LEVELS:
            with Usage(server) as usage:
                result = search_loop(
                    server.url, token, bodies, gallery.query_ids, clients, args.requests, args.seconds
                )
            log(f"search x{clients}: {result.count} requests in {result.elapsed:.1f} s")
            searches.append((clients, result, usage))
        search_rss = server.rss_mib()

        # ingest
        template = BatchTemplate(args.frames_per_batch)
        with Usage(server) as ingest_usage:
            ingest = ingest_loop(server.url, token, template, args.ingest_seconds, args.drain_timeout)
        sustainable = ingest.processed / (ingest.window + ingest.drain_s)
        log(
            f"ingest: {ingest.load.statuses.get('202', 0)} accepted in {ingest.window:.1f} s, "
            f"drained in {ingest.drain_s:.1f} s; sustainable {sustainable:.2f} batches/s"
        )
        first_stop_s, first_clean = server.stop()
        server = None

        # overload
        server = Server(data_dir, root / "server-2.log", *limits, "--max-queued", str(args.max_queued))
        second_ready = server.ready_s
        rate = args.overload_rate or args.overload_factor * sustainable
        log(f"overload: offering {rate:.2f} batches/s for {args.overload_seconds:.0f} s")
        with Usage(server) as overload_usage:
            overload = overload_loop(
                server.url, token, template, rate, args.overload_seconds, args.overload_workers
            )
        final = stats(server.url, token)
        last_stop_s, last_clean = server.stop()
        server = None
        log("done")
    except BaseException:
        logs = sorted(root.glob("server-*.log"))
        if logs:
            log(f"failed; the end of {logs[-1].name}:\n{logs[-1].read_text()[-3000:]}")
        raise
    finally:
        if server is not None:
            server.stop()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)

    report(
        args,
        gallery,
        (first_ready, second_ready),
        search_rss,
        searches,
        ingest,
        ingest_usage,
        sustainable,
        overload,
        overload_usage,
        final,
        ((first_stop_s, first_clean), (last_stop_s, last_clean)),
    )


def report(
    args: argparse.Namespace,
    gallery: Gallery,
    ready: tuple[float, float],
    search_rss: float,
    searches: list[tuple[int, LoadResult, Usage]],
    ingest: IngestResult,
    ingest_usage: Usage,
    sustainable: float,
    overload: OverloadResult,
    overload_usage: Usage,
    final: dict[str, int],
    stops: tuple[tuple[float, bool], tuple[float, bool]],
) -> None:
    out = print
    frames = args.frames_per_batch
    detections = frames * DETECTIONS_PER_FRAME
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out("### Service under load on loopback: search, ingest, overload")
    out()
    out(f"command: `python benchmarks/bench_serve.py {' '.join(sys.argv[1:])}`  ")
    out(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    out(
        f"machine: {platform.platform()}, {platform.machine()}, os.cpu_count() {os.cpu_count()} "
        f"(usable {cpus}); Python {platform.python_version()}, faiss {faiss.__version__}, "
        f"httpx {httpx.__version__}  "
    )
    out(
        "note: the load clients (threads of this process) and the server share these cores; "
        '"cores server / client" is CPU time per wall second of each side during the phase.  '
    )
    out()
    out(
        f"Gallery: {gallery.size:,} entries of {DIM}-d ({gallery.identities:,} identities, 8 cameras), "
        f"durable `FaissIndex` HNSW32 filled through `add` in chunks of 10,000, then flushed: "
        f"**{gallery.build_s:.1f} s** ({gallery.size / gallery.build_s:,.0f} entries/s). "
        f"Server start to ready (loading that index): {ready[0]:.1f} s; restart for the overload "
        f"phase: {ready[1]:.1f} s (after {stops[0][0]:.1f} s of SIGTERM shutdown, clean: {stops[0][1]}). "
        f"Server RSS after the search phase: {search_rss:,.0f} MiB."
    )
    out()
    out(
        f"#### Search: `POST /v1/search` `{{embedding, k: 10}}`, closed loop, at most {args.requests} "
        f"requests or {args.seconds:.0f} s per level, after {WARMUP} warm-up requests"
    )
    out()
    if gallery.size <= EXACT_BELOW:
        out(
            f"Index path: exact numpy scan (a gallery of at most {EXACT_BELOW:,} entries is not searched "
            "through HNSW; `FaissIndex(exact_below=...)`)."
        )
    else:
        out(
            "Index path: HNSW32, efSearch 384 (`FaissIndex` default); without re-ranking the service "
            "fetches just the k = 10 nearest."
        )
    out()
    out(
        "| clients | requests | errors | p50 / p99 ms | max ms | req/s | top hit = source "
        "| cores server / client |"
    )
    out("|---|---|---|---|---|---|---|---|")
    for clients, result, usage in searches:
        summary = LatencySummary.from_seconds(result.latencies)
        out(
            f"| {clients} | {result.count} | {result.errors} | {ms(summary)} | {summary.max:.1f} | "
            f"{result.count / result.elapsed:.1f} | {result.top_hits / max(result.count, 1):.1%} | "
            f"{usage.cores()} |"
        )
    out()
    load = ingest.load
    accepted = load.statuses.get("202", 0)
    accepted_latency = LatencySummary.from_seconds(
        [latency for latency, status in zip(load.latencies, load.codes, strict=True) if status == "202"]
    )
    total = ingest.window + ingest.drain_s
    out(
        f"#### Ingest: {INGEST_CLIENTS} clients (one camera each), closed loop for "
        f"{args.ingest_seconds:.0f} s; batches of {frames} frames x {DETECTIONS_PER_FRAME} detections "
        f"with {DIM}-d embeddings ({ingest.body_bytes / 1024:,.0f} KiB of JSON each)"
    )
    out()
    out("| figure | value |")
    out("|---|---|")
    out(
        f"| accepted (202) | {accepted} batches in {ingest.window:.1f} s: {accepted / ingest.window:.2f} "
        f"batches/s, {accepted * frames / ingest.window:,.0f} frames/s, "
        f"{accepted * detections / ingest.window:,.0f} detections/s |"
    )
    out(f"| other answers | {statuses(Counter({s: c for s, c in load.statuses.items() if s != '202'}))} |")
    out(
        f"| accepted request latency p50 / p99 / max | {ms(accepted_latency)} / "
        f"{accepted_latency.max:.1f} ms |"
    )
    out(
        f"| worker drain after the clients stopped | {ingest.drain_s:.1f} s "
        f"({'drained' if ingest.drained else f'NOT drained within {args.drain_timeout:.0f} s'}) |"
    )
    out(
        f"| processed (batches done / (window + drain)) | {ingest.processed} batches "
        f"({ingest.failed} failed) in {total:.1f} s: **{sustainable:.2f} batches/s**, "
        f"{sustainable * frames:,.0f} frames/s, {sustainable * detections:,.0f} detections/s |"
    )
    out(f"| cores server / client | {ingest_usage.cores()} |")
    out()
    sends = overload.sends
    first_due = min((s.due for s in sends), default=0.0)
    span = max((s.started + s.latency for s in sends), default=first_due) - first_due
    by_status = Counter(s.status for s in sends)
    ok = [s for s in sends if s.status == "202"]
    refused = [s for s in sends if s.status != "202"]
    ok_latency = LatencySummary.from_seconds([s.latency for s in ok])
    refused_latency = LatencySummary.from_seconds([s.latency for s in refused])
    lag = LatencySummary.from_seconds([max(s.started - s.due, 0.0) for s in sends])
    depth = ", ".join(f"{value:.0f} at {at:.0f} s" for at, value in overload.depth) or "no samples"
    out(
        f"#### Overload: server restarted with `--max-queued {args.max_queued}`; open loop at "
        f"{args.overload_factor:g}x the sustainable rate for {args.overload_seconds:.0f} s "
        f"({args.overload_workers} sending threads, one camera per in-flight batch)"
    )
    out()
    out("| figure | value |")
    out("|---|---|")
    out(
        f"| offered | {len(sends)} batches, {overload.rate:.2f} batches/s scheduled "
        f"({len(sends) / overload.duration:.2f}/s sent) |"
    )
    out(
        f"| accepted (202) | {len(ok)} batches, {len(ok) / overload.duration:.2f} batches/s, "
        f"{len(ok) * frames / overload.duration:,.0f} frames/s |"
    )
    out(f"| refused, by status | {statuses(Counter({k: v for k, v in by_status.items() if k != '202'}))} |")
    out(
        f"| latency of accepted p50 / p99 / max | {ms(ok_latency)} / {ok_latency.max:.1f} ms "
        f"(n = {ok_latency.count}) |"
    )
    out(
        f"| latency of refused p50 / p99 / max | {ms(refused_latency)} / {refused_latency.max:.1f} ms "
        f"(n = {refused_latency.count}) |"
    )
    out(f"| send lag behind schedule p50 / p99 | {ms(lag)} ms |")
    out(f"| ingest queue depth (`/metrics`) | {depth} |")
    out(f"| last answer after the first send | {span:.1f} s |")
    out(f"| cores server / client | {overload_usage.cores()} |")
    out(
        f"| service totals at the end | {final['batches_done']} batches done, "
        f"{final['batches_queued']} queued, {final['batches_failed']} failed, {final['tracks']:,} tracks, "
        f"{final['index_entries']:,} index entries |"
    )
    out(f"| SIGTERM to exit | {stops[1][0]:.1f} s (clean: {stops[1][1]}) |")


if __name__ == "__main__":
    main()
