"""``crossview index build`` and ``crossview search`` on a synthetic scene, both backends, real engines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossview.io.sources import VideoFileSource
from crossview.search.index import Entry
from crossview.search.store import open_gallery
from tests.test_cli import crossview


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    made = crossview("sample", "video", str(root), "--frames", "150", "--people", "4", "--seed", "3")
    assert made.returncode == 0, made.stderr
    return root


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_build_then_search_by_track_and_image(scene: Path, tmp_path: Path, backend: str) -> None:
    index = tmp_path / "gallery"
    run = crossview("index", "build", str(scene / "SIM-01.mp4"), "--index", str(index), "--backend", backend)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "hits.json"
    run = crossview("search", "--index", str(index), "--track", "0", "-k", "2", "--json", str(out))
    assert run.returncode == 0, run.stderr
    hits = json.loads(out.read_text())["hits"]
    assert len(hits) == 2 and all(hit["id"] != 0 for hit in hits)  # a track is not its own result
    assert hits[0]["distance"] <= hits[1]["distance"]
    assert all(hit["camera_id"] == "SIM-01" for hit in hits)

    # An image query: a crop of the best view of the first hit, cut from the video it came from.
    target = hits[0]
    _, frame_index, box = target["crop"].split("/")
    x1, y1, x2, y2 = (int(v) for v in box.split(","))
    with VideoFileSource(scene / "SIM-01.mp4", start=int(frame_index), max_frames=1) as source:
        image = next(iter(source)).image
    query = tmp_path / "query.png"
    cv2.imwrite(str(query), image[y1:y2, x1:x2])
    run = crossview("search", "--index", str(index), "--image", str(query), "-k", "3", "--json", str(out))
    assert run.returncode == 0, run.stderr
    found = json.loads(out.read_text())["hits"]
    # The crop is one view; the entry is the mean of all the track's views (and motion tracking may
    # split a person into two tracks), so its own track is among the first few, very close.
    assert target["id"] in [hit["id"] for hit in found]
    assert found[0]["appearance"] < 0.15

    with open_gallery(index) as gallery:  # last: Milvus Lite allows one process per file
        count = gallery.count()
        _, entries = gallery.get(np.arange(count))
    assert count >= 3 and all(e is not None and e.camera_id == "SIM-01" for e in entries)


def test_search_errors_are_clear(scene: Path, tmp_path: Path) -> None:
    run = crossview("search", "--index", str(tmp_path / "none"), "--track", "1")
    assert run.returncode == 2 and "not a crossview gallery" in run.stderr
    index = tmp_path / "gallery"
    assert crossview("index", "build", str(scene / "SIM-01.mp4"), "--index", str(index)).returncode == 0
    run = crossview("search", "--index", str(index), "--track", "9999")
    assert run.returncode == 2 and "9999" in run.stderr
    run = crossview("search", "--index", str(index))
    assert run.returncode == 2 and "--image" in run.stderr
    not_image = tmp_path / "x.png"
    not_image.write_text("no")
    run = crossview("search", "--index", str(index), "--image", str(not_image))
    assert run.returncode == 2 and "not a readable image" in run.stderr


def stored(index: Path, bound: int = 1000) -> dict[int, Entry]:
    """Every entry of a small gallery (ids under ``bound``), by id."""
    with open_gallery(index) as gallery:
        _, entries = gallery.get(np.arange(bound))
        found = {i: entry for i, entry in enumerate(entries) if entry is not None}
        assert len(found) == gallery.count()
    return found


def test_two_sources_of_one_object_share_its_global_id(scene: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.mp4"  # a second camera that sees exactly what SIM-01 sees
    shutil.copy(scene / "SIM-01.mp4", twin)
    index = tmp_path / "gallery"
    run = crossview("index", "build", str(scene / "SIM-01.mp4"), str(twin), "--index", str(index))
    assert run.returncode == 0, run.stderr
    by_camera: dict[str, dict[int, Entry]] = {"SIM-01": {}, "twin": {}}
    for entry in stored(index).values():
        by_camera[entry.camera_id][entry.track_id] = entry
    first, second = by_camera["SIM-01"], by_camera["twin"]
    assert len(first) >= 3 and first.keys() == second.keys()  # each camera tracked on its own, alike
    # Every object first seen in SIM-01 is, at the same moment, first seen in its twin: one identity.
    # (An object that comes back is joined to its identity by one of the two cameras' new tracks
    # at least; the associator matches each identity to one new track per pass.)
    founders: dict[int, int] = {}
    for track_id in sorted(first, key=lambda t: (first[t].t_start, t)):
        founders.setdefault(first[track_id].global_id, track_id)
    founders.pop(-1, None)
    assert len(founders) >= 2
    for global_id, track_id in founders.items():
        assert second[track_id].global_id == global_id, (track_id, global_id)


def test_a_second_build_appends_with_new_ids_and_new_identities(scene: Path, tmp_path: Path) -> None:
    index = tmp_path / "gallery"
    assert crossview("index", "build", str(scene / "SIM-01.mp4"), "--index", str(index)).returncode == 0
    before = stored(index)
    lowest = min(before)
    with open_gallery(index) as gallery:  # a deleted entry: fewer entries than the largest id + 1
        assert gallery.delete([lowest]) == 1
    del before[lowest]
    identities = {entry.global_id for entry in before.values()} - {-1}
    assert identities

    run = crossview("index", "build", str(scene / "SIM-01.mp4"), "--index", str(index))
    assert run.returncode == 0, run.stderr
    after = stored(index)
    assert {i: after[i] for i in before} == before  # nothing of the first build was overwritten
    added = [entry for i, entry in after.items() if i not in before]
    assert len(added) == len(before) + 1 and min(i for i in after if i not in before) > max(before)
    new_identities = {entry.global_id for entry in added} - {-1}
    assert new_identities and min(new_identities) > max(identities)  # the same object, a new build


def test_two_sources_with_one_camera_id_are_refused(scene: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(scene / "SIM-01.mp4", tmp_path / name / "SIM-01.mp4")
    index = tmp_path / "gallery"
    first, second = str(tmp_path / "a" / "SIM-01.mp4"), str(tmp_path / "b" / "SIM-01.mp4")
    run = crossview("index", "build", first, second, "--index", str(index))
    assert run.returncode == 2
    message = " ".join(run.stderr.split())  # rich may wrap long lines
    assert "'SIM-01'" in message and first in message and second in message
    assert not index.exists()  # refused before anything was written
