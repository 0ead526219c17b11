"""Run TrackEval (the reference implementation) on in-memory tables, for conformance tests.

TrackEval 1.3.0 is installed with ``--no-deps`` in the test environment only; crossview never
imports it. Each call writes a MOTChallenge folder layout to a temporary directory.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossview.io.formats.mot import MotTable, SequenceInfo, write_mot, write_seqinfo


def trackeval_scores(
    sequences: Mapping[str, tuple[MotTable, MotTable, int]], *, benchmark: str = "MOT17"
) -> dict[str, dict[str, Any]]:
    """TrackEval's HOTA/CLEAR/Identity fields per sequence and ``COMBINED_SEQ``.

    ``sequences`` maps a name to ``(gt, pred, num_frames)``. Array fields (HOTA's) are kept as
    arrays over the 19 thresholds.
    """
    trackeval = pytest.importorskip(
        "trackeval", reason="trackeval is a test-only reference (pip install --no-deps)"
    )
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()):
        gt_root, pred_root = Path(root, "gt"), Path(root, "trackers")
        for name, (gt, pred, length) in sequences.items():
            write_mot(gt_root / name / "gt" / "gt.txt", gt, columns=9)
            write_seqinfo(gt_root / name / "seqinfo.ini", SequenceInfo(name=name, length=length))
            write_mot(pred_root / "tracker" / "data" / f"{name}.txt", pred)
        eval_config = trackeval.Evaluator.get_default_eval_config()
        eval_config.update(
            PRINT_RESULTS=False,
            PRINT_CONFIG=False,
            TIME_PROGRESS=False,
            OUTPUT_SUMMARY=False,
            OUTPUT_DETAILED=False,
            PLOT_CURVES=False,
            USE_PARALLEL=False,
            DISPLAY_LESS_PROGRESS=True,
        )
        dataset_config = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
        dataset_config.update(
            GT_FOLDER=str(gt_root),
            TRACKERS_FOLDER=str(pred_root),
            SEQ_INFO=dict.fromkeys(sequences),
            SKIP_SPLIT_FOL=True,
            PRINT_CONFIG=False,
            BENCHMARK=benchmark,
            GT_LOC_FORMAT="{gt_folder}/{seq}/gt/gt.txt",
            TRACKERS_TO_EVAL=["tracker"],
        )
        metrics = [
            trackeval.metrics.HOTA(),
            trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
            trackeval.metrics.Identity({"PRINT_CONFIG": False}),
        ]
        results, messages = trackeval.Evaluator(eval_config).evaluate(
            [trackeval.datasets.MotChallenge2DBox(dataset_config)], metrics
        )
    output = results["MotChallenge2DBox"]["tracker"]
    if not isinstance(output, dict):
        raise RuntimeError(f"TrackEval failed: {messages}")
    scores: dict[str, dict[str, Any]] = {}
    for name, by_class in output.items():
        merged: dict[str, Any] = {}
        for metric_fields in by_class["pedestrian"].values():
            merged.update({k: np.asarray(v, dtype=np.float64) for k, v in metric_fields.items()})
        scores[name] = merged
    return scores
