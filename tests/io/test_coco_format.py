from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO

from crossview import Detections
from crossview.io.formats import FormatError
from crossview.io.formats.coco import (
    CocoAnnotations,
    CocoCategory,
    CocoDetections,
    CocoGroundTruth,
    CocoImage,
    annotations_to_detections,
    coco_to_detections,
    detections_to_coco,
    ground_truth_from_detections,
    read_coco_detections,
    read_coco_ground_truth,
    write_coco_detections,
    write_coco_ground_truth,
)

Json = dict[str, Any]


def ground_truth_document() -> Json:
    return {
        "info": {"description": "kept out"},
        "images": [
            {"id": 4, "file_name": "a.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "b.jpg", "width": 320, "height": 240},
        ],
        "annotations": [
            {"id": 10, "image_id": 4, "category_id": 1, "bbox": [1, 2, 30, 40], "area": 900.5, "iscrowd": 0},
            {
                "id": 11,
                "image_id": 4,
                "category_id": 3,
                "bbox": [5.5, 6, 7, 8],
                "iscrowd": 1,
                "segmentation": {},
            },
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 0, 10], "ignore": 1},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "human"}, {"id": 3, "name": "car"}],
    }


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_reads_ground_truth_with_defaults(tmp_path: Path) -> None:
    truth = read_coco_ground_truth(write(tmp_path / "gt.json", ground_truth_document()))
    assert truth.images == (CocoImage(4, "a.jpg", 640, 480), CocoImage(2, "b.jpg", 320, 240))
    assert truth.categories == (CocoCategory(1, "person", "human"), CocoCategory(3, "car", ""))
    rows = truth.annotations
    assert rows.id.tolist() == [10, 11, 12] and rows.image_id.tolist() == [4, 4, 2]
    assert rows.category_id.tolist() == [1, 3, 1]
    np.testing.assert_array_equal(rows.bbox, [[1, 2, 30, 40], [5.5, 6, 7, 8], [0, 0, 0, 10]])
    assert rows.area.tolist() == [900.5, 56.0, 0.0]  # missing area is width * height
    assert rows.iscrowd.tolist() == [False, True, False]
    assert rows.ignore.tolist() == [False, False, True]
    assert truth.image_ids.tolist() == [4, 2] and truth.category_names == {1: "person", 3: "car"}


def test_ground_truth_round_trip_and_pycocotools_loads_it(tmp_path: Path) -> None:
    truth = read_coco_ground_truth(write(tmp_path / "gt.json", ground_truth_document()))
    write_coco_ground_truth(tmp_path / "out" / "gt.json", truth)
    back = read_coco_ground_truth(tmp_path / "out" / "gt.json")
    assert back.images == truth.images and back.categories == truth.categories
    for name in ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore"):
        np.testing.assert_array_equal(getattr(back.annotations, name), getattr(truth.annotations, name))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "out" / "gt.json"))
    assert sorted(coco.getImgIds()) == [2, 4] and sorted(coco.getCatIds()) == [1, 3]
    assert coco.anns[11]["iscrowd"] == 1 and coco.anns[12]["ignore"] == 1 and coco.anns[10]["area"] == 900.5


def test_detections_round_trip_exactly_and_pycocotools_loads_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    results = CocoDetections(
        image_id=rng.choice([2, 4], 50),
        category_id=rng.choice([1, 3], 50),
        bbox=rng.uniform(0, 300, (50, 4)),
        score=rng.random(50),
    )
    write_coco_detections(tmp_path / "pred.json", results)
    truth = read_coco_ground_truth(write(tmp_path / "gt.json", ground_truth_document()))
    back = read_coco_detections(tmp_path / "pred.json", truth)
    for name in ("image_id", "category_id", "bbox", "score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(results, name))
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = COCO(str(tmp_path / "gt.json")).loadRes(str(tmp_path / "pred.json"))
    assert len(loaded.anns) == 50
    assert loaded.anns[1]["bbox"] == results.bbox[0].tolist() and loaded.anns[1]["score"] == results.score[0]


def test_empty_results_and_extra_keys(tmp_path: Path) -> None:
    assert len(read_coco_detections(write(tmp_path / "empty.json", []))) == 0
    write_coco_detections(tmp_path / "none.json", CocoDetections.empty())
    assert json.loads((tmp_path / "none.json").read_text()) == []
    extra = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1, "segmentation": [], "id": 7}]
    assert read_coco_detections(write(tmp_path / "extra.json", extra)).score.tolist() == [1.0]


