"""End-to-end perception on a real street video: YOLOX-Nano + ByteTrack on this CPU.

    python benchmarks/bench_pipeline.py [--frames 400]

Frames of ``../shared/data/video/vtest.avi`` (768x576, 10 fps) are decoded first, then fed by a
producer thread through a bounded ``FrameBuffer`` (drop-oldest, capacity 4) to the pipeline, as a
live camera would. Two regimes:

- *live*: the producer paces frames at the camera's 10 fps; latency is measured from the frame's
  arrival in the buffer to its tracks coming out (queueing included);
- *throughput*: the producer pushes as fast as the pipeline takes frames (blocking buffer);
  frames per second of the whole pipeline.

Configurations: no appearance, the weight-free colour embedder, and OSNet x0.25 (ONNX), each with
batch 1 and, for the embedder, batch 4 (crops of 4 frames in one embedding run). Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime

from crossview.core.frame import Frame
from crossview.detect.factory import make_detector
from crossview.embed.factory import make_embedder
from crossview.eval.latency import LatencySummary
from crossview.io.buffer import FrameBuffer
from crossview.io.sources import VideoFileSource
from crossview.pipeline import Pipeline
from crossview.track import make_tracker

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIDEO = SHARED / "data" / "video" / "vtest.avi"
YOLOX = SHARED / "models" / "yolox_nano.onnx"
OSNET = SHARED / "models" / "osnet_x0_25_msmt17.onnx"


def feed(frames: list[Frame], buffer: FrameBuffer[tuple[float, Frame]], rate: float | None) -> None:
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        if rate is not None:
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        buffer.put((time.perf_counter(), frame))
    buffer.close()


def run(frames: list[Frame], embedder: str | None, batch: int, rate: float | None) -> dict[str, float]:
    pipeline = Pipeline(
        make_detector(f"yolox:{YOLOX}", classes=("person", "car"), intra_op_num_threads=2),
        lambda: make_tracker("bytetrack", frame_rate=10.0),
        make_embedder(embedder) if embedder else None,
    )
    policy = "drop_oldest" if rate is not None else "block"
    buffer: FrameBuffer[tuple[float, Frame]] = FrameBuffer(4, policy)
    producer = threading.Thread(target=feed, args=(frames, buffer, rate), daemon=True)
    latencies: list[float] = []
    started = time.perf_counter()
    producer.start()
    pending: list[tuple[float, Frame]] = []
    for item in buffer:
        pending.append(item)
        if len(pending) < batch:
            continue
        pipeline.process([frame for _, frame in pending])
        done = time.perf_counter()
        latencies.extend(done - arrival for arrival, _ in pending)
        pending = []
    if pending:
        pipeline.process([frame for _, frame in pending])
        done = time.perf_counter()
        latencies.extend(done - arrival for arrival, _ in pending)
    elapsed = time.perf_counter() - started
    producer.join()
    summary = LatencySummary.from_seconds(np.array(latencies))
    stages = pipeline.latency_summary()
    return {
        "fps": len(latencies) / elapsed,
        "p50": summary.p50,
        "p99": summary.p99,
        "dropped": buffer.stats().dropped,
        "detect_p50": stages["detect"].p50,
        "embed_p50": stages["embed"].p50 if "embed" in stages else 0.0,
        "track_p50": stages["track"].p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=400)
    args = parser.parse_args()
    for path in (VIDEO, YOLOX, OSNET):
        if not path.exists():
            sys.exit(f"needs {path}")
    with VideoFileSource(VIDEO, "street", max_frames=args.frames) as source:
        frames = list(source)
    configurations = [
        ("none", None, 1),
        ("colour", "color", 1),
        ("colour", "color", 4),
        ("OSNet x0.25", f"osnet:{OSNET}", 1),
        ("OSNet x0.25", f"osnet:{OSNET}", 4),
    ]
    print(f"command: `python benchmarks/bench_pipeline.py {' '.join(sys.argv[1:])}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, onnxruntime {onnxruntime.__version__}  ")
    print(f"input: vtest.avi, {len(frames)} frames 768x576; YOLOX-Nano 416x416 (persons and cars), ByteTrack")
    print()
    print(
        "| appearance | batch | live 10 fps: p50 ms | p99 ms | dropped | throughput fps | detect / embed / "
        "track p50 ms per frame |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, embedder, batch in configurations:
        live = run(frames, embedder, batch, rate=10.0)
        fast = run(frames, embedder, batch, rate=None)
        print(
            f"| {label} | {batch} | {live['p50']:.1f} | {live['p99']:.1f} | {live['dropped']:.0f} | "
            f"{fast['fps']:.1f} | {fast['detect_p50']:.1f} / {fast['embed_p50']:.1f} / "
            f"{fast['track_p50']:.2f} |"
        )


if __name__ == "__main__":
    main()
