"""Overload: a live source at twice the rate the pipeline sustains, behind a ``drop_oldest`` buffer.

A camera produces fresh frames paced at twice the measured rate of the consumer, behind
``BufferedSource`` (``drop_oldest`` by default) for ``--seconds``. The consumer is either the real
perception pipeline (``--pipeline``: YOLOX-Nano + ByteTrack on frames of the shared street video,
cycled) or a fixed amount of real OpenCV work per frame on synthetic 1280x720 frames (Gaussian
blurs, one OpenCV thread). Reported: frames produced, consumed and dropped, resident memory sampled
every half second (first, last, max: it must stay flat, since the buffer holds at most
``--capacity`` frames), and per-frame latency from arrival (the frame's timestamp) to the moment
the consumer is done with it (tracks out, with ``--pipeline``).

    python benchmarks/bench_overload.py [--seconds 60] [--pipeline | --work-ms 20] [--capacity 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview import Frame
from crossview.eval.latency import LatencySummary
from crossview.io.buffer import BufferedSource, BufferStats, OverflowPolicy
from crossview.io.sources import SourceStats

WIDTH, HEIGHT = 1280, 720
MIB = 1024 * 1024


class PacedSyntheticSource:
    """A ``FrameSource`` that produces a new frame every ``1 / fps`` seconds, like a camera.

    Each frame is a fresh array (as a decoder would give), timestamped with ``time.perf_counter()``
    at its arrival. The schedule is absolute, so short stalls are caught up rather than slowing
    the average rate.
    """

    def __init__(
        self, fps: float, camera_id: str = "synthetic", images: list[NDArray[np.uint8]] | None = None
    ) -> None:
        self._period = 1.0 / fps
        self._camera_id = camera_id
        self._stats = SourceStats()
        self._stop = threading.Event()
        rng = np.random.default_rng(0)
        self._images = images or [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)]

    @property
    def camera_id(self) -> str:
        return self._camera_id

    @property
    def stats(self) -> SourceStats:
        return self._stats

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        due = time.perf_counter()
        while not self._stop.is_set():
            delay = due - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                return
            image = self._images[index % len(self._images)].copy()
            yield Frame(image, self._camera_id, index, time.perf_counter())
            self._stats.frames_read += 1
            index += 1
            due += self._period

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Work:
    """A fixed amount of real per-frame work: ``repeats`` 15x15 Gaussian blurs of the frame."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats

    def __call__(self, image: NDArray[np.uint8]) -> float:
        result = image
        for _ in range(self.repeats):
            result = np.asarray(cv2.GaussianBlur(result, (15, 15), 0), dtype=np.uint8)
        return float(result[0, 0, 0])

    @classmethod
    def calibrated(cls, target_ms: float, image: NDArray[np.uint8]) -> tuple[Work, float]:
        """The work closest to ``target_ms`` per frame, and its measured mean milliseconds."""
        one = cls(1)
        one(image)
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            one(image)
            samples.append(time.perf_counter() - started)
        repeats = max(1, round(target_ms / (1000 * float(np.median(samples)))))
        work = cls(repeats)
        started = time.perf_counter()
        for _ in range(30):
            work(image)
        return work, (time.perf_counter() - started) / 30 * 1000


def resident_bytes() -> int:
    """Current resident set size, from ``/proc/self/statm`` (pages)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemorySampler:
    """Samples resident memory every ``interval`` seconds on a background thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._started, resident_bytes()))

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self._started, resident_bytes()))
            if self._stop.wait(self.interval):
                return


@dataclass(frozen=True)
class OverloadResult:
    """What one run measured."""

    consumer: str
    frame_bytes: int
    work_ms: float
    consumer_fps: float
    source_fps: float
    elapsed: float
    produced: int
    consumed: int
    buffer: BufferStats
    latency: LatencySummary
    rss: list[tuple[float, int]]


def pipeline_consumer() -> tuple[Callable[[Frame], object], list[NDArray[np.uint8]], str]:
    """YOLOX-Nano + ByteTrack on the shared street video's frames, as the consumer."""
    from pathlib import Path

    from crossview.detect.factory import make_detector
    from crossview.io.sources import VideoFileSource
    from crossview.pipeline import Pipeline
    from crossview.track import make_tracker

    shared = Path(__file__).resolve().parents[1].parent / "shared"
    video, model = shared / "data" / "video" / "vtest.avi", shared / "models" / "yolox_nano.onnx"
    if not video.exists() or not model.exists():
        sys.exit(f"--pipeline needs {video} and {model}")
    with VideoFileSource(video, "street", max_frames=200) as source:
        images = [frame.image for frame in source]
    pipeline = Pipeline(
        make_detector(f"yolox:{model}", classes=("person", "car"), intra_op_num_threads=2),
        lambda: make_tracker("bytetrack", frame_rate=10.0),
    )

    def consume(frame: Frame) -> object:
        return pipeline.process([frame])

    return consume, images, "YOLOX-Nano + ByteTrack on vtest.avi frames"


