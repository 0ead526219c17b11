"""Multi-camera tracking metrics: hand-computed cases, then perturbed copies of real ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.eval.mot import MotProtocol, MotScores, evaluate_sequence
from crossview.eval.mtmc import (
    HEADLINE_FIELDS,
    LocalisationError,
    MtmcScores,
    UnexpectedCameraError,
    evaluate_mtmc,
    localisation_error,
)
from crossview.io.formats.mot import MotTable
from crossview.io.formats.mtmc import MtmcTable
from crossview.io.formats.vatic import read_vatic_views
from tests.conftest import shared_path

UCLA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ucla-campus-auditorium"


Row = tuple[str, int, int, float, float, float, float, float, float]


def table(rows: list[Row]) -> MtmcTable:
    """Rows ``(camera, obj_id, frame, x, y, w, h, xworld, yworld)``."""
    return MtmcTable.from_rows(
        [row[0] for row in rows], np.array([row[1:] for row in rows], dtype=np.float64)
    )


def boxes(camera: str, obj_id: int, frames: range, x: float = 0.0) -> list[Row]:
    return [(camera, obj_id, frame, x, 0.0, 10.0, 20.0, -1.0, -1.0) for frame in frames]


def relabel(source: MtmcTable, mapping: dict[tuple[str, int], int]) -> MtmcTable:
    """A copy of ``source`` with ``(camera, obj_id)`` ids replaced by ``mapping``'s."""
    obj_id = source.obj_id.copy()
    names = source.camera_of_rows()
    for (camera, old), new in mapping.items():
        obj_id[(names == camera) & (source.obj_id == old)] = new
    return MtmcTable(source.camera, source.camera_names, obj_id, source.frame, source.xywh, source.world_xy)


# A person (gt 1) seen by both cameras, a second one (gt 2) by c1 only; 14 boxes in all.
GT = table(boxes("c1", 1, range(1, 5)) + boxes("c1", 2, range(1, 5), x=50) + boxes("c2", 1, range(1, 7)))


# ---------------------------------------------------------------------------------- synthetic
def test_perfect_prediction_scores_one_everywhere() -> None:
    result = evaluate_mtmc(GT, GT)
    out = result.to_dict()
    for key in ("mtmc_idf1", "mtmc_idp", "mtmc_idr", "mtmc_hota", "mtmc_deta", "mtmc_assa", "mtmc_mota"):
        assert out[key] == pytest.approx(1.0), key
    assert (out["mtmc_idtp"], out["mtmc_idfn"], out["mtmc_idfp"]) == (14, 0, 0)
    assert set(HEADLINE_FIELDS) <= set(out)
    per_camera = out["per_camera"]
    assert isinstance(per_camera, dict)
    assert set(per_camera) == {"c1", "c2"}
    assert per_camera["c2"]["IDF1"] == 1.0
    assert result.cameras == ("c1", "c2")
    assert result.frame_offsets == {"c1": 0, "c2": 4}
    assert result.missing_cameras == () and result.unexpected_cameras == ()