RESULT = {"image_id": 4, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[{"image_id": 4, "category_id": 1,\n "bbox": [1, 2, 3, 4] "score": 0.5}]',
            r"pred\.json:2: not valid JSON",
        ),
        ("", "empty file"),
        (
            '{"annotations": []}',
            r"expected a list of results, got an object \(this looks like a ground-truth file\)",
        ),
        ("[3]", r"results\[0\] must be an object, got a number"),
        (
            json.dumps([RESULT, {**RESULT, "bbox": [1, 2, 3]}]),
            r"results\[1\]: bbox must be a list of 4 numbers",
        ),
        (json.dumps([{**RESULT, "bbox": [1, 2, "3", 4]}]), r"results\[0\]: bbox must be a list of 4 numbers"),
        (json.dumps([{**RESULT, "bbox": [1, 2, -3, 4]}]), r"results\[0\]: bbox width is negative"),
        (json.dumps([{**RESULT, "bbox": [1, 2, 3, -4]}]), r"results\[0\]: bbox height is negative"),
        (
            '[{"image_id": 4, "category_id": 1, "bbox": [1, 2, 3, Infinity], "score": 1}]',
            "bbox has a non-finite",
        ),
        (
            '[{"image_id": 4, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]',
            "score must be a finite number, got nan",
        ),
        (json.dumps([{**RESULT, "score": "high"}]), "score must be a finite number, got 'high'"),
        (
            json.dumps([RESULT, {k: v for k, v in RESULT.items() if k != "score"}]),
            r"results\[1\]: missing key 'score'",
        ),
        (
            json.dumps([{**RESULT, "image_id": 9}]),
            r"results\[0\]: image_id 9 is not an image in the ground truth",
        ),
        (json.dumps([{**RESULT, "image_id": "4"}]), "image_id must be an integer, got '4'"),
        (
            json.dumps([{**RESULT, "category_id": 2}]),
            r"results\[0\]: category_id 2 is not a category in the ground truth",
        ),
        (json.dumps([{**RESULT, "category_id": 1.5}]), "category_id must be an integer, got 1.5"),
    ],
)
def test_bad_results_name_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    truth = read_coco_ground_truth(write(tmp_path / "gt.json", ground_truth_document()))
    (tmp_path / "pred.json").write_text(text)
    with pytest.raises(FormatError, match=problem) as caught:
        read_coco_detections(tmp_path / "pred.json", truth)
    assert caught.value.path == tmp_path / "pred.json"
    assert str(caught.value).startswith(str(tmp_path / "pred.json"))


def change(document: Json, section: str, index: int, **values: Any) -> Json:
    document[section][index] = {k: v for k, v in document[section][index].items() if k not in values}
    document[section][index].update({k: v for k, v in values.items() if v is not ...})
    return document


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: [d], "expected an object with images, annotations and categories, got a list"),
        (lambda d: {k: v for k, v in d.items() if k != "annotations"}, "missing key 'annotations'"),
        (lambda d: {"info": {}}, "missing keys 'images', 'annotations', 'categories'"),
        (lambda d: d | {"images": {}}, "images must be a list, got an object"),
        (
            lambda d: change(d, "annotations", 1, bbox=[1, 2, 3]),
            r"annotations\[1\] \(id 11\): bbox must be a list of 4",
        ),
        (
            lambda d: change(d, "annotations", 0, bbox=[1, 2, -3, 4]),
            r"annotations\[0\] \(id 10\): bbox width is negative",
        ),
        (
            lambda d: change(d, "annotations", 2, image_id=7),
            r"annotations\[2\] \(id 12\): image_id 7 is not an image",
        ),
        (
            lambda d: change(d, "annotations", 0, category_id=2),
            "category_id 2 is not a category in categories",
        ),
        (
            lambda d: change(d, "annotations", 2, id=10),
            r"annotations\[2\] \(id 10\): duplicate annotation id 10",
        ),
        (lambda d: change(d, "annotations", 0, id=...), r"annotations\[0\]: missing key 'id'"),
        (lambda d: change(d, "annotations", 0, iscrowd=2), "iscrowd must be 0 or 1, got 2"),
        (lambda d: change(d, "annotations", 0, area=-1), "area must be >= 0"),
        (lambda d: change(d, "annotations", 0, area="big"), "area must be a finite number"),
        (
            lambda d: change(d, "images", 1, id=4),
            r"images\[1\] \(id 4\): duplicate image id 4 \(also images\[0\]\)",
        ),
        (lambda d: change(d, "images", 0, file_name=3), "file_name must be a string"),
        (lambda d: change(d, "categories", 1, id=True), "id must be an integer, got True"),
    ],
)
def test_bad_ground_truth_names_the_file_and_the_problem(tmp_path: Path, edit: Any, problem: str) -> None:
    path = write(tmp_path / "gt.json", edit(ground_truth_document()))
    with pytest.raises(FormatError, match=problem) as caught:
        read_coco_ground_truth(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read file"):
        read_coco_ground_truth(tmp_path / "missing.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FormatError, match="not a text file"):
        read_coco_detections(tmp_path / "binary.json")


def test_tables_check_their_columns() -> None:
    with pytest.raises(ValueError, match=r"bbox must have shape \(N, 4\)"):
        CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 1]], score=[1.0])
    with pytest.raises(ValueError, match="score must have shape"):
        CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 1, 1]], score=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 1, 1]], score=[np.nan])
    with pytest.raises(ValueError, match="negative width or height"):
        CocoAnnotations.from_columns([[0, 0, -1, 1]], image_id=[1], category_id=[1])
    with pytest.raises(ValueError, match="whole numbers"):
        CocoAnnotations.from_columns([[0, 0, 1, 1]], image_id=[1.5], category_id=[1])
    rows = CocoAnnotations.from_columns([[0, 0, 1, 1]], image_id=[1], category_id=[5])
    with pytest.raises(ValueError, match=r"unknown category ids \[5\]"):
        CocoGroundTruth(images=(CocoImage(1),), categories=(CocoCategory(1),), annotations=rows)
    with pytest.raises(ValueError, match="duplicate image id 1"):
        CocoGroundTruth(images=(CocoImage(1), CocoImage(1)), categories=())


