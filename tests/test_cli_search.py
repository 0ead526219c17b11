"""``crossview index build`` and ``crossview search`` on a synthetic scene, both backends, real engines."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossview.io.sources import VideoFileSource
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