def test_one_person_with_two_global_ids_costs_only_multi_camera_idf1() -> None:
    # Each camera is tracked perfectly, but person 1 is "10" in c1 and "11" in c2.
    pred = relabel(GT, {("c1", 1): 10, ("c1", 2): 20, ("c2", 1): 11})
    result = evaluate_mtmc(GT, pred)
    for name in ("c1", "c2"):
        assert result.per_camera[name].summary()["IDF1"] == 1.0
    assert result.combined.summary()["IDF1"] == 1.0
    overall = result.overall.summary()
    # gt 1 (10 boxes) can match only one of 10 (4 boxes) and 11 (6 boxes): 11. gt 2 matches 20.
    assert (overall["IDTP"], overall["IDFN"], overall["IDFP"]) == (10, 4, 4)
    assert overall["IDF1"] == pytest.approx(10 / 14)
    assert overall["IDP"] == pytest.approx(10 / 14) and overall["IDR"] == pytest.approx(10 / 14)
    # Every box is detected (DetA 1); association per TP pair is TPA / (TPA + FNA + FPA):
    # (gt1, 10): 4 / (4 + 6 + 0), (gt1, 11): 6 / (6 + 4 + 0), (gt2, 20): 4 / 4.
    ass_a = (4 * 0.4 + 6 * 0.6 + 4 * 1.0) / 14
    assert overall["DetA"] == pytest.approx(1.0)
    assert overall["AssA"] == pytest.approx(ass_a)
    assert overall["HOTA"] == pytest.approx(math.sqrt(ass_a))
    # CLEAR sees the change of predicted id between the cameras as one switch.
    assert overall["IDSW"] == 1
    assert overall["MOTA"] == pytest.approx((14 - 0 - 1) / 14)
    assert result.to_dict()["mtmc_idf1"] == pytest.approx(10 / 14)


def test_identity_and_hota_do_not_depend_on_camera_order() -> None:
    pred = relabel(GT, {("c1", 1): 10, ("c2", 1): 11})
    swap = {"c1": "z9", "c2": "a0"}

    def renamed(source: MtmcTable) -> MtmcTable:
        return MtmcTable.from_mot_tables({swap[name]: source.for_camera(name) for name in source.cameras()})

    forward = evaluate_mtmc(GT, pred).overall.summary()
    backward_result = evaluate_mtmc(renamed(GT), renamed(pred))
    assert backward_result.cameras == ("a0", "z9")
    backward = backward_result.overall.summary()
    for field in ("IDF1", "IDTP", "HOTA", "DetA", "AssA"):
        assert forward[field] == pytest.approx(backward[field]), field


def test_missing_camera_is_all_misses_and_named() -> None:
    pred = {"c1": GT.for_camera("c1")}
    result = evaluate_mtmc(GT, pred)
    assert result.missing_cameras == ("c2",)
    assert result.per_camera["c2"].summary()["IDF1"] == 0.0
    assert result.per_camera["c2"].summary()["CLR_FN"] == 6
    overall = result.overall.summary()
    assert (overall["IDTP"], overall["IDFN"], overall["IDFP"]) == (8, 6, 0)
    assert result.to_dict()["missing_cameras"] == ["c2"]
    same = evaluate_mtmc(GT, GT[GT.rows_of("c1")])  # c2 still named, with no rows
    assert same.missing_cameras == ("c2",)
    assert same.to_dict()["overall"] == result.to_dict()["overall"]


def test_camera_with_no_boxes_anywhere() -> None:
    gt = MtmcTable.from_mot_tables({**GT.to_mot_tables(), "c3": MotTable.empty()})
    result = evaluate_mtmc(gt, GT)
    assert result.cameras == ("c1", "c2", "c3")
    assert result.missing_cameras == ("c3",)
    assert result.per_camera["c3"].summary()["IDTP"] == 0
    assert result.to_dict()["mtmc_idf1"] == 1.0


def test_unexpected_prediction_camera_raises_or_warns() -> None:
    pred = {**GT.to_mot_tables(), "c3": GT.for_camera("c1")}
    with pytest.raises(UnexpectedCameraError, match="c3") as caught:
        evaluate_mtmc(GT, pred)
    assert caught.value.names == ("c3",)
    with pytest.warns(UserWarning, match="no ground truth, not scored: c3"):
        result = evaluate_mtmc(GT, pred, unexpected="warn")
    assert result.unexpected_cameras == ("c3",)
    assert result.to_dict()["mtmc_idf1"] == 1.0


def test_dict_and_table_inputs_agree_and_camera_tokens_are_canonical() -> None:
    pred = relabel(GT, {("c2", 1): 11})
    from_tables = evaluate_mtmc(GT, pred).to_dict()
    from_dicts = evaluate_mtmc(GT.to_mot_tables(), pred.to_mot_tables()).to_dict()
    assert from_tables == from_dicts
    numbered = {7: GT.for_camera("c1")}
    assert evaluate_mtmc(numbered, {"007": GT.for_camera("c1")}).to_dict()["mtmc_idf1"] == 1.0