def test_tables_select_and_concatenate() -> None:
    results = CocoDetections(
        image_id=[1, 2, 1], category_id=[3, 3, 4], bbox=np.ones((3, 4)), score=[0.1, 0.2, 0.3]
    )
    assert results[results.image_id == 1].score.tolist() == [0.1, 0.3]
    both = CocoDetections.concatenate([results, results[np.array([2])]])
    assert both.image_id.tolist() == [1, 2, 1, 1] and len(CocoDetections.concatenate([])) == 0
    assert len(CocoAnnotations.empty()) == 0 and CocoAnnotations.empty().bbox.shape == (0, 4)


def test_detections_converters_round_trip() -> None:
    detections = Detections(
        xyxy=[[10, 20, 40, 80], [0, 0, 5, 5]], confidence=[0.9, 0.25], class_id=[3, 1], frame_index=7
    )
    results = detections_to_coco(detections, image_id=42)
    assert results.image_id.tolist() == [42, 42] and results.category_id.tolist() == [3, 1]
    np.testing.assert_array_equal(results.bbox, [[10, 20, 30, 60], [0, 0, 5, 5]])
    assert results.score.tolist() == pytest.approx([0.9, 0.25])
    other = detections_to_coco(Detections(xyxy=[[1, 1, 2, 2]]), image_id=5)
    back = coco_to_detections(CocoDetections.concatenate([results, other]), image_id=42, camera_id="gate")
    np.testing.assert_array_equal(back.xyxy, detections.xyxy)
    np.testing.assert_array_equal(back.class_id, detections.class_id)
    np.testing.assert_array_equal(back.confidence, detections.confidence)
    assert back.camera_id == "gate" and len(coco_to_detections(results, image_id=5)) == 0
    assert len(detections_to_coco(Detections.empty(), image_id=1)) == 0


def test_ground_truth_converters(tmp_path: Path) -> None:
    truth = read_coco_ground_truth(write(tmp_path / "gt.json", ground_truth_document()))
    boxes = annotations_to_detections(truth, image_id=4)
    np.testing.assert_array_equal(boxes.xyxy, [[1, 2, 31, 42], [5.5, 6, 12.5, 14]])
    assert boxes.class_id.tolist() == [1, 3] and boxes.confidence.tolist() == [1.0, 1.0]
    assert boxes.data["annotation_id"].tolist() == [10, 11] and boxes.data["iscrowd"].tolist() == [
        False,
        True,
    ]
    assert boxes.data["area"].tolist() == [900.5, 56.0]

    per_image = {image.id: annotations_to_detections(truth, image.id) for image in truth.images}
    rebuilt = ground_truth_from_detections(per_image, truth.categories, images=truth.images)
    assert rebuilt.images == truth.images and rebuilt.categories == truth.categories
    order = np.argsort(truth.annotations.image_id, kind="stable")
    np.testing.assert_array_equal(rebuilt.annotations.bbox, truth.annotations.bbox[order])
    np.testing.assert_array_equal(rebuilt.annotations.area, truth.annotations.area[order])
    np.testing.assert_array_equal(rebuilt.annotations.iscrowd, truth.annotations.iscrowd[order])
    np.testing.assert_array_equal(rebuilt.annotations.ignore, truth.annotations.ignore[order])
    assert rebuilt.annotations.id.tolist() == [1, 2, 3]

    plain = ground_truth_from_detections(
        {9: Detections(xyxy=[[0, 0, 4, 5]], class_id=[1])}, [CocoCategory(1, "a")]
    )
    assert plain.images == (CocoImage(9),) and plain.annotations.area.tolist() == [20.0]
    assert len(ground_truth_from_detections({}, []).annotations) == 0