def run(
    seconds: float, work_ms: float, capacity: int, policy: OverflowPolicy, *, use_pipeline: bool
) -> OverloadResult:
    """Calibrate the consumer, run the 2x source behind the buffer for ``seconds``, measure."""
    cv2.setNumThreads(1)  # a fixed, single-core budget per frame: the consumer's rate is stable
    images: list[NDArray[np.uint8]] | None = None
    if use_pipeline:
        consume, images, label = pipeline_consumer()
        started = time.perf_counter()
        for index in range(30):
            consume(Frame(images[index], "calibration", index, 0.0))
        measured_ms = (time.perf_counter() - started) / 30 * 1000
    else:
        probe = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        work, measured_ms = Work.calibrated(work_ms, probe)

        def consume(frame: Frame) -> object:
            return work(frame.image)

        label = f"{work.repeats} x GaussianBlur 15x15 on {WIDTH}x{HEIGHT}, 1 OpenCV thread"
    consumer_fps = 1000.0 / measured_ms
    source = PacedSyntheticSource(fps=2.0 * consumer_fps, images=images)
    latencies: list[float] = []
    consumed = 0
    frame_bytes = 0
    with MemorySampler() as memory:
        buffered = BufferedSource(source, capacity=capacity, policy=policy)
        started = time.perf_counter()
        for frame in buffered:
            consume(frame)
            latencies.append(time.perf_counter() - frame.timestamp)
            frame_bytes = frame.image.nbytes
            consumed += 1
            if time.perf_counter() - started >= seconds:
                break
        elapsed = time.perf_counter() - started
        buffer = buffered.buffer_stats()
        buffered.close()
    return OverloadResult(
        consumer=label,
        frame_bytes=frame_bytes,
        work_ms=measured_ms,
        consumer_fps=consumer_fps,
        source_fps=2.0 * consumer_fps,
        elapsed=elapsed,
        produced=source.stats.frames_read,
        consumed=consumed,
        buffer=buffer,
        latency=LatencySummary.from_seconds(latencies),
        rss=memory.samples,
    )


def report(result: OverloadResult, capacity: int) -> str:
    """The markdown block for docs/benchmarks.md."""
    latency, buffer = result.latency, result.buffer
    backlog = result.produced - result.consumed
    frame_gib = result.frame_bytes / 1024**3
    first, last, peak = result.rss[0][1] / MIB, result.rss[-1][1] / MIB, max(v for _, v in result.rss) / MIB
    # Memory grows while the buffer and the allocator's pools fill; after that it must stay flat.
    warm_at, warm = min(result.rss, key=lambda sample: abs(sample[0] - min(5.0, result.elapsed / 4)))
    command = "python " + " ".join(shlex.quote(part) for part in sys.argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"### Overload: source at 2x the consumer's rate, `{buffer.policy.value}` buffer of {capacity}",
        "",
        f"`{command}`  ",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.system()} {platform.machine()}, nproc {cpus}; "
        f"Python {platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| consumer work per frame | {result.work_ms:.1f} ms ({result.consumer}) |",
        f"| consumer rate / source rate | {result.consumer_fps:.1f} / {result.source_fps:.1f} fps |",
        f"| run | {result.elapsed:.1f} s |",
        f"| frames produced | {result.produced} ({result.produced / result.elapsed:.1f}/s) |",
        f"| frames consumed | {result.consumed} ({result.consumed / result.elapsed:.1f}/s) |",
        f"| frames dropped | {buffer.dropped} ({buffer.dropped / max(result.produced, 1):.1%} of produced) |",
        f"| left in the buffer at the end | {buffer.depth} |",
        f"| buffer high-water mark | {buffer.high_water} of {capacity} |",
        f"| latency arrival to done, p50 / p90 / p99 / max | {latency.p50:.1f} / {latency.p90:.1f} / "
        f"{latency.p99:.1f} / {latency.max:.1f} ms (n = {latency.count}) |",
        f"| RSS first / last / max ({len(result.rss)} samples, every 0.5 s) | {first:.1f} / {last:.1f} / "
        f"{peak:.1f} MiB (last - first {last - first:+.1f} MiB) |",
        f"| RSS after warm-up ({warm_at:.0f} s) / last | {warm / MIB:.1f} / {last:.1f} MiB "
        f"(last - warm {last - warm / MIB:+.1f} MiB) |",
        f"| an unbounded queue would hold at the end | {backlog} frames, {backlog * frame_gib:.1f} GiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--work-ms", type=float, default=20.0, help="consumer work per frame (default 20)")
    parser.add_argument("--capacity", type=int, default=4, help="buffer capacity in frames (default 4)")
    parser.add_argument(
        "--policy",
        choices=[policy.value for policy in OverflowPolicy],
        default=OverflowPolicy.DROP_OLDEST.value,
    )
    parser.add_argument("--pipeline", action="store_true", help="consume with YOLOX-Nano + ByteTrack")
    args = parser.parse_args()
    policy = OverflowPolicy(args.policy)
    result = run(args.seconds, args.work_ms, args.capacity, policy, use_pipeline=args.pipeline)
    print(report(result, args.capacity))


if __name__ == "__main__":
    main()