def test_num_frames_sets_the_timeline_and_is_checked() -> None:
    result = evaluate_mtmc(GT, GT, num_frames={"c1": 10, "c2": 8})
    assert result.frame_offsets == {"c1": 0, "c2": 10}
    assert result.overall.summary()["CLR_Frames"] == 18
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        evaluate_mtmc(GT, GT, num_frames={"c2": 3})


def test_overall_equals_evaluate_sequence_on_the_joined_timeline() -> None:
    pred = relabel(GT, {("c1", 1): 10, ("c2", 1): 11})
    joined_gt = MotTable.from_array(
        [[f + (0 if c == "c1" else 4), i, *b, 1, 1, 1] for c, i, f, b in _rows(GT)]
    )
    joined_pred = MotTable.from_array(
        [[f + (0 if c == "c1" else 4), i, *b, 1, 1, 1] for c, i, f, b in _rows(pred)]
    )
    direct = evaluate_sequence(joined_gt, joined_pred, protocol=MotProtocol.mot15())
    assert evaluate_mtmc(GT, pred).overall.summary() == direct.summary()


def _rows(source: MtmcTable) -> list[tuple[str, int, int, list[float]]]:
    names = source.camera_of_rows().tolist()
    return [
        (names[k], int(source.obj_id[k]), int(source.frame[k]), source.xywh[k].tolist())
        for k in range(len(source))
    ]


def test_empty_ground_truth_is_rejected() -> None:
    with pytest.raises(ValueError, match="names no camera"):
        evaluate_mtmc(MtmcTable.empty(), GT)


# ---------------------------------------------------------------------------------- localisation
def test_localisation_error_statistics_by_box_matching() -> None:
    gt = table(
        [
            ("c1", 1, 1, 0, 0, 10, 10, 0.0, 0.0),
            ("c1", 2, 1, 100, 0, 10, 10, 5.0, 5.0),
            ("c1", 1, 2, 0, 0, 10, 10, 0.0, 0.0),
            ("c2", 1, 1, 0, 0, 10, 10, 1.0, 1.0),
            ("c2", 3, 1, 300, 0, 10, 10, -1.0, -1.0),  # matched, position unknown
        ]
    )
    pred = table(
        [
            ("c1", 9, 1, 100, 0, 10, 10, 5.0, 8.0),  # ids play no part: matched to gt 2 by its box
            ("c1", 8, 1, 1, 0, 10, 10, 3.0, 4.0),  # IoU 9/11 with gt 1
            ("c1", 8, 2, 6, 0, 10, 10, 0.0, 0.0),  # IoU 4/16: no match
            ("c2", 4, 1, 0, 0, 10, 10, 1.0, 2.0),
            ("c2", 5, 1, 300, 0, 10, 10, 9.0, 9.0),
            ("c3", 1, 1, 0, 0, 10, 10, 0.0, 0.0),  # a camera without ground truth is left out
        ]
    )
    result = localisation_error(gt, pred)
    assert isinstance(result, LocalisationError)
    assert result.matched == 4
    assert result.compared == 3
    np.testing.assert_allclose(np.sort(result.errors), [1.0, 3.0, 5.0])
    assert result.mean == pytest.approx(3.0)
    assert result.median == pytest.approx(3.0)
    assert result.p90 == pytest.approx(4.6)
    assert result.to_dict()["loc_compared"] == 3


def test_localisation_error_prefers_the_better_overlap_in_crowded_frames() -> None:
    gt = table([("c1", 1, 1, 0, 0, 10, 10, 0.0, 0.0), ("c1", 2, 1, 4, 0, 10, 10, 10.0, 0.0)])
    pred = table([("c1", 7, 1, 3, 0, 10, 10, 10.5, 0.0), ("c1", 8, 1, 0, 0, 10, 10, 0.0, 0.5)])
    result = localisation_error(gt, pred)
    np.testing.assert_allclose(np.sort(result.errors), [0.5, 0.5])


