"""AI City MTMC rows and VATIC annotation rows: reading, writing, errors, and the UCLA CAMPUS data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.io.formats import FormatError
from crossview.io.formats.mot import MotTable
from crossview.io.formats.mtmc import MtmcTable, camera_name, read_mtmc, sorted_cameras, write_mtmc
from crossview.io.formats.vatic import read_vatic, read_vatic_views, vatic_to_mot
from tests.conftest import shared_path

UCLA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ucla-campus-auditorium"
UCLA_VISIBLE_ROWS = {"HC3": 13694, "HC4": 3262, "IP2": 44223, "IP5": 72989}
UCLA_ALL_ROWS = {"HC3": 98244, "HC4": 76412, "IP2": 87312, "IP5": 103683}


def ucla() -> Path:
    return shared_path("data", "ucla-campus-auditorium")


def sample_table() -> MtmcTable:
    return MtmcTable.from_rows(
        ["c002", "c010", "c002", "41", "c010"],
        [
            [7, 1, 10.5, 20, 30, 60, 3.25, -4.5],
            [7, 1, 100, 200, 30, 60, -1, -1],
            [8, 2, 0, 0, 5, 5, 0, 0],
            [9, 3, 1, 2, 3, 4, 12, 13],
            [7, 2, 101, 200, 30, 60, -1, 7.5],
        ],
    )


# ---------------------------------------------------------------------------------- MTMC
def test_cameras_are_canonical_and_naturally_sorted() -> None:
    table = sample_table()
    assert table.cameras() == ("41", "c002", "c010")
    assert camera_name("007") == "7" and camera_name(41) == "41" and camera_name(" c1 ") == "c1"
    assert sorted_cameras(["c10", "c2", "3", "c2"]) == ("3", "c2", "c10")
    assert table.camera_of_rows().tolist() == ["c002", "c010", "c002", "41", "c010"]


def test_world_positions_unknown_only_when_both_are_minus_one() -> None:
    table = sample_table()
    assert table.world_known.tolist() == [True, False, True, True, True]
    np.testing.assert_array_equal(table.world_xy[4], [-1, 7.5])
    np.testing.assert_array_equal(table.world_for_camera("c010"), [[np.nan, np.nan], [-1, 7.5]])
    np.testing.assert_array_equal(table.foot_points()[0], [25.5, 80])


def test_round_trip(tmp_path: Path) -> None:
    table = sample_table()
    path = tmp_path / "sub" / "track1.txt"
    write_mtmc(path, table)
    lines = path.read_text().splitlines()
    assert lines[0] == "41 9 3 1 2 3 4 12 13"
    assert lines[1] == "c002 7 1 10.5 20 30 60 3.25 -4.5"
    assert "c010 7 1 100 200 30 60 -1 -1" in lines
    back = read_mtmc(path)
    assert back.cameras() == table.cameras()
    for name in table.cameras():
        ours, theirs = table.rows_of(name), back.rows_of(name)
        order_ours = np.lexsort((table.obj_id[ours], table.frame[ours]))
        order_back = np.lexsort((back.obj_id[theirs], back.frame[theirs]))
        np.testing.assert_array_equal(table.to_array()[ours][order_ours], back.to_array()[theirs][order_back])
        np.testing.assert_array_equal(
            table.world_xy[ours][order_ours], back.world_xy[theirs][order_back], strict=True
        )


def test_read_accepts_integer_cameras_comments_and_commas(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text("# camera obj frame x y w h xw yw\n001 5 1 0 0 10 10 -1 -1\n\n1,6,2,0,0,10,10,1.5,2\n")
    table = read_mtmc(path)
    assert table.cameras() == ("1",)
    assert table.obj_id.tolist() == [5, 6]
    assert table.frame.tolist() == [1, 2]
    assert table.world_known.tolist() == [False, True]


def test_empty_file_is_a_table_with_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    table = read_mtmc(path)
    assert len(table) == 0 and table.cameras() == ()
    write_mtmc(tmp_path / "again.txt", table)
    assert (tmp_path / "again.txt").read_text() == ""


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("c1 1 1 0 0 10 10 -1 -1\nc1 1 2 0 0 10 10 -1\n", 2, "expected 9 columns, found 8"),
        ("c1 1 1 0 0 10 10 -1 -1 5\n", 1, "expected 9 columns, found 10"),
        (
            "\n# note\nc1 1 1 0 0 10 10 -1 -1\nc1 1 2 0 zero 10 10 -1 -1\n",
            4,
            "column 5 is not a number: 'zero'",
        ),
        ("c1 1 1 0 0 10 10 -1 -1\nc1 1 0 0 0 10 10 -1 -1\n", 2, "frame must be a whole number >= 1, got 0"),
        ("c1 1 1.5 0 0 10 10 -1 -1\n", 1, "frame must be a whole number >= 1, got 1.5"),
        ("c1 2.5 1 0 0 10 10 -1 -1\n", 1, "obj_id must be a whole number, got 2.5"),
        ("c1 1 1 0 0 inf 10 -1 -1\n", 1, "non-finite value"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as caught:
        read_mtmc(path)
    assert caught.value.path == path
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read file"):
        read_mtmc(tmp_path / "nope.txt")


def test_for_camera_is_a_scoreable_mot_table() -> None:
    table = sample_table()
    mot = table.for_camera("c010")
    assert mot.frame.tolist() == [1, 2]
    assert mot.track_id.tolist() == [7, 7]
    assert mot.score.tolist() == [1.0, 1.0]
    assert mot.class_id.tolist() == [1, 1]
    assert mot.visibility.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(mot.xywh, [[100, 200, 30, 60], [101, 200, 30, 60]])
    with pytest.raises(KeyError, match="no camera 'c10'"):
        table.for_camera("c10")  # only whole numbers lose their leading zeros


def test_from_mot_tables_keeps_empty_cameras_and_world() -> None:
    one = MotTable.from_array([[1, 4, 0, 0, 10, 10, 1], [2, 4, 1, 0, 10, 10, 1]])
    table = MtmcTable.from_mot_tables(
        {"c10": one, "c2": MotTable.empty(), 3: one}, world_xy={"c10": [[1.0, 2.0], [-1, -1]]}
    )
    assert table.cameras() == ("3", "c2", "c10")
    assert len(table) == 4
    assert len(table.for_camera("c2")) == 0
    np.testing.assert_array_equal(table.world_for_camera("c10"), [[1.0, 2.0], [np.nan, np.nan]])
    assert not table.world_known[table.rows_of(3)].any()
    assert set(table.to_mot_tables()) == {"3", "c2", "c10"}
    with pytest.raises(ValueError, match="same camera twice"):
        MtmcTable.from_mot_tables({"7": one, "007": one})
    with pytest.raises(ValueError, match="world_xy for camera c10 has 1 rows"):
        MtmcTable.from_mot_tables({"c10": one}, world_xy={"c10": [[1.0, 2.0]]})


def test_table_checks_its_columns() -> None:
    with pytest.raises(ValueError, match="obj_id has 1 rows, expected 2"):
        MtmcTable(
            np.zeros(2, np.int64),
            ("a",),
            np.zeros(1, np.int64),
            np.ones(2, np.int64),
            np.zeros((2, 4)),
            np.zeros((2, 2)),
        )
    with pytest.raises(ValueError, match="camera indices"):
        MtmcTable(
            np.array([1]),
            ("a",),
            np.zeros(1, np.int64),
            np.ones(1, np.int64),
            np.zeros((1, 4)),
            np.zeros((1, 2)),
        )


# ---------------------------------------------------------------------------------- VATIC
VATIC_SAMPLE = """\
3 10 20 40 80 0 0 0 0 "PERSON"
3 12 20 42 80 1 0 1 1 "PERSON"
3 12 20 42 80 2 1 0 1 "PERSON"
5 100 100 150 200 1 0 0 0 "car/vehicle" "parked"
6 0 0 10 10 2 0 0 0 "big bicycle"
"""


def test_read_vatic_columns_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "view-A.txt"
    path.write_text(VATIC_SAMPLE)
    table = read_vatic(path)
    assert table.track_id.tolist() == [3, 3, 3, 5, 6]
    assert table.frame.tolist() == [0, 1, 2, 1, 2]
    assert table.lost.tolist() == [False, False, True, False, False]
    assert table.occluded.tolist() == [False, True, False, False, False]
    assert table.generated.tolist() == [False, True, True, False, False]
    assert table.label.tolist() == ["PERSON", "PERSON", "PERSON", "car/vehicle", "big bicycle"]
    np.testing.assert_array_equal(table.xywh[0], [10, 20, 30, 60])


def test_vatic_to_mot_frames_lost_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "view-A.txt"
    path.write_text(VATIC_SAMPLE)
    table = read_vatic(path)
    mot = vatic_to_mot(table)
    assert mot.frame.tolist() == [1, 2, 2, 3]  # 0-based file, lost row dropped
    assert mot.track_id.tolist() == [3, 3, 5, 6]
    assert mot.class_id.tolist() == [1, 1, 1, 1]
    assert mot.visibility.tolist() == [1.0, -1.0, 1.0, 1.0]  # occluded: fraction not known
    assert mot.score.tolist() == [1.0] * 4
    assert len(vatic_to_mot(table, keep_lost=True)) == 5
    assert vatic_to_mot(table, labels=["person"]).track_id.tolist() == [3, 3]
    shifted = vatic_to_mot(table[table.frame >= 1], frame_base=1)
    assert shifted.frame.tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match="below frame_base"):
        vatic_to_mot(table, frame_base=1)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('1 0 0 10 10 0 0 0 0 "PERSON"\n1 0 0 10 10 1 0 0 0\n', 2, "expected 9 numbers and a label"),
        ('\n1 0 0 10 10 0 0 0 0 "PERSON"\n1 0 x 10 10 1 0 0 0 "PERSON"\n', 3, "column 3 is not a number"),
        ('1 0 0 10 10 0.5 0 0 0 "PERSON"\n', 1, "whole numbers"),
        ('1 0 0 10 10 -1 0 0 0 "PERSON"\n', 1, "whole numbers"),
        ('1 0 0 10 10 3 2 0 0 "PERSON"\n', 1, "must be 0 or 1"),
        ('1 20 0 10 10 3 0 0 0 "PERSON"\n', 1, "xmax < xmin"),
    ],
)
def test_vatic_malformed_lines(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "view-bad.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as caught:
        read_vatic(path)
    assert caught.value.path == path and caught.value.line == line
    assert reason in caught.value.reason


def test_vatic_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "view-empty.txt"
    path.write_text("\n")
    assert len(read_vatic(path)) == 0
    assert len(vatic_to_mot(read_vatic(path))) == 0


def test_read_vatic_views_joins_a_folder(tmp_path: Path) -> None:
    (tmp_path / "view-B2.txt").write_text(VATIC_SAMPLE)
    (tmp_path / "view-B10.txt").write_text('3 0 0 5 5 4 0 0 0 "PERSON"\n')
    (tmp_path / "notes.txt").write_text("not a view")
    table = read_vatic_views(tmp_path)
    assert table.cameras() == ("B2", "B10")
    assert table.for_camera("B10").frame.tolist() == [5]
    assert table.for_camera("B2").track_id.tolist() == [3, 3, 5, 6]
    assert not table.world_known.any()
    with pytest.raises(FileNotFoundError, match="no VATIC view files"):
        read_vatic_views(tmp_path / "nothing")


# ---------------------------------------------------------------------------------- UCLA CAMPUS
@pytest.fixture(scope="module")
def ucla_views() -> MtmcTable:
    return read_vatic_views(ucla())


def test_ucla_raw_files_count_frames_from_zero_and_fill_every_frame() -> None:
    table = read_vatic(ucla() / "view-HC4.txt")
    assert len(table) == UCLA_ALL_ROWS["HC4"]
    assert int(table.frame.min()) == 0 and int(table.frame.max()) == 5457
    assert set(table.label.tolist()) == {"PERSON"}
    # VATIC writes every track in every frame; "lost" rows stand for "not in view".
    _, per_track = np.unique(table.track_id, return_counts=True)
    assert (per_track == 5458).all()
    assert int((~table.lost).sum()) == UCLA_VISIBLE_ROWS["HC4"]


def test_ucla_views_as_mtmc(ucla_views: MtmcTable) -> None:
    assert ucla_views.cameras() == ("HC3", "HC4", "IP2", "IP5")
    for name, rows in UCLA_VISIBLE_ROWS.items():
        mot = ucla_views.for_camera(name)
        assert len(mot) == rows
        assert int(mot.frame.min()) == 1
        keys = mot.frame * 100 + mot.track_id
        assert len(np.unique(keys)) == len(keys)  # one box per id and frame
    assert set(np.unique(ucla_views.obj_id).tolist()) == set(range(21))


def _ground_points(camera: dict[str, NDArray[np.float64]], foot: NDArray[np.float64]) -> NDArray[np.float64]:
    """The README's recipe: solve ``[KR[:, :2] | (centre - p; -1)] q = KRT`` for each foot point."""
    kr = camera["K"] @ camera["R"]
    krt = kr @ camera["T"]
    scaled = foot * camera["scale"]
    systems = np.zeros((len(foot), 3, 3))
    systems[:, :, :2] = kr[:, :2]
    systems[:, 0, 2] = camera["center"][0] - scaled[:, 0]
    systems[:, 1, 2] = camera["center"][1] - scaled[:, 1]
    systems[:, 2, 2] = -1
    solved = np.linalg.solve(systems, np.broadcast_to(krt.reshape(1, 3), (len(foot), 3))[..., None])
    return solved[:, :2, 0]


