"""HOTA, CLEAR and Identity equal TrackEval's, and the MOTChallenge devkit's figures on TUD."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from crossview.eval.mot import ALPHAS, MotProtocol, MotScores, evaluate_sequence
from crossview.io.formats.mot import MotTable, read_mot, read_seqinfo
from tests.conftest import shared_path
from tests.eval.trackeval_reference import trackeval_scores

HOTA_ARRAYS = {
    "HOTA": "hota",
    "DetA": "det_a",
    "AssA": "ass_a",
    "DetRe": "det_re",
    "DetPr": "det_pr",
    "AssRe": "ass_re",
    "AssPr": "ass_pr",
    "LocA": "loc_a",
    "OWTA": "owta",
    "HOTA_TP": "tp",
    "HOTA_FN": "fn",
    "HOTA_FP": "fp",
}
SCALARS = (
    "HOTA(0)",
    "LocA(0)",
    "HOTALocA(0)",
    "MOTA",
    "MOTP",
    "MODA",
    "CLR_Re",
    "CLR_Pr",
    "MTR",
    "PTR",
    "MLR",
    "sMOTA",
    "CLR_F1",
    "FP_per_frame",
    "MOTAL",
    "CLR_TP",
    "CLR_FN",
    "CLR_FP",
    "IDSW",
    "MT",
    "PT",
    "ML",
    "Frag",
    "CLR_Frames",
    "IDF1",
    "IDR",
    "IDP",
    "IDTP",
    "IDFN",
    "IDFP",
)


def assert_equal_to_reference(ours: MotScores, reference: dict[str, Any], where: str) -> None:
    for field, attribute in HOTA_ARRAYS.items():
        np.testing.assert_allclose(
            getattr(ours.hota, attribute), reference[field], rtol=0, atol=1e-9, err_msg=f"{where} {field}"
        )
    summary = ours.summary()
    for field in SCALARS:
        assert summary[field] == pytest.approx(float(reference[field]), abs=1e-9, rel=0), f"{where} {field}"
    for field in ("HOTA", "DetA", "AssA", "LocA"):
        assert summary[field] == pytest.approx(float(np.mean(reference[field])), abs=1e-9, rel=0)


# ------------------------------------------------------------------------------ MPNTrack on MOT17
MPN_SEQUENCES = ("MOT17-02", "MOT17-04", "MOT17-05", "MOT17-09")


@pytest.mark.parametrize("detector", ["FRCNN", "SDP", "DPM"])
def test_mpntrack_equals_trackeval(detector: str) -> None:
    root = shared_path("data", "mot17")
    inputs: dict[str, tuple[MotTable, MotTable, int]] = {}
    ours: dict[str, MotScores] = {}
    for sequence in MPN_SEQUENCES:
        gt = read_mot(root / sequence / "gt" / "gt.txt")
        pred = read_mot(root / "mpntrack" / f"{sequence}-{detector}.txt")
        length = read_seqinfo(root / sequence / "seqinfo.ini").length
        name = f"{sequence}-{detector}"
        inputs[name] = (gt, pred, length)
        ours[name] = evaluate_sequence(gt, pred, num_frames=length, name=name)
    reference = trackeval_scores(inputs)
    for name, scores in ours.items():
        assert_equal_to_reference(scores, reference[name], name)
    assert_equal_to_reference(MotScores.combine(list(ours.values())), reference["COMBINED_SEQ"], "combined")


def test_mpntrack_frcnn_matches_published_baseline_figures() -> None:
    """The figures in BASELINES.md (TrackEval on the same files), as an independent anchor."""
    root = shared_path("data", "mot17")
    gt = read_mot(root / "MOT17-02" / "gt" / "gt.txt")
    pred = read_mot(root / "mpntrack" / "MOT17-02-FRCNN.txt")
    summary = evaluate_sequence(gt, pred, num_frames=600).summary()
    assert summary["HOTA"] == pytest.approx(0.487213, abs=1e-6)
    assert summary["AssA"] == pytest.approx(0.540129, abs=1e-6)
    assert summary["MOTA"] == pytest.approx(0.472956, abs=1e-6)
    assert summary["IDF1"] == pytest.approx(0.548879, abs=1e-6)
    assert (summary["IDSW"], summary["CLR_FP"], summary["CLR_FN"]) == (25, 133, 9635)


# ------------------------------------------------------------------------------ TUD, devkit figures
TUD = {
    "TUD-Campus": {"IDF1": 0.557659, "MOTA": 0.526462, "CLR_FP": 13, "CLR_FN": 150, "IDSW": 7},
    "TUD-Stadtmitte": {"IDF1": 0.644619, "MOTA": 0.564014, "CLR_FP": 45, "CLR_FN": 452, "IDSW": 7},
}


def test_tud_equals_official_devkit_figures() -> None:
    root = shared_path("data", "tud")
    scores = []
    for name, expected in TUD.items():
        result = evaluate_sequence(
            read_mot(root / name / "gt.txt"), read_mot(root / name / "test.txt"), protocol=MotProtocol.mot15()
        )
        scores.append(result)
        summary = result.summary()
        for field, value in expected.items():
            assert summary[field] == pytest.approx(value, abs=1e-6), f"{name} {field}"
    both = MotScores.combine(scores).summary()
    assert both["IDF1"] == pytest.approx(0.624296, abs=1e-6)
    assert both["MOTA"] == pytest.approx(0.555116, abs=1e-6)


# ------------------------------------------------------------------------------ generated cases
def _random_sequence(seed: int, *, num_frames: int = 60) -> tuple[MotTable, MotTable]:
    """Walkers with classes (incl. distractors), zero-marked boxes, and a noisy tracker over them.

    The tracker output has jitter, misses, false positives, id switches, duplicated boxes
    (exact ties for the assignment) and stretches with no predictions at all.
    """
    rng = np.random.default_rng(seed)
    gt_rows, pred_rows = [], []
    num_objects = int(rng.integers(3, 25))
    next_pred_id = 1000
    for obj in range(1, num_objects + 1):
        start = int(rng.integers(1, num_frames))
        end = int(min(num_frames, start + rng.integers(3, num_frames)))
        position = rng.uniform(0, 600, size=2)
        velocity = rng.normal(0, 4, size=2)
        size = rng.uniform([20, 50], [80, 200])
        cls = int(rng.choice([1, 1, 1, 1, 2, 7, 8, 12, 3, 4]))
        flag = int(rng.random() > 0.1)
        pred_id = next_pred_id
        next_pred_id += 1
        for frame in range(start, end + 1):
            position = position + velocity + rng.normal(0, 1, size=2)
            gt_rows.append([frame, obj, *position, *size, flag, cls, rng.uniform(0, 1)])
            if rng.random() < 0.05:
                pred_id = next_pred_id
                next_pred_id += 1
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.12, size=4) * np.r_[size, size]
                box = np.r_[position, size] + jitter
                box[2:] = np.maximum(box[2:], 1)
                pred_rows.append([frame, pred_id, *box, 1, -1, -1, -1])
                if rng.random() < 0.05:
                    pred_rows.append([frame, next_pred_id, *box, 1, -1, -1, -1])
                    next_pred_id += 1
    silent = set(rng.choice(np.arange(1, num_frames + 1), size=num_frames // 10, replace=False).tolist())
    for _ in range(int(rng.integers(0, 40))):
        frame = int(rng.integers(1, num_frames + 1))
        pred_rows.append(
            [frame, next_pred_id, *rng.uniform(0, 600, 2), *rng.uniform(10, 100, 2), 1, -1, -1, -1]
        )
        next_pred_id += 1
    pred = MotTable.from_array(np.array([r for r in pred_rows if r[0] not in silent]).reshape(-1, 10))
    gt = MotTable.from_array(np.array(gt_rows).reshape(-1, 9))
    return gt, pred


@pytest.mark.parametrize("seeds", [range(0, 6), range(6, 12)])
def test_generated_sequences_equal_trackeval(seeds: range) -> None:
    inputs = {}
    ours = {}
    for seed in seeds:
        gt, pred = _random_sequence(seed)
        name = f"gen-{seed:02d}"
        inputs[name] = (gt, pred, 60)
        ours[name] = evaluate_sequence(gt, pred, num_frames=60, name=name)
    reference = trackeval_scores(inputs)
    for name, scores in ours.items():
        assert_equal_to_reference(scores, reference[name], name)
    assert_equal_to_reference(MotScores.combine(list(ours.values())), reference["COMBINED_SEQ"], "combined")


def test_degenerate_sequences_equal_trackeval() -> None:
    gt, pred = _random_sequence(99)
    empty = MotTable.from_array(np.zeros((0, 10)))
    inputs = {"no-pred": (gt, empty, 60), "no-gt": (empty, pred, 60), "normal": (gt, pred, 60)}
    ours = {name: evaluate_sequence(g, p, num_frames=n, name=name) for name, (g, p, n) in inputs.items()}
    reference = trackeval_scores(inputs)
    for name, scores in ours.items():
        assert_equal_to_reference(scores, reference[name], name)
    assert_equal_to_reference(MotScores.combine(list(ours.values())), reference["COMBINED_SEQ"], "combined")


def test_alpha_grid_is_trackevals() -> None:
    assert len(ALPHAS) == 19
    assert ALPHAS[0] == pytest.approx(0.05) and ALPHAS[-1] == pytest.approx(0.95)