def test_localisation_error_without_pairs_is_nan() -> None:
    result = localisation_error(GT, GT)  # boxes match, positions unknown
    assert result.matched == 14 and result.compared == 0
    assert math.isnan(result.mean) and math.isnan(result.median) and math.isnan(result.p90)


# ---------------------------------------------------------------------------------- UCLA CAMPUS
@pytest.fixture(scope="module")
def ucla_gt() -> MtmcTable:
    return read_vatic_views(shared_path("data", "ucla-campus-auditorium"))


@pytest.fixture(scope="module")
def ucla_self(ucla_gt: MtmcTable) -> MtmcScores:
    return evaluate_mtmc(ucla_gt, ucla_gt)


def box_counts(source: MtmcTable) -> NDArray[np.int64]:
    """``(num_ids, num_cameras)`` boxes per global id and camera."""
    counts = np.zeros((int(source.obj_id.max()) + 1, len(source.cameras())), np.int64)
    np.add.at(counts, (source.obj_id, source.camera), 1)
    return counts


def assert_all_one(scores: MotScores) -> None:
    summary = scores.summary()
    for field in ("IDF1", "IDP", "IDR", "HOTA", "DetA", "AssA", "MOTA"):
        assert summary[field] == pytest.approx(1.0), field


def test_ucla_ground_truth_against_itself(ucla_gt: MtmcTable, ucla_self: MtmcScores) -> None:
    assert ucla_self.cameras == ("HC3", "HC4", "IP2", "IP5")
    assert_all_one(ucla_self.overall)
    assert_all_one(ucla_self.combined)
    for scores in ucla_self.per_camera.values():
        assert_all_one(scores)
    out = ucla_self.to_dict()
    assert out["mtmc_idtp"] == len(ucla_gt) == 134168
    assert (out["mtmc_idfn"], out["mtmc_idfp"]) == (0, 0)
    assert ucla_self.overall.summary()["IDSW"] == 0


def test_ucla_dropped_camera(ucla_gt: MtmcTable) -> None:
    dropped = "HC4"
    pred = {name: ucla_gt.for_camera(name) for name in ucla_gt.cameras() if name != dropped}
    size = int(ucla_gt.rows_of(dropped).sum())
    result = evaluate_mtmc(ucla_gt, pred)
    overall = result.overall.summary()
    assert result.missing_cameras == (dropped,)
    assert overall["IDTP"] == len(ucla_gt) - size
    assert overall["IDFN"] == size == 3262
    assert overall["IDFP"] == 0
    assert result.per_camera[dropped].summary()["CLR_FN"] == size
    assert result.per_camera[dropped].summary()["IDF1"] == 0.0
    for name in pred:
        assert result.per_camera[name].summary()["IDF1"] == 1.0


def _max_iou_between(source: MtmcTable, camera: str, a: int, b: int) -> float:
    rows = source.rows_of(camera)
    box_a = {
        int(f): x
        for f, x in zip(
            source.frame[rows & (source.obj_id == a)], source.xywh[rows & (source.obj_id == a)], strict=True
        )
    }
    best = 0.0
    for frame, other in zip(
        source.frame[rows & (source.obj_id == b)], source.xywh[rows & (source.obj_id == b)], strict=True
    ):
        mine = box_a.get(int(frame))
        if mine is None:
            continue
        width = min(mine[0] + mine[2], other[0] + other[2]) - max(mine[0], other[0])
        height = min(mine[1] + mine[3], other[1] + other[3]) - max(mine[1], other[1])
        inter = max(width, 0.0) * max(height, 0.0)
        best = max(best, inter / (mine[2] * mine[3] + other[2] * other[3] - inter))
    return best


