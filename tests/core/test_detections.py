from __future__ import annotations

import numpy as np
import pytest

from crossview import Detections


def make(n: int = 3, **columns: object) -> Detections:
    boxes = np.array([[i, i, i + 10, i + 20] for i in range(n)], dtype=np.float32)
    return Detections(xyxy=boxes, **columns)  # type: ignore[arg-type]


def test_defaults_fill_every_column_with_n_rows() -> None:
    d = make(3)
    assert d.confidence.tolist() == [1.0, 1.0, 1.0]
    assert d.class_id.dtype == np.int64 and d.class_id.tolist() == [0, 0, 0]
    assert d.tracker_id.tolist() == [-1, -1, -1]
    assert d.global_id.tolist() == [-1, -1, -1]
    assert d.xyxy.dtype == np.float32


def test_empty_is_valid_and_filterable() -> None:
    empty = Detections.empty(camera_id="gate", frame_index=4)
    assert len(empty) == 0 and empty.is_empty and empty.xyxy.shape == (0, 4)
    assert len(empty[empty.confidence > 0.5]) == 0
    assert Detections.empty(embedding_dim=8).embedding.shape == (0, 8)  # type: ignore[union-attr]
    assert Detections(xyxy=[]).xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"confidence": [0.1, 0.2]}, "confidence has 2 rows, expected 3"),
        ({"class_id": [[1], [2], [3]]}, "class_id must have shape"),
        ({"tracker_id": [0.5, 1, 2]}, "whole numbers"),
        ({"embedding": np.ones((2, 4))}, r"embedding must have shape \(3, D\)"),
        ({"embedding": np.zeros((3, 4))}, "all zero"),
        ({"data": {"speed": np.ones(2)}}, r"data\['speed'\] has shape"),
    ],
)
def test_misaligned_columns_are_refused_by_name(columns: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(3, **columns)


def test_bad_boxes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        Detections(xyxy=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        Detections(xyxy=[[0, 0, np.nan, 1]])
    with pytest.raises(ValueError, match="x2 < x1"):
        Detections(xyxy=[[5, 0, 1, 1]])


def test_mask_index_and_slice_keep_rows_aligned() -> None:
    d = make(
        4,
        confidence=[0.9, 0.1, 0.8, 0.2],
        tracker_id=[1, 2, 3, 4],
        embedding=np.eye(4),
        data={"speed": np.array([1.0, 2.0, 3.0, 4.0])},
    )
    kept = d[d.confidence > 0.5]
    assert kept.tracker_id.tolist() == [1, 3]
    assert kept.data["speed"].tolist() == [1.0, 3.0]
    assert kept.embedding is not None and kept.embedding.argmax(axis=1).tolist() == [0, 2]
    assert d[[3, 0]].tracker_id.tolist() == [4, 1]
    assert d[1:3].tracker_id.tolist() == [2, 3]
    assert len(d[2]) == 1
    with pytest.raises(IndexError, match="boolean mask has shape"):
        d[np.array([True, False])]


def test_embeddings_are_l2_normalised() -> None:
    d = make(2, embedding=[[3.0, 4.0], [0.0, 2.0]])
    assert d.embedding is not None
    np.testing.assert_allclose(d.embedding, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


def test_concatenate_stacks_rows_and_keeps_agreed_frame_fields() -> None:
    a = make(2, camera_id="c1", frame_index=3, tracker_id=[1, 2])
    b = make(1, camera_id="c1", frame_index=4, tracker_id=[7])
    both = Detections.concatenate([a, b])
    assert len(both) == 3 and both.tracker_id.tolist() == [1, 2, 7]
    assert both.camera_id == "c1" and both.frame_index is None
    assert len(Detections.concatenate([])) == 0
    with pytest.raises(ValueError, match="with and without embeddings"):
        Detections.concatenate([make(1, embedding=[[1.0, 0.0]]), make(1)])


def test_geometry_helpers() -> None:
    d = Detections(xyxy=[[10, 20, 30, 60]])
    assert d.xywh.tolist() == [[10, 20, 20, 40]]
    assert d.area.tolist() == [800]
    assert d.center.tolist() == [[20, 40]]
    assert d.foot.tolist() == [[20, 60]]
    assert Detections.from_xywh([[10, 20, 20, 40]]).xyxy.tolist() == [[10, 20, 30, 60]]


def test_replace_validates_again() -> None:
    d = make(2)
    assert d.replace(tracker_id=[5, 6]).tracker_id.tolist() == [5, 6]
    with pytest.raises(ValueError, match="expected 2"):
        d.replace(tracker_id=[5])
