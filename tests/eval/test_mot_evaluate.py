"""Folder-level evaluation and the edge cases a user hits: missing, empty and broken inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossview.eval.mot import (
    MissingSequenceError,
    MotProtocol,
    SequenceError,
    evaluate_mot_dirs,
    evaluate_sequence,
)
from crossview.io.formats import FormatError
from crossview.io.formats.mot import MotTable
from crossview.sim.sequences import SequenceSpec, generate_sequence, write_mot_sample


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    write_mot_sample(tmp_path, sequences=2, spec=SequenceSpec(num_frames=80, num_objects=6))
    return tmp_path


def test_perfect_predictions_score_one() -> None:
    sequence = generate_sequence(SequenceSpec(num_frames=50, num_objects=5), seed=3)
    summary = evaluate_sequence(sequence.gt, sequence.gt, num_frames=50).summary()
    for field in ("HOTA", "DetA", "AssA", "LocA", "MOTA", "IDF1", "MOTP"):
        assert summary[field] == pytest.approx(1.0), field
    assert (summary["IDSW"], summary["CLR_FP"], summary["CLR_FN"], summary["Frag"]) == (0, 0, 0, 0)


def test_empty_prediction_file_is_all_misses(sample: Path) -> None:
    (sample / "pred" / "SYN-01.txt").write_text("")
    evaluation = evaluate_mot_dirs(sample / "gt", sample / "pred")
    summary = evaluation.sequences["SYN-01"].summary()
    assert summary["HOTA"] == 0 and summary["MOTA"] == 0 and summary["IDF1"] == 0
    assert summary["CLR_FN"] == summary["IDFN"] > 0 and summary["CLR_TP"] == 0


def test_missing_sequence_is_named(sample: Path) -> None:
    (sample / "pred" / "SYN-02.txt").unlink()
    with pytest.raises(MissingSequenceError, match="SYN-02") as caught:
        evaluate_mot_dirs(sample / "gt", sample / "pred")
    assert caught.value.names == ("SYN-02",)
    evaluation = evaluate_mot_dirs(sample / "gt", sample / "pred", missing="empty")
    assert evaluation.missing_predictions == ("SYN-02",)
    assert evaluation.sequences["SYN-02"].summary()["CLR_TP"] == 0


def test_unexpected_prediction_file_is_reported(sample: Path) -> None:
    (sample / "pred" / "OTHER.txt").write_text("1,1,0,0,1,1,1\n")
    with pytest.warns(UserWarning, match="OTHER"):
        evaluation = evaluate_mot_dirs(sample / "gt", sample / "pred")
    assert evaluation.unexpected_predictions == ("OTHER",)


def test_malformed_prediction_names_file_and_line(sample: Path) -> None:
    path = sample / "pred" / "SYN-01.txt"
    lines = path.read_text().splitlines()
    lines[4] = "5,3,bad,0,10,10,1,-1,-1,-1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"SYN-01\.txt:5: column 3 is not a number"):
        evaluate_mot_dirs(sample / "gt", sample / "pred")


def test_frames_beyond_sequence_length_and_duplicate_ids_are_errors() -> None:
    gt = MotTable.from_array([[1, 1, 0, 0, 10, 10, 1, 1, 1]])
    late = MotTable.from_array([[3, 1, 0, 0, 10, 10, 1]])
    with pytest.raises(SequenceError, match=r"outside 1\.\.2: \[3\]"):
        evaluate_sequence(gt, late, num_frames=2)
    twice = MotTable.from_array([[1, 4, 0, 0, 10, 10, 1], [1, 4, 5, 5, 10, 10, 1]])
    with pytest.raises(SequenceError, match="id 4 more than once in frame 1"):
        evaluate_sequence(gt, twice, num_frames=2)


def test_classless_ground_truth_needs_the_mot15_protocol() -> None:
    gt = MotTable.from_array([[1, 1, 0, 0, 10, 10, 1, -1, -1, -1]])
    with pytest.raises(SequenceError, match="mot15"):
        evaluate_sequence(gt, gt)
    assert evaluate_sequence(gt, gt, protocol=MotProtocol.mot15()).summary()["IDF1"] == 1.0


def test_distractor_matches_are_removed_not_counted() -> None:
    # gt: a pedestrian and a static person (class 7); the tracker reports both.
    gt = MotTable.from_array([[1, 1, 0, 0, 10, 20, 1, 1, 1], [1, 2, 100, 0, 10, 20, 1, 7, 1]])
    pred = MotTable.from_array([[1, 5, 0, 0, 10, 20, 1], [1, 6, 100, 0, 10, 20, 1]])
    summary = evaluate_sequence(gt, pred).summary()
    assert (summary["CLR_TP"], summary["CLR_FP"], summary["CLR_FN"]) == (1, 0, 0)
    plain = evaluate_sequence(gt, pred, protocol=MotProtocol(distractor_classes=())).summary()
    assert plain["CLR_FP"] == 1


def test_zero_marked_ground_truth_is_ignored() -> None:
    gt = MotTable.from_array([[1, 1, 0, 0, 10, 20, 0, 1, 1], [2, 1, 0, 0, 10, 20, 1, 1, 1]])
    pred = MotTable.from_array([[2, 5, 0, 0, 10, 20, 1]])
    summary = evaluate_sequence(gt, pred).summary()
    assert (summary["CLR_TP"], summary["CLR_FN"], summary["CLR_FP"]) == (1, 0, 0)


def test_identity_switch_counts_and_idf1_by_hand() -> None:
    # One person over 4 frames; the tracker switches id after frame 2.
    gt = MotTable.from_array([[f, 1, 0, 0, 10, 20, 1, 1, 1] for f in range(1, 5)])
    pred = MotTable.from_array([[f, 7 if f <= 2 else 8, 0, 0, 10, 20, 1] for f in range(1, 5)])
    summary = evaluate_sequence(gt, pred).summary()
    assert summary["IDSW"] == 1
    assert summary["MOTA"] == pytest.approx(0.75)
    assert (summary["IDTP"], summary["IDFN"], summary["IDFP"]) == (2, 2, 2)
    assert summary["IDF1"] == pytest.approx(0.5)
    assert summary["AssA"] == pytest.approx(0.5)  # each true positive's association IoU is 2/4
    assert summary["DetA"] == pytest.approx(1.0)
    assert summary["HOTA"] == pytest.approx(np.sqrt(0.5))