def test_ucla_track_ids_name_the_same_person_in_every_view(ucla_views: MtmcTable) -> None:
    """Where two views have calibration (HC3, HC4), the same id lands on the same floor spot."""
    scipy_io = pytest.importorskip("scipy.io")
    cameras = {}
    for entry in scipy_io.loadmat(str(ucla() / "cam_param.mat"))["cam_param"][0]:
        name = str(entry["name"][0]).removeprefix("view-")
        cameras[name] = {
            "K": entry["K"].astype(np.float64),
            "R": entry["R"].astype(np.float64),
            "T": entry["T"].astype(np.float64),
            "scale": float(entry["scale"][0, 0]),
            "center": entry["center"][0].astype(np.float64),
        }
    assert set(cameras) == {"HC3", "HC4"}
    points = {}
    for name in cameras:
        rows = ucla_views.rows_of(name)
        ground = _ground_points(cameras[name], ucla_views.foot_points()[rows])
        points[name] = (ucla_views.frame[rows], ucla_views.obj_id[rows], ground)
    frame_a, id_a, xy_a = points["HC3"]
    frame_b, id_b, xy_b = points["HC4"]
    # every (HC3 box, HC4 box) pair of the same frame, by a sorted join on the frame
    order = np.argsort(frame_b, kind="stable")
    frame_b, id_b, xy_b = frame_b[order], id_b[order], xy_b[order]
    starts = np.searchsorted(frame_b, frame_a, side="left")
    counts = np.searchsorted(frame_b, frame_a, side="right") - starts
    pair_a = np.repeat(np.arange(len(frame_a)), counts)
    pair_b = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
    distance = np.linalg.norm(xy_a[pair_a] - xy_b[pair_b], axis=1)
    same_id = id_a[pair_a] == id_b[pair_b]
    assert same_id.sum() > 1000
    assert np.median(distance[same_id]) < 0.5
    assert np.median(distance[~same_id]) > 2.0
    # the nearest person in the other view is the same id whenever that id is visible there
    by_distance = np.lexsort((distance, pair_a))
    first = by_distance[np.r_[True, pair_a[by_distance][1:] != pair_a[by_distance][:-1]]]
    has_partner = np.bincount(pair_a[same_id], minlength=len(frame_a)) > 0
    nearest_is_same = same_id[first][has_partner[pair_a[first]]]
    assert nearest_is_same.mean() > 0.99
