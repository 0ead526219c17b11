"""Contract tests every tracker passes, then each tracker's own behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from crossview import Detections
from crossview.track import (
    TRACKERS,
    ByteTrackTracker,
    OcSortConfig,
    OcSortTracker,
    SortConfig,
    SortTracker,
    forecast,
    make_tracker,
)
from crossview.track.base import KalmanTracker

NAMES = sorted(TRACKERS)


def walkers(num_frames: int = 40, seed: int = 0) -> list[Detections]:
    """Three boxes moving steadily, with jitter, in separate lanes."""
    rng = np.random.default_rng(seed)
    frames = []
    for frame in range(num_frames):
        boxes = []
        for lane, speed in enumerate((3.0, -2.0, 1.0)):
            x = 100 + 200 * lane + speed * frame
            boxes.append([x, 50 + 150 * lane, x + 40, 130 + 150 * lane])
        xyxy = np.array(boxes) + rng.normal(0, 0.5, (3, 4))
        frames.append(Detections(xyxy=xyxy, confidence=[0.9, 0.8, 0.95], frame_index=frame, camera_id="c1"))
    return frames


@pytest.fixture(params=NAMES)
def tracker(request: pytest.FixtureRequest) -> KalmanTracker:
    return make_tracker(request.param)


def test_empty_frames_are_fine(tracker: KalmanTracker) -> None:
    out = tracker.update(Detections.empty(frame_index=0))
    assert len(out) == 0 and out.tracker_id.shape == (0,)
    assert out.data["track_xyxy"].shape == (0, 4)


def test_returns_the_same_rows_in_order(tracker: KalmanTracker) -> None:
    for detections in walkers(10):
        out = tracker.update(detections)
        np.testing.assert_array_equal(out.xyxy, detections.xyxy)
        np.testing.assert_array_equal(out.confidence, detections.confidence)
        assert out.camera_id == "c1" and out.frame_index == detections.frame_index
        assert out.data["track_xyxy"].shape == (3, 4)


def test_steady_objects_keep_one_id_each(tracker: KalmanTracker) -> None:
    ids = np.array([tracker.update(d).tracker_id for d in walkers(40)])
    assert (ids[1:] > 0).all()
    for lane in range(3):
        assert len(set(ids[1:, lane].tolist())) == 1
    assert len(set(ids[-1].tolist())) == 3
    assert set(ids[-1].tolist()) <= {1, 2, 3}  # ids start at 1 and are not wasted


def test_instances_own_their_id_counters(tracker: KalmanTracker) -> None:
    name = type(tracker)
    a, b = name(), name()
    for detections in walkers(5):
        a.update(detections)
    out_b = [b.update(d) for d in walkers(5)]
    assert set(out_b[-1].tracker_id.tolist()) == {1, 2, 3}


def test_deterministic(tracker: KalmanTracker) -> None:
    first = [tracker.update(d).tracker_id.tolist() for d in walkers(30, seed=3)]
    tracker.reset()
    second = [tracker.update(d).tracker_id.tolist() for d in walkers(30, seed=3)]
    assert first == second


def test_identity_survives_a_short_occlusion(tracker: KalmanTracker) -> None:
    frames = walkers(40)
    before = after = None
    for index, detections in enumerate(frames):
        if 15 <= index < 20:  # lane 0 is occluded for 5 frames
            detections = detections[[1, 2]]
        out = tracker.update(detections)
        if index == 14:
            before = int(out.tracker_id[0])
        if index == 25:
            after = int(out.tracker_id[0])
    assert before is not None and before > 0 and after == before


def test_filtered_boxes_are_closer_to_the_truth_than_noisy_detections(tracker: KalmanTracker) -> None:
    rng = np.random.default_rng(5)
    detection_error, filtered_error = [], []
    for frame in range(60):
        truth = np.array([[100 + 3.0 * frame, 100, 160 + 3.0 * frame, 220]])
        noisy = truth + rng.normal(0, 3, (1, 4))
        out = tracker.update(Detections(xyxy=noisy, confidence=[0.9], frame_index=frame))
        if frame >= 20:
            detection_error.append(np.abs(noisy - truth).mean())
            filtered_error.append(np.abs(out.data["track_xyxy"] - truth).mean())
    assert np.mean(filtered_error) < 0.8 * np.mean(detection_error)


def test_low_scores_never_start_tracks() -> None:
    for name in NAMES:
        tracker = make_tracker(name)
        for frame in range(10):
            out = tracker.update(Detections(xyxy=[[0, 0, 10, 20]], confidence=[0.05], frame_index=frame))
            assert out.tracker_id.tolist() == [-1], name


def test_frame_gaps_advance_the_filter() -> None:
    tracker = SortTracker()
    for frame in range(10):
        tracker.update(Detections(xyxy=[[5 * frame, 0, 5 * frame + 40, 80]], frame_index=frame))
    out = tracker.update(Detections(xyxy=[[5 * 14, 0, 5 * 14 + 40, 80]], frame_index=14))
    assert out.tracker_id.tolist() == [1]  # predicted across the 5-frame gap, not 1 frame


def test_forecast_extrapolates_with_growing_uncertainty() -> None:
    tracker = SortTracker()
    for frame in range(20):
        tracker.update(Detections(xyxy=[[4 * frame, 10, 4 * frame + 40, 90]], frame_index=frame))
    ahead = forecast(tracker.active_tracks(), [1, 10])
    assert ahead.track_id.tolist() == [1]
    centre = ahead.center()[0]
    assert centre[1, 0] - centre[0, 0] == pytest.approx(36, abs=3)  # 9 more frames at 4 px/frame
    assert centre[1, 1] == pytest.approx(50, abs=0.5)
    assert (ahead.std[0, 1] > ahead.std[0, 0]).all()
    with pytest.raises(ValueError, match=">= 0"):
        forecast(tracker.active_tracks(), -1)


def test_bytetrack_weak_detections_keep_tracks_alive_but_do_not_start_them() -> None:
    tracker = ByteTrackTracker()
    for frame in range(5):
        tracker.update(Detections(xyxy=[[0, 0, 40, 80]], confidence=[0.9], frame_index=frame))
    out = tracker.update(
        Detections(xyxy=[[1, 0, 41, 80], [300, 300, 340, 380]], confidence=[0.2, 0.2], frame_index=5)
    )
    assert out.tracker_id.tolist() == [1, -1]


def test_ocsort_recovers_from_the_last_observation() -> None:
    tracker = OcSortTracker(OcSortConfig(max_age=30))
    for frame in range(10):
        tracker.update(
            Detections(xyxy=[[10 * frame, 0, 10 * frame + 60, 120]], confidence=[0.9], frame_index=frame)
        )
    # Lost for 8 frames; it reappears near where it was last seen (it had stopped):
    # the prediction has drifted away, the last observation has not.
    out = tracker.update(Detections(xyxy=[[95, 0, 155, 120]], confidence=[0.9], frame_index=18))
    assert out.tracker_id.tolist() == [1]


def test_configs_validate_and_factory_names() -> None:
    with pytest.raises(ValidationError):
        SortConfig(match_iou=0)
    with pytest.raises(ValidationError):
        SortConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown tracker 'deepsort'"):
        make_tracker("deepsort")
    assert isinstance(make_tracker("SORT", min_hits=3), SortTracker)


@pytest.mark.parametrize("name", NAMES)
def test_appearance_keeps_identities_when_neighbours_swap_places(name: str) -> None:
    """Two overlapping people trade places between frames: boxes alone swap their ids."""
    red, blue = np.eye(4)[0], np.eye(4)[1]

    def run(weight: float) -> list[list[int]]:
        tracker = make_tracker(name, appearance_weight=weight)
        ids = []
        for frame in range(12):
            left, right = [red, blue] if frame < 6 else [blue, red]
            detections = Detections(
                xyxy=[[0, 0, 40, 80], [12, 0, 52, 80]],
                confidence=[0.9, 0.9],
                embedding=[left, right],
                frame_index=frame,
            )
            ids.append(tracker.update(detections).tracker_id.tolist())
        return ids

    with_appearance = run(0.5)
    assert with_appearance[5] == [1, 2]
    assert with_appearance[-1] == [2, 1]  # each person keeps their id in their new place
    assert run(0.0)[-1] == [1, 2]  # motion alone follows the places, not the people


@pytest.mark.parametrize("name", NAMES)
def test_tracks_never_change_class(name: str) -> None:
    tracker = make_tracker(name)
    for frame in range(5):
        tracker.update(Detections(xyxy=[[0, 0, 40, 80]], class_id=[0], confidence=[0.9], frame_index=frame))
    # Same place, other class (a person box where a bicycle was): a new object, not the same track.
    out = tracker.update(Detections(xyxy=[[0, 0, 40, 80]], class_id=[1], confidence=[0.9], frame_index=5))
    assert out.tracker_id.tolist() == [-1]
    out = tracker.update(
        Detections(
            xyxy=[[0, 0, 40, 80], [1, 0, 41, 80]], class_id=[0, 1], confidence=[0.9, 0.9], frame_index=6
        )
    )
    assert out.tracker_id[0] == 1 and out.tracker_id[1] not in (-1, 1)
