"""Re-identification manifest CSV: reading, writing and the errors for malformed files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from crossview.io.formats import FormatError
from crossview.io.formats.reid import ReidManifest, read_reid_manifest, write_reid_manifest
from tests.conftest import shared_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture
def market_manifest() -> Path:
    return shared_path("data", "market1501", "manifest.csv")


def write(tmp_path: Path, text: str, name: str = "manifest.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ real data
def test_reads_the_market_sample(market_manifest: Path) -> None:
    manifest = read_reid_manifest(market_manifest, check_files=True)
    assert len(manifest) == 6338
    assert len(manifest.query) == 376
    assert len(manifest.gallery) == 5962
    assert manifest.paths[0] == "images/0002_c1s1_000451_03.jpg"
    assert manifest.files[0] == str(market_manifest.parent.resolve() / "images/0002_c1s1_000451_03.jpg")
    assert all(os.path.isabs(file) for file in manifest.files.tolist())
    assert manifest.pids.dtype == np.int64 and manifest.camids.dtype == np.int64
    assert (manifest.query.roles == "query").all()
    assert set(np.unique(manifest.camids).tolist()) <= set(range(1, 7))
    # Market file names encode the identity and camera: 0002_c1s1_... is pid 2, camera 1.
    names = [Path(path).name for path in manifest.paths.tolist()]
    assert [int(name[:4]) for name in names] == manifest.pids.tolist()
    assert [int(name.split("_c")[1][0]) for name in names] == manifest.camids.tolist()


def test_market_sample_round_trips_to_another_folder(market_manifest: Path, tmp_path: Path) -> None:
    manifest = read_reid_manifest(market_manifest)
    copy = tmp_path / "elsewhere" / "manifest.csv"
    write_reid_manifest(copy, manifest)
    again = read_reid_manifest(copy, check_files=True)
    np.testing.assert_array_equal(again.files, manifest.files)
    np.testing.assert_array_equal(again.pids, manifest.pids)
    np.testing.assert_array_equal(again.camids, manifest.camids)
    np.testing.assert_array_equal(again.roles, manifest.roles)


# ------------------------------------------------------------------------------ reading
def test_reads_columns_and_resolves_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path, "path,pid,camid,role\na/1.jpg,7,1,query\nb/2.jpg,-1,2,gallery\n/abs/3.jpg,7,3,gallery\n"
    )
    manifest = read_reid_manifest(path)
    assert manifest.paths.tolist() == ["a/1.jpg", "b/2.jpg", "/abs/3.jpg"]
    assert manifest.files.tolist() == [str(tmp_path / "a/1.jpg"), str(tmp_path / "b/2.jpg"), "/abs/3.jpg"]
    assert manifest.pids.tolist() == [7, -1, 7]
    assert manifest.camids.tolist() == [1, 2, 3]
    assert manifest.is_query.tolist() == [True, False, False]
    assert manifest.query.paths.tolist() == ["a/1.jpg"]
    assert manifest.gallery.pids.tolist() == [-1, 7]


def test_column_order_extra_columns_blank_lines_quotes_and_bom(tmp_path: Path) -> None:
    text = (
        "\ufeffrole,camid,note,pid,path\r\n\r\n"
        'query,1,x,3,"odd, name.jpg"\r\n  \r\n'
        "gallery, 2 ,y, 4 ,b.jpg\r\n"
    )
    manifest = read_reid_manifest(write(tmp_path, text))
    assert manifest.paths.tolist() == ["odd, name.jpg", "b.jpg"]
    assert manifest.pids.tolist() == [3, 4]
    assert manifest.camids.tolist() == [1, 2]
    assert manifest.roles.tolist() == ["query", "gallery"]


def test_header_only_is_an_empty_manifest(tmp_path: Path) -> None:
    manifest = read_reid_manifest(write(tmp_path, "path,pid,camid,role\n"))
    assert len(manifest) == 0
    assert len(manifest.query) == 0 and len(manifest.gallery) == 0
    assert manifest.pids.dtype == np.int64


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", None, "empty file"),
        ("path,pid,role\na.jpg,1,query\n", 1, "header lacks column.* camid"),
        ("\n\nfile,id,cam,role\n", 3, "header lacks column.* path, pid, camid"),
        ("path,pid,camid,role\na.jpg,1,1,query\nb.jpg,x,1,gallery\n", 3, "pid is not an integer: 'x'"),
        ("path,pid,camid,role\na.jpg,1.0,1,query\n", 2, "pid is not an integer: '1.0'"),
        ("path,pid,camid,role\na.jpg,1,,query\n", 2, "camid is not an integer: ''"),
        ("path,pid,camid,role\na.jpg,1,c1,query\n", 2, "camid is not an integer: 'c1'"),
        ("path,pid,camid,role\n\na.jpg,1,1,probe\n", 3, "role must be 'query' or 'gallery', got 'probe'"),
        ("path,pid,camid,role\na.jpg,1,1,Query\n", 2, "got 'Query'"),
        ("path,pid,camid,role\n ,1,1,query\n", 2, "empty path"),
        ("path,pid,camid,role\na.jpg,1,1\n", 2, "expected 4 fields like the header, found 3"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FormatError, match=reason) as caught:
        read_reid_manifest(path)
    assert caught.value.path == path
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}:" if line is not None else f"{path}:")


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read file"):
        read_reid_manifest(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(FormatError, match="not a text file"):
        read_reid_manifest(binary)


def test_check_files_reports_missing_images_by_name(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.jpg").write_bytes(b"")
    rows = "".join(f"images/gone{index}.jpg,{index},1,gallery\n" for index in range(7))
    path = write(tmp_path, f"path,pid,camid,role\nimages/here.jpg,1,1,query\n{rows}")
    assert len(read_reid_manifest(path)) == 8  # not checked by default
    with pytest.raises(
        FormatError, match=r"7 image files missing: images/gone0\.jpg, .*gone4\.jpg and 2 more"
    ) as caught:
        read_reid_manifest(path, check_files=True)
    assert caught.value.line == 3


def test_check_files_passes_when_everything_exists(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    path = write(tmp_path, "path,pid,camid,role\na.jpg,1,1,query\n")
    assert len(read_reid_manifest(path, check_files=True)) == 1


def test_one_missing_image_is_named_in_the_singular(tmp_path: Path) -> None:
    path = write(tmp_path, "path,pid,camid,role\nnope.jpg,1,1,query\n")
    with pytest.raises(FormatError, match=r"^.*:2: 1 image file missing: nope.jpg$"):
        read_reid_manifest(path, check_files=True)


# ------------------------------------------------------------------------------ writing
def test_round_trip_in_the_same_folder_keeps_the_written_paths(tmp_path: Path) -> None:
    text = "path,pid,camid,role\nimages/a.jpg,1,1,query\nimages/b c.jpg,2,3,gallery\n"
    manifest = read_reid_manifest(write(tmp_path, text))
    out = tmp_path / "copy.csv"
    write_reid_manifest(out, manifest)
    assert out.read_text() == text
    again = read_reid_manifest(out)
    np.testing.assert_array_equal(again.paths, manifest.paths)
    np.testing.assert_array_equal(again.files, manifest.files)


def test_writing_elsewhere_rewrites_paths_relative_to_the_new_folder(tmp_path: Path) -> None:
    manifest = ReidManifest.from_columns(["x.jpg"], [5], [2], ["gallery"], root=tmp_path / "data")
    out = tmp_path / "lists" / "m.csv"
    write_reid_manifest(out, manifest)
    assert out.read_text().splitlines()[1] == "../data/x.jpg,5,2,gallery"
    assert read_reid_manifest(out).files.tolist() == [str(tmp_path / "data" / "x.jpg")]


# ------------------------------------------------------------------------------ the type
def test_manifest_checks_its_columns() -> None:
    with pytest.raises(ValueError, match="pids has 1 rows, expected 2"):
        ReidManifest.from_columns(["a", "b"], [1], [1, 1], ["query", "query"])
    with pytest.raises(ValueError, match="roles must be one of"):
        ReidManifest.from_columns(["a"], [1], [1], ["probe"])
    with pytest.raises(ValueError, match="must hold integers"):
        ReidManifest.from_columns(["a"], [1.5], [1], ["query"])


def test_selections_and_indexing() -> None:
    manifest = ReidManifest.from_columns(
        ["q.jpg", "g1.jpg", "g2.jpg"], [1, 1, 2], [1, 2, 2], ["query", "gallery", "gallery"], root="/data"
    )
    assert manifest.query.files.tolist() == ["/data/q.jpg"]
    assert manifest.gallery.paths.tolist() == ["g1.jpg", "g2.jpg"]
    assert manifest[np.array([2, 0])].pids.tolist() == [2, 1]
    assert len(manifest[1:]) == 2
    assert len(ReidManifest.empty()) == 0
