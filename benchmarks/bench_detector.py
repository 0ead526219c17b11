"""YOLOX-Nano speed on real frames: per-frame latency and throughput by batch size and threads.

Decodes ``--frames`` frames of ``vtest.avi`` (768x576) and, for ONNX Runtime with 1 and 2
intra-op threads, measures

- per-frame latency of ``YoloxDetector.detect([frame])`` (letterbox, inference, decode, NMS,
  mapping back), and of the bare ``InferenceSession.run`` on a ready tensor, to show the cost
  of the pre- and post-processing around the model;
- throughput (frames/s) of ``detect`` on batches of 1, 2 and 4 frames;

and, with 2 threads, both with ONNX Runtime's spin-waiting threads (its default) and without
(``allow_spinning=False``, crossview's default).

``yolox_nano.onnx`` is exported with a fixed batch of 1 (its three ``Reshape`` nodes hard-code
``[1, 85, -1]``), so ``YoloxDetector`` runs a batch of frames as a loop of single-frame runs.
To show what real batching buys, the script also writes a batch-dynamic copy to a temporary
folder (those shapes set to ``[0, 85, -1]``, "keep the batch dimension", and the input and output
batch dimensions made symbolic), checks that it finds the same boxes, and measures it too.

    python benchmarks/bench_detector.py [--frames 60] [--rounds 3] [--model ../shared/models/yolox_nano.onnx]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from crossview.core.frame import Frame
from crossview.detect.onnx import OnnxDetectorConfig, YoloxDetector
from crossview.eval.latency import LatencySummary

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def read_frames(path: Path, count: int) -> list[Frame]:
    """The first ``count`` frames of a video."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    for index in range(count):
        ok, image = capture.read()
        if not ok:
            break
        frames.append(Frame(np.asarray(image), camera_id="vtest", index=index, timestamp=index / 10))
    capture.release()
    if not frames:
        raise SystemExit(f"could not decode any frame of {path}")
    return frames


