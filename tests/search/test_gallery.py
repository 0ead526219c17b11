from __future__ import annotations

import numpy as np
import pytest

from crossview import Detections
from crossview.search.gallery import TrackGallery, box_quality


def frame(
    t: float, rows: list[tuple[int, list[float], list[float], float]], camera: str = "c1"
) -> Detections:
    """rows: (tracker_id, xyxy, embedding, confidence)."""
    return Detections(
        xyxy=[r[1] for r in rows],
        tracker_id=[r[0] for r in rows],
        embedding=[r[2] for r in rows],
        confidence=[r[3] for r in rows],
        camera_id=camera,
        frame_index=int(t * 10),
        timestamp=t,
    )


def test_aggregate_leans_towards_confident_views() -> None:
    gallery = TrackGallery()
    gallery.update(frame(0.0, [(1, [0, 0, 40, 100], [1.0, 0.0], 0.9)]))
    gallery.update(frame(0.1, [(1, [0, 0, 40, 100], [0.0, 1.0], 0.1)]))
    (summary,) = gallery.finish()
    assert summary.embedding[0] > 0.99  # weights 0.9 vs 0.1: the confident view dominates
    assert np.linalg.norm(summary.embedding) == pytest.approx(1.0, abs=1e-6)
    assert (summary.entry.t_start, summary.entry.t_end) == (0.0, 0.1)
    assert summary.entry.crop == "c1/0/0,0,40,100"  # the best view is referenced


def test_key_embeddings_cover_distinct_views() -> None:
    gallery = TrackGallery(max_keys=3)
    views = [[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    for index, view in enumerate(views):
        gallery.update(frame(index * 0.1, [(7, [0, 0, 40, 100], view, 0.9 - 0.1 * index)]))
    (summary,) = gallery.finish()
    keys = summary.keys
    assert keys.shape == (3, 3)
    assert keys[0] == pytest.approx(np.array(views[0]), abs=1e-6)  # the best view first
    assert {int(np.argmax(k)) for k in keys} == {0, 1, 2}  # three different looks, no near duplicate


def test_tracks_end_after_idle_time_per_camera() -> None:
    gallery = TrackGallery(max_idle=1.0)
    gallery.update(frame(0.0, [(1, [0, 0, 40, 100], [1.0, 0.0], 0.9)]))
    gallery.update(frame(0.0, [(1, [0, 0, 40, 100], [0.0, 1.0], 0.9)], camera="c2"))
    assert gallery.update(frame(0.5, [(2, [0, 0, 40, 100], [1.0, 0.0], 0.9)])) == []
    ended = gallery.update(frame(1.6, [(2, [0, 0, 40, 100], [1.0, 0.0], 0.9)]))
    assert [(s.entry.camera_id, s.entry.track_id) for s in ended] == [("c1", 1)]
    assert len(gallery) == 2  # c1/2 still open, c2/1 not judged by c1's clock


def test_untracked_rows_are_ignored_and_inputs_checked() -> None:
    gallery = TrackGallery()
    gallery.update(frame(0.0, [(-1, [0, 0, 40, 100], [1.0, 0.0], 0.9)]))
    assert gallery.finish() == []
    with pytest.raises(ValueError, match="camera_id and timestamp"):
        gallery.update(Detections(xyxy=[[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="embeddings"):
        gallery.update(Detections(xyxy=[[0, 0, 1, 1]], tracker_id=[1], camera_id="c", timestamp=0.0))


def test_box_quality_penalises_small_and_cut_boxes() -> None:
    xyxy = np.array([[10, 10, 50, 110], [10, 10, 20, 26], [0, 10, 40, 110]], np.float32)
    quality = box_quality(xyxy, np.array([0.8, 0.8, 0.8], np.float32), (640, 480))
    assert quality.tolist() == pytest.approx([0.8, 0.4, 0.4])