def test_ucla_ids_swapped_in_one_camera(ucla_gt: MtmcTable) -> None:
    camera, a, b = "IP2", 12, 14
    # Precondition of the count below: a's and b's boxes never overlap enough to be confused.
    assert _max_iou_between(ucla_gt, camera, a, b) < 0.5
    pred = relabel(ucla_gt, {(camera, a): b, (camera, b): a})
    result = evaluate_mtmc(ucla_gt, pred)
    for scores in result.per_camera.values():
        assert scores.summary()["IDF1"] == 1.0
    counts = box_counts(ucla_gt)
    column = ucla_gt.cameras().index(camera)
    in_camera = counts[a, column] + counts[b, column]
    elsewhere = counts[a].sum() + counts[b].sum() - in_camera
    # Each gt id keeps one predicted id over all cameras: the straight pairing keeps the
    # boxes outside the camera, the crossed pairing those inside; the better one wins.
    expected_idtp = len(ucla_gt) - min(in_camera, elsewhere)
    overall = result.overall.summary()
    assert overall["IDTP"] == expected_idtp
    assert overall["IDFN"] == overall["IDFP"] == len(ucla_gt) - expected_idtp
    assert overall["IDF1"] == pytest.approx(expected_idtp / len(ucla_gt))
    assert overall["IDF1"] < 1.0


def test_ucla_one_camera_shifted_off_target(ucla_gt: MtmcTable) -> None:
    camera = "HC3"
    rows = ucla_gt.rows_of(camera)
    xywh = ucla_gt.xywh.copy()
    xywh[rows, 0] += 10_000.0  # IoU 0 with everything
    pred = MtmcTable(
        ucla_gt.camera, ucla_gt.camera_names, ucla_gt.obj_id, ucla_gt.frame, xywh, ucla_gt.world_xy
    )
    result = evaluate_mtmc(ucla_gt, pred)
    size = int(rows.sum())
    shifted = result.per_camera[camera].summary()
    assert (shifted["CLR_TP"], shifted["CLR_FN"], shifted["CLR_FP"]) == (0, size, size)
    assert (shifted["IDTP"], shifted["IDFN"], shifted["IDFP"]) == (0, size, size)
    assert shifted["IDF1"] == 0.0
    assert shifted["MOTA"] == pytest.approx(-1.0)  # (TP - FP - IDSW) / GT = -size / size
    assert shifted["HOTA"] == 0.0
    overall = result.overall.summary()
    total = len(ucla_gt)
    assert (overall["IDTP"], overall["IDFN"], overall["IDFP"]) == (total - size, size, size)
    assert (overall["CLR_TP"], overall["CLR_FN"], overall["CLR_FP"]) == (total - size, size, size)
    assert overall["IDSW"] == 0
    assert overall["MOTA"] == pytest.approx((total - 2 * size) / total)
    assert overall["IDF1"] == pytest.approx((total - size) / total)


def test_ucla_camera_local_ids(ucla_gt: MtmcTable) -> None:
    # A tracker with no cross-camera association: every camera has its own id range.
    pred = MtmcTable(
        ucla_gt.camera,
        ucla_gt.camera_names,
        ucla_gt.obj_id + 1000 * (ucla_gt.camera + 1),
        ucla_gt.frame,
        ucla_gt.xywh,
        ucla_gt.world_xy,
    )
    result = evaluate_mtmc(ucla_gt, pred)
    for scores in result.per_camera.values():
        assert_all_one(scores)
    assert result.combined.summary()["IDF1"] == 1.0
    # Each person can keep only one camera's id: the camera where that person has most boxes.
    expected_idtp = int(box_counts(ucla_gt).max(axis=1).sum())
    overall = result.overall.summary()
    assert overall["IDTP"] == expected_idtp
    assert overall["IDF1"] == pytest.approx(expected_idtp / len(ucla_gt))
    assert overall["DetA"] == pytest.approx(1.0)
    assert overall["AssA"] < 1.0
