from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossview import Detections
from crossview.io.formats import FormatError
from crossview.io.formats.mot import (
    MotTable,
    SequenceInfo,
    detections_to_mot,
    mot_to_detections,
    read_mot,
    read_seqinfo,
    write_mot,
    write_seqinfo,
)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack(
        [
            rng.integers(1, 50, 200),
            rng.integers(0, 30, 200),
            rng.uniform(0, 1900, (200, 4)),
            rng.uniform(0, 1, 200),
            -np.ones((200, 3)),
        ]
    )
    table = MotTable.from_array(rows)
    write_mot(tmp_path / "r.txt", table)
    back = read_mot(tmp_path / "r.txt")
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    np.testing.assert_array_equal(back.to_array(), rows[order])


def test_reads_real_ground_truth_columns(shared: Path) -> None:
    gt = read_mot(shared / "data/mot17/MOT17-09/gt/gt.txt")
    assert gt.extra.shape[1] == 2
    assert set(np.unique(gt.class_id)) <= set(range(1, 14))
    assert gt.visibility.min() >= 0 and gt.visibility.max() <= 1
    info = read_seqinfo(shared / "data/mot17/MOT17-09/seqinfo.ini")
    assert (info.length, info.frame_rate, info.width, info.height) == (525, 30.0, 1920, 1080)
    assert gt.frame.max() == info.length


def test_whitespace_separated_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "ws.txt").write_text("1 3 10 20 30 40 0.9\n2 3 11 21 30 40 0.8\n")
    table = read_mot(tmp_path / "ws.txt")
    assert table.track_id.tolist() == [3, 3] and table.score.tolist() == [0.9, 0.8]
    (tmp_path / "empty.txt").write_text("")
    assert len(read_mot(tmp_path / "empty.txt")) == 0
    (tmp_path / "blank.txt").write_text("\n\n")
    assert len(read_mot(tmp_path / "blank.txt")) == 0


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("1,1,0,0,10,10,1\n2,1,0,0,10\n", 2, "at least 6 columns, found 5"),
        ("1,1,0,0,10,10,1\n2,1,0,0,10,10,1,1\n", 2, "expected 7 columns"),
        ("1,1,0,0,10,10,1\n\n2,x,0,0,10,10,1\n", 3, "column 2 is not a number: 'x'"),
        ("0,1,0,0,10,10,1\n", 1, "frame must be a whole number >= 1"),
        ("1,1,0,0,10,10,1\n1,2.5,0,0,10,10,1\n", 2, "id must be a whole number"),
        ("1,1,0,0,10,10,1\n1,2,0,nan,10,10,1\n", 2, "non-finite"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as caught:
        read_mot(path)
    assert caught.value.line == line
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_unreadable_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read file"):
        read_mot(tmp_path / "absent.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(FormatError, match="not a text file"):
        read_mot(tmp_path / "binary.txt")


def test_frames_iterates_in_order_keeping_file_order() -> None:
    table = MotTable.from_array([[2, 5, 0, 0, 1, 1, 1], [1, 9, 0, 0, 1, 1, 1], [2, 3, 0, 0, 1, 1, 1]])
    frames = [(frame, rows.track_id.tolist()) for frame, rows in table.frames()]
    assert frames == [(1, [9]), (2, [5, 3])]


def test_detections_convert_both_ways() -> None:
    detections = Detections(xyxy=[[10, 20, 30, 60]], confidence=[0.5], tracker_id=[7], frame_index=4)
    table = detections_to_mot(detections)
    assert table.frame.tolist() == [5] and table.track_id.tolist() == [7]
    assert table.xywh.tolist() == [[10, 20, 20, 40]]
    back = mot_to_detections(table, camera_id="c1")
    assert back.frame_index == 4 and back.camera_id == "c1"
    np.testing.assert_array_equal(back.xyxy, detections.xyxy)
    with pytest.raises(ValueError, match="frame_index"):
        detections_to_mot(Detections(xyxy=[[0, 0, 1, 1]]))


def test_seqinfo_round_trip_and_errors(tmp_path: Path) -> None:
    info = SequenceInfo(name="S", length=42, frame_rate=12.5, width=640, height=480)
    write_seqinfo(tmp_path / "seqinfo.ini", info)
    assert "seqLength=42" in (tmp_path / "seqinfo.ini").read_text()
    assert read_seqinfo(tmp_path / "seqinfo.ini") == info
    (tmp_path / "bad.ini").write_text("[Sequence]\nseqLength=abc\n")
    with pytest.raises(FormatError, match="seqLength is not a number"):
        read_seqinfo(tmp_path / "bad.ini")
    (tmp_path / "none.ini").write_text("[Other]\n")
    with pytest.raises(FormatError, match=r"missing \[Sequence\]"):
        read_seqinfo(tmp_path / "none.ini")