def batch_dynamic_copy(model: Path, folder: Path) -> Path:
    """A copy of a YOLOX export whose batch dimension is dynamic (see the module's notes)."""
    graph = onnx.load(str(model))
    shapes = {node.input[1] for node in graph.graph.node if node.op_type == "Reshape"}
    patched = 0
    for tensor in graph.graph.initializer:
        if tensor.name not in shapes:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and shape.size == 3 and shape[0] == 1:
            shape[0] = 0  # 0 copies the input's dimension: the batch
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
            patched += 1
    if patched == 0:
        raise SystemExit(f"{model}: found no batch-1 Reshape to patch")
    for value in (graph.graph.input[0], graph.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.graph.value_info[:]  # intermediate shapes recorded at export still say batch 1
    path = folder / "yolox_nano_dynamic.onnx"
    onnx.save(graph, str(path))
    return path


def detect_latency(detector: YoloxDetector, frames: Sequence[Frame]) -> list[float]:
    """Seconds of ``detect([frame])`` for each frame."""
    samples = []
    for frame in frames:
        start = time.perf_counter()
        detector.detect([frame])
        samples.append(time.perf_counter() - start)
    return samples


def bare_session(model: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    """A plain ONNX Runtime session on the CPU, as the detector builds it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def session_latency(session: ort.InferenceSession, repeat: int) -> list[float]:
    """Seconds of the bare ``InferenceSession.run`` on a ready 1 x 3 x 416 x 416 tensor."""
    name = session.get_inputs()[0].name
    tensor = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, {name: tensor})
        samples.append(time.perf_counter() - start)
    return samples


def throughput(detector: YoloxDetector, frames: Sequence[Frame], batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(frames), batch):
        detector.detect(frames[first : first + batch])
    return len(frames) / (time.perf_counter() - start)


def check_same_boxes(fixed: YoloxDetector, dynamic: YoloxDetector, frames: Sequence[Frame]) -> str:
    """Refuse to report the batch-dynamic copy unless it finds what the original finds."""
    sample = list(frames[:: max(1, len(frames) // 8)][:8])
    a, b = fixed.detect(sample), dynamic.detect(sample)
    if any(len(x) != len(y) for x, y in zip(a, b, strict=True)):
        raise SystemExit("the batch-dynamic copy finds different boxes; its figures would be void")
    gap = max(float(np.abs(x.xyxy - y.xyxy).max(initial=0)) for x, y in zip(a, b, strict=True))
    return f"{len(sample)} frames in one batch, same boxes, largest coordinate difference {gap:.2g} px"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "video" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over every setting")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    for path in (args.model, args.video):
        if not path.exists():
            raise SystemExit(f"missing {path} (../shared is not checked out here)")

    frames = read_frames(args.video, args.frames)
    tmp = tempfile.TemporaryDirectory()
    dynamic_model = batch_dynamic_copy(args.model, Path(tmp.name))
    # (intra-op threads, spinning); one thread has no pool to spin
    settings, batches = ((1, False), (2, False), (2, True)), (1, 2, 4)
    detectors: dict[tuple[int, bool], tuple[YoloxDetector, YoloxDetector, ort.InferenceSession]] = {}
    for threads, spinning in settings:
        config = OnnxDetectorConfig(
            intra_op_num_threads=threads, inter_op_num_threads=1, allow_spinning=spinning, providers="cpu"
        )
        fixed = YoloxDetector(args.model, config)
        dynamic = YoloxDetector(dynamic_model, config.model_copy(update={"batch_size": max(batches)}))
        session = bare_session(args.model, threads, spinning)
        for frame in frames[: args.warmup]:
            fixed.detect([frame])
            dynamic.detect([frame])
        session_latency(session, args.warmup)
        detectors[threads, spinning] = (fixed, dynamic, session)
    check = check_same_boxes(detectors[settings[0]][0], detectors[settings[0]][1], frames)

    # Every setting runs once per round, rounds interleaved, so a busy spell on a shared machine
    # spreads over all settings instead of spoiling one; throughput keeps each setting's best round.
    load_before = os.getloadavg()
    latency: dict[tuple[int, bool, str], list[float]] = {}
    best: dict[tuple[int, bool, str, int], float] = {}
    for _ in range(args.rounds):
        for (threads, spinning), (fixed, dynamic, session) in detectors.items():
            latency.setdefault((threads, spinning, "`detect([frame])`"), []).extend(
                detect_latency(fixed, frames)
            )
            latency.setdefault((threads, spinning, "`session.run` only"), []).extend(
                session_latency(session, len(frames))
            )
            for batch in batches:
                for label, detector in (("fixed", fixed), ("dynamic", dynamic)):
                    key = (threads, spinning, label, batch)
                    best[key] = max(best.get(key, 0.0), throughput(detector, frames, batch))
    load_after = os.getloadavg()

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print("```")
    print(f"$ {command}")
    print(
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        f"machine: {platform.machine()}, nproc={os.cpu_count()}, {platform.platform()}"
    )
    print(
        f"python {platform.python_version()}, onnxruntime {version('onnxruntime')}, "
        f"opencv {cv2.__version__}, numpy {np.__version__}"
    )
    print(
        f"model: {args.model.name} (fixed batch 1, 416x416), video: {args.video.name} (768x576), "
        f"{len(frames)} frames x {args.rounds} interleaved rounds"
    )
    print(
        "load average (1 min) before/after: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f} (above 0 means other work shared the cores)"
    )
    print("```")
    print()
    print("Per-frame latency at batch 1 (ms), samples of all rounds together:")
    print()
    print("| threads | spinning | what | n | mean | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (threads, spinning, label), samples in latency.items():
        s = LatencySummary.from_seconds(samples)
        print(
            f"| {threads} | {'on' if spinning else 'off'} | {label} | {s.count} | {s.mean:.1f} | "
            f"{s.p50:.1f} | {s.p90:.1f} | "
            f"{s.p99:.1f} | {s.max:.1f} |"
        )
    print()
    print("Throughput of `detect` (frames/s, best round). The model as shipped has a fixed batch of 1,")
    print("so `YoloxDetector` runs a batch of frames as a loop of single-frame runs; the batch-dynamic")
    print(f"copy runs it as one N x 3 x 416 x 416 tensor (checked: {check}):")
    print()
    print("| threads | spinning | batch | shipped model (loop) | batch-dynamic copy |")
    print("|---|---|---|---|---|")
    for threads, spinning in settings:
        for batch in batches:
            print(
                f"| {threads} | {'on' if spinning else 'off'} | {batch} | "
                f"{best[(threads, spinning, 'fixed', batch)]:.1f} | "
                f"{best[(threads, spinning, 'dynamic', batch)]:.1f} |"
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
