"""COCO bbox evaluation speed: crossview against pycocotools on the same generated files.

Generates a COCO-like ground truth and result set (by default 500 images, 80 categories,
about 20,000 detections, crowds and all three object sizes), writes both as JSON, and times
each side reading the files and evaluating (best of ``--repeat`` runs), after checking that
the twelve stats agree to 1e-12. Prints markdown lines for ``docs/benchmarks.md``.

    python benchmarks/bench_coco_eval.py [--images 500] [--categories 80] [--detections 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from crossview.eval.detection import evaluate_coco
from crossview.io.formats.coco import read_coco_detections, read_coco_ground_truth


def generate(
    images: int, categories: int, detections: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth with ~detections/3 objects; each found 0-3 times with jitter, plus clutter."""
    rng = np.random.default_rng(seed)
    n_truth = detections // 3
    image_of = rng.integers(1, images + 1, n_truth)
    category_of = rng.integers(1, categories + 1, n_truth)
    size = rng.choice([16.0, 48.0, 160.0], n_truth) * rng.uniform(0.5, 1.5, (2, n_truth))
    boxes = np.column_stack([rng.uniform(0, 600, n_truth), rng.uniform(0, 400, n_truth), size[0], size[1]])
    crowd = rng.random(n_truth) < 0.02
    truth = {
        "images": [
            {"id": i, "file_name": f"{i:06d}.jpg", "width": 800, "height": 600} for i in range(1, images + 1)
        ],
        "annotations": [
            {
                "id": i + 1,
                "image_id": int(image_of[i]),
                "category_id": int(category_of[i]),
                "bbox": boxes[i].round(2).tolist(),
                "area": float(boxes[i, 2] * boxes[i, 3] * 0.8),
                "iscrowd": int(crowd[i]),
            }
            for i in range(n_truth)
        ],
        "categories": [{"id": c, "name": f"class-{c}"} for c in range(1, categories + 1)],
    }
    copies = rng.integers(0, 4, n_truth)
    source = np.repeat(np.arange(n_truth), copies)
    jitter = rng.normal(0, 0.08, (len(source), 4)) * boxes[source, 2:].repeat(2, axis=1)
    found = np.abs(boxes[source] + jitter)
    clutter = max(detections - len(source), 0)
    results = [
        {
            "image_id": int(image_of[s]),
            "category_id": int(category_of[s])
            if rng.random() < 0.95
            else int(rng.integers(1, categories + 1)),
            "bbox": box.round(2).tolist(),
            "score": round(float(rng.random()), 3),
        }
        for s, box in zip(source, found, strict=True)
    ]
    results += [
        {
            "image_id": int(rng.integers(1, images + 1)),
            "category_id": int(rng.integers(1, categories + 1)),
            "bbox": [*rng.uniform(0, 600, 2).round(2).tolist(), *rng.uniform(4, 200, 2).round(2).tolist()],
            "score": round(float(rng.random()) * 0.6, 3),
        }
        for _ in range(clutter)
    ]
    return truth, results


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = work()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--categories", type=int, default=80)
    parser.add_argument("--detections", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    truth, results = generate(args.images, args.categories, args.detections, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        gt_path, pred_path = Path(folder) / "gt.json", Path(folder) / "pred.json"
        gt_path.write_text(json.dumps(truth))
        pred_path.write_text(json.dumps(results))

        def ours_read() -> Any:
            ground_truth = read_coco_ground_truth(gt_path)
            return ground_truth, read_coco_detections(pred_path, ground_truth)

        def theirs_read() -> Any:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(str(gt_path))
                return coco, coco.loadRes(str(pred_path))

        ours_read_s, (ground_truth, detections) = best_of(args.repeat, ours_read)
        theirs_read_s, _ = best_of(args.repeat, theirs_read)

        def theirs_evaluate() -> Any:
            coco, found = theirs_read()  # COCOeval adds fields to the annotations: start fresh each run
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator = COCOeval(coco, found, "bbox")
                start = time.perf_counter()
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
                return time.perf_counter() - start, evaluator.stats

        ours_eval_s, ours = best_of(args.repeat, lambda: evaluate_coco(ground_truth, detections))
        timings = [theirs_evaluate() for _ in range(args.repeat)]
        theirs_eval_s = min(seconds for seconds, _ in timings)
        reference = timings[0][1]

    difference = float(np.max(np.abs(ours.stats.as_array() - reference)))
    if difference > 1e-12:
        sys.exit(f"stats differ from pycocotools by {difference:g}: {ours.stats} vs {reference}")

    command = shlex.join(
        ["python", "benchmarks/bench_coco_eval.py", *(argv if argv is not None else sys.argv[1:])]
    )
    machine = platform.processor() or platform.machine()
    versions = (
        f"Python {platform.python_version()}, numpy {np.__version__}, pycocotools {version('pycocotools')}"
    )
    print("**COCO bbox evaluation: crossview vs pycocotools**")
    print()
    print(f"- command: `{command}`")
    print(
        f"- date: {datetime.date.today().isoformat()}; machine: {machine}, nproc {os.cpu_count()}; {versions}"
    )
    print(
        f"- data: {args.images} images, {args.categories} categories, "
        f"{len(truth['annotations'])} ground-truth boxes, {len(results)} detections (seed {args.seed}); "
        f"best of {args.repeat} runs"
    )
    print(f"- check: all 12 stats equal pycocotools' (max |diff| {difference:.1g}); AP {ours.stats.ap:.4f}")
    print()
    print("| step | crossview (s) | pycocotools (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for step, mine, theirs in (
        ("read gt + results", ours_read_s, theirs_read_s),
        ("evaluate + accumulate + summarize", ours_eval_s, theirs_eval_s),
        ("total", ours_read_s + ours_eval_s, theirs_read_s + theirs_eval_s),
    ):
        print(f"| {step} | {mine:.3f} | {theirs:.3f} | {theirs / mine:.1f}x |")


if __name__ == "__main__":
    main()
