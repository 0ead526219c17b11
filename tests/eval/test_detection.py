"""COCO detection metrics: every number equal to pycocotools' ``COCOeval`` (bbox) to 1e-12."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

from crossview.eval.detection import (
    STAT_KEYS,
    CocoEvalParams,
    CocoEvalResult,
    evaluate_coco,
    evaluate_coco_files,
)
from crossview.io.formats import FormatError
from crossview.io.formats.coco import (
    CocoAnnotations,
    CocoCategory,
    CocoDetections,
    CocoGroundTruth,
    CocoImage,
    read_coco_detections,
    read_coco_ground_truth,
)

TOLERANCE = 1e-12
Json = dict[str, Any]

CATEGORIES = [1, 2, 3, 5, 8, 13]
NO_DETECTIONS_CATEGORY = 8  # has ground truth, never detected
NO_TRUTH_CATEGORY = 13  # detected, never in the ground truth


# ------------------------------------------------------------------------------ helpers
def run_pycocotools(
    gt_path: Path, pred_path: Path, configure: Callable[[Params], None] | None = None
) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(gt_path))
        results = json.loads(pred_path.read_text())
        if results:
            found = truth.loadRes(str(pred_path))
        else:  # loadRes cannot take an empty list (it reads results[0])
            found = COCO()
            found.dataset = {"images": truth.dataset["images"], "categories": truth.dataset["categories"]}
            found.dataset["annotations"] = []
            found.createIndex()
        evaluator = COCOeval(truth, found, "bbox")
        if configure is not None:
            configure(evaluator.params)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def write_case(tmp_path: Path, truth: Json, results: list[Json]) -> tuple[Path, Path]:
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(truth))
    pred_path.write_text(json.dumps(results))
    return gt_path, pred_path


def expected_per_class(evaluator: COCOeval) -> dict[int, float]:
    precision = evaluator.eval["precision"]
    expected = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        expected[int(category)] = float(np.mean(values)) if values.size else -1.0
    return expected


def assert_matches_pycocotools(
    tmp_path: Path,
    truth: Json,
    results: list[Json],
    params: CocoEvalParams | None = None,
    configure: Callable[[Params], None] | None = None,
) -> tuple[CocoEvalResult, COCOeval]:
    gt_path, pred_path = write_case(tmp_path, truth, results)
    reference = run_pycocotools(gt_path, pred_path, configure)
    ours = evaluate_coco_files(gt_path, pred_path, params)
    stats = ours.stats.as_array()
    for key, mine, theirs in zip(STAT_KEYS, stats, reference.stats, strict=True):
        assert abs(mine - theirs) <= TOLERANCE, f"{key}: ours {mine!r}, pycocotools {theirs!r}"
    np.testing.assert_allclose(ours.precision, reference.eval["precision"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours.recall, reference.eval["recall"], rtol=0, atol=TOLERANCE)
    expected = expected_per_class(reference)
    assert set(ours.per_class) == set(expected)
    for category, value in expected.items():
        assert abs(ours.per_class[category] - value) <= TOLERANCE, f"category {category}"
    return ours, reference


def image(image_id: int) -> Json:
    return {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": 640, "height": 480}


def annotation(ann_id: int, image_id: int, category: int, box: list[float], **extra: Any) -> Json:
    record = {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": box}
    record["area"] = extra.pop("area", box[2] * box[3])
    record["iscrowd"] = extra.pop("iscrowd", 0)
    return record | extra


def result(image_id: int, category: int, box: list[float], score: float) -> Json:
    return {"image_id": image_id, "category_id": category, "bbox": box, "score": score}


def categories(ids: list[int]) -> list[Json]:
    return [{"id": category, "name": f"class-{category}", "supercategory": "thing"} for category in ids]


# ------------------------------------------------------------------------------ generated cases
def random_case(seed: int) -> tuple[Json, list[Json]]:
    """A ground truth and results covering every rule of the evaluation.

    Sparse, shuffled image ids; images without ground truth and images without detections;
    a category with ground truth but no detections and one with detections but no ground
    truth; crowds with several detections inside; annotation areas that differ from the box
    (and sit exactly on the 32² and 96² boundaries); identical ground-truth boxes (IoU ties);
    rounded scores (score ties within and across images); an image with more than 100
    detections of one category; duplicated and zero-size boxes; ``ignore`` flags.
    """
    rng = np.random.default_rng(seed)
    image_ids = (rng.permutation(36) * 7 + 3).tolist()
    truth_free, detection_free = set(image_ids[:4]), set(image_ids[4:8])
    crowded = image_ids[8]
    truthful = [category for category in CATEGORIES if category != NO_TRUTH_CATEGORY]
    annotations: list[Json] = []
    results: list[Json] = []

    def score() -> float:
        return float(np.round(rng.random(), int(rng.choice([1, 2, 6]))))

    def jitter(box: list[float], spread: float) -> list[float]:
        x, y, w, h = box
        noise = rng.normal(0.0, spread * max(w, h, 1.0), 4)
        return [
            float(x + noise[0]),
            float(y + noise[1]),
            float(max(0.0, w + noise[2])),
            float(max(0.0, h + noise[3])),
        ]

    for image_id in image_ids:
        boxes: list[tuple[int, list[float], bool]] = []
        if image_id not in truth_free:
            for _ in range(int(rng.integers(1, 14))):
                category = int(rng.choice(truthful))
                size = float(rng.choice([12.0, 32.0, 60.0, 96.0, 180.0]))
                w, h = (float(v) for v in np.round(rng.uniform(0.4, 1.6, 2) * size, int(rng.choice([0, 2]))))
                box = [float(np.round(rng.uniform(0, 500), 1)), float(np.round(rng.uniform(0, 380), 1)), w, h]
                extra: dict[str, Any] = {}
                draw = rng.random()
                if draw < 0.1:
                    extra["iscrowd"] = 1
                    box[2], box[3] = box[2] * 2.5, box[3] * 2.5
                elif draw < 0.2:
                    extra["area"] = float(box[2] * box[3] * rng.uniform(0.4, 0.9))  # a segmentation's area
                elif draw < 0.25:
                    extra["area"] = float(rng.choice([32.0**2, 96.0**2]))
                elif draw < 0.3:
                    extra["ignore"] = 1  # pycocotools replaces it with iscrowd
                annotations.append(annotation(len(annotations) + 1, image_id, category, box, **extra))
                boxes.append((category, box, bool(extra.get("iscrowd"))))
                if rng.random() < 0.08:  # an identical twin: IoU ties between ground truths
                    annotations.append(annotation(len(annotations) + 1, image_id, category, list(box)))
                    boxes.append((category, list(box), False))
            for _ in range(int(rng.integers(0, 3))):
                # two boxes side by side and a detection halfway: equal IoU with both, so which
                # one it takes (the later) decides whether the detection on the first one matches
                category, x, y = (
                    int(rng.choice(truthful)),
                    int(rng.integers(0, 400)),
                    int(rng.integers(0, 300)),
                )
                first, second = [float(x), float(y), 40.0, 40.0], [float(x + 20), float(y), 40.0, 40.0]
                for box in (first, second) if rng.random() < 0.5 else (second, first):
                    annotations.append(annotation(len(annotations) + 1, image_id, category, box))
                if image_id not in detection_free and category != NO_DETECTIONS_CATEGORY:
                    halfway = [float(x + 10), float(y), 40.0, 40.0]
                    results.append(result(image_id, category, halfway, 0.97))
                    results.append(result(image_id, category, first, 0.96))
        if image_id in detection_free:
            continue
        for category, box, crowd in boxes:
            if category == NO_DETECTIONS_CATEGORY:
                continue
            for _ in range(int(rng.integers(0, 5 if crowd else 3))):
                spread = float(rng.choice([0.0, 0.03, 0.08, 0.2]))
                found = jitter(box, spread)
                if rng.random() < 0.2:  # IoU exactly on a threshold: the box cut to a fraction of its height
                    found = [box[0], box[1], box[2], box[3] * float(rng.choice([0.5, 0.55, 0.7, 0.75, 0.95]))]
                if crowd:  # a person inside the crowd region
                    found = [
                        box[0] + rng.uniform(0, box[2] / 2),
                        box[1] + rng.uniform(0, box[3] / 2),
                        box[2] / 3,
                        box[3] / 3,
                    ]
                found_category = category if rng.random() < 0.92 else int(rng.choice(CATEGORIES[:-2]))
                results.append(result(image_id, found_category, [float(v) for v in found], score()))
                if rng.random() < 0.05:  # a duplicate detection with the same score
                    results.append(dict(results[-1]))
        for _ in range(int(rng.integers(0, 6))):
            category = int(rng.choice([c for c in CATEGORIES if c != NO_DETECTIONS_CATEGORY]))
            w, h = (float(v) for v in rng.uniform(0, 250, 2))
            results.append(
                result(
                    image_id,
                    category,
                    [float(rng.uniform(0, 500)), float(rng.uniform(0, 380)), w, h],
                    score(),
                )
            )
        if rng.random() < 0.05:
            results.append(result(image_id, 1, [10.0, 10.0, 0.0, 5.0], score()))  # zero width
    # more than 100 detections of one category in one image: the limits 1/10/100 bite
    crowd_boxes = [a["bbox"] for a in annotations if a["image_id"] == crowded and a["category_id"] == 2]
    for index in range(130):
        base = crowd_boxes[index % len(crowd_boxes)] if crowd_boxes and index % 3 == 0 else None
        box = jitter(base, 0.05) if base else [float(v) for v in rng.uniform(0, 300, 4)]
        results.append(result(crowded, 2, box, float(np.round(rng.random(), 2))))
    order = rng.permutation(len(results))
    truth = {
        "images": [image(image_id) for image_id in image_ids],
        "annotations": annotations,
        "categories": categories(CATEGORIES),
    }
    return truth, [results[i] for i in order]


@pytest.mark.parametrize("seed", range(16))
def test_generated_cases_match_pycocotools(tmp_path: Path, seed: int) -> None:
    truth, results = random_case(seed)
    ours, reference = assert_matches_pycocotools(tmp_path, truth, results)
    # the case really exercises what it claims to
    assert ours.per_class[NO_TRUTH_CATEGORY] == -1.0
    assert ours.per_class[NO_DETECTIONS_CATEGORY] in (0.0, -1.0)
    assert any(a["iscrowd"] for a in truth["annotations"])
    per_image = np.unique([r["image_id"] for r in results], return_counts=True)[1]
    assert per_image.max() > 100
    assert {r["image_id"] for r in results} < {i["id"] for i in truth["images"]}  # images without detections
    assert {a["image_id"] for a in truth["annotations"]} < {i["id"] for i in truth["images"]}
    assert reference.stats[0] > 0


def test_small_blocks_give_the_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crossview.eval.detection as detection

    monkeypatch.setattr(detection, "_CHUNK_DETECTIONS", 7)  # many blocks, some a single category
    monkeypatch.setattr(detection, "_CHUNK_PAIRS", 5)
    truth, results = random_case(42)
    assert_matches_pycocotools(tmp_path, truth, results)


@pytest.mark.parametrize("seed", range(4))
def test_generated_cases_match_with_custom_params(tmp_path: Path, seed: int) -> None:
    """Other limits, IoU and recall thresholds, and a subset of images and categories."""
    truth, results = random_case(100 + seed)
    image_ids = sorted(image["id"] for image in truth["images"])[::2]
    category_ids = [1, 2, 5, NO_TRUTH_CATEGORY]
    ious = [0.3, 0.5, 0.75, 0.9]
    recalls = np.linspace(0.0, 1.0, 21)
    params = CocoEvalParams(
        iou_thresholds=tuple(ious),
        recall_thresholds=tuple(recalls.tolist()),
        max_detections=(1, 5, 20),
        image_ids=tuple(image_ids),
        category_ids=tuple(category_ids),
    )

    def configure(p: Params) -> None:
        p.iouThrs = np.array(ious)
        p.recThrs = recalls
        p.maxDets = [1, 5, 20]
        p.imgIds = image_ids
        p.catIds = category_ids

    gt_path, pred_path = write_case(tmp_path, truth, results)
    reference = run_pycocotools(gt_path, pred_path, configure)
    ours = evaluate_coco_files(gt_path, pred_path, params)
    np.testing.assert_allclose(ours.precision, reference.eval["precision"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours.recall, reference.eval["recall"], rtol=0, atol=TOLERANCE)
    # pycocotools' AP looks up maxDets == 100 literally (-1 here); ours uses the largest limit
    assert reference.stats[0] == -1
    precision = reference.eval["precision"][:, :, :, 0, 2]
    assert abs(ours.stats.ap - np.mean(precision[precision > -1])) <= TOLERANCE
    np.testing.assert_allclose(ours.stats.as_array()[1:], reference.stats[1:], rtol=0, atol=TOLERANCE)


def test_real_boxes_from_mot17_match_pycocotools(tmp_path: Path, shared: Path) -> None:
    """Real pedestrian boxes and a simulated detector's output, as one COCO image per frame."""
    sequence = shared / "data" / "mot17" / "MOT17-09"
    gt = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",")
    det = np.loadtxt(sequence / "det" / "det.txt", delimiter=",")
    frames = range(1, 151)
    gt = gt[(gt[:, 0] <= frames[-1]) & np.isin(gt[:, 7], [1, 2, 7, 8, 12])]
    det = det[det[:, 0] <= frames[-1]]
    # pedestrians are objects; distractors (static people, riders, reflections) are crowds
    crowd = (gt[:, 7] != 1) | (gt[:, 6] == 0)
    truth = {
        "images": [image(frame) for frame in frames],
        "annotations": [
            annotation(i + 1, int(row[0]), 1, row[2:6].tolist(), iscrowd=int(is_crowd))
            for i, (row, is_crowd) in enumerate(zip(gt, crowd, strict=True))
        ],
        "categories": categories([1]),
    }
    results = [result(int(row[0]), 1, row[2:6].tolist(), float(row[6])) for row in det]
    ours, _ = assert_matches_pycocotools(tmp_path, truth, results)
    assert 0.2 < ours.stats.ap50 <= 1


# ------------------------------------------------------------------------------ handcrafted cases
def test_perfect_detections_score_one(tmp_path: Path) -> None:
    boxes = [[10.0, 10.0, 20.0, 20.0], [100.0, 100.0, 50.0, 60.0], [200.0, 50.0, 150.0, 120.0]]
    truth = {
        "images": [image(1), image(2)],
        "annotations": [annotation(i + 1, 1 + i % 2, 1, box) for i, box in enumerate(boxes)],
        "categories": categories([1, 2]),
    }
    results = [result(1 + i % 2, 1, box, 0.9) for i, box in enumerate(boxes)]
    ours, _ = assert_matches_pycocotools(tmp_path, truth, results)
    expected = dict.fromkeys(STAT_KEYS, 1.0) | {"AR1": 2 / 3}  # image 1 has two objects
    assert ours.to_dict() == pytest.approx(expected, abs=1e-12)
    assert ours.per_class == pytest.approx({1: 1.0, 2: -1.0}, abs=1e-12)
    assert ours.category_names == {1: "class-1", 2: "class-2"}


def test_empty_results(tmp_path: Path) -> None:
    truth = {
        "images": [image(1), image(2)],
        "annotations": [
            annotation(1, 1, 1, [0.0, 0.0, 20.0, 20.0]),
            annotation(2, 2, 1, [0.0, 0.0, 200.0, 200.0]),
        ],
        "categories": categories([1, 2]),
    }
    ours, _ = assert_matches_pycocotools(tmp_path, truth, [])
    assert ours.stats.ap == 0.0 and ours.stats.ap_medium == -1.0 and ours.stats.ar100 == 0.0


def test_no_ground_truth_leaves_everything_undefined(tmp_path: Path) -> None:
    truth = {"images": [image(1)], "annotations": [], "categories": categories([1])}
    ours, _ = assert_matches_pycocotools(tmp_path, truth, [result(1, 1, [0.0, 0.0, 5.0, 5.0], 0.5)])
    assert set(ours.to_dict().values()) == {-1.0}


def test_crowd_absorbs_any_number_of_detections(tmp_path: Path) -> None:
    truth = {
        "images": [image(1)],
        "annotations": [
            annotation(1, 1, 1, [0.0, 0.0, 300.0, 300.0], iscrowd=1),
            annotation(2, 1, 1, [400.0, 400.0, 40.0, 80.0]),
        ],
        "categories": categories([1]),
    }
    inside = [result(1, 1, [10.0 + 40 * i, 20.0, 30.0, 60.0], 0.9 - 0.01 * i) for i in range(6)]
    results = [*inside, result(1, 1, [401.0, 401.0, 40.0, 80.0], 0.5)]
    ours, _ = assert_matches_pycocotools(tmp_path, truth, results)
    assert ours.stats.ap50 == pytest.approx(1.0, abs=1e-12)  # the six inside the crowd are neither TP nor FP


def test_score_ties_break_by_image_id(tmp_path: Path) -> None:
    """Equal scores across images rank in image-id order: a miss first lowers precision."""
    aps = []
    for miss_image in (1, 2):
        truth = {
            "images": [image(2), image(1)],
            "annotations": [
                annotation(1, 1, 1, [0.0, 0.0, 50.0, 50.0]),
                annotation(2, 2, 1, [0.0, 0.0, 50.0, 50.0]),
            ],
            "categories": categories([1]),
        }
        hit_image = 3 - miss_image
        results = [
            result(miss_image, 1, [300.0, 300.0, 50.0, 50.0], 0.5),
            result(hit_image, 1, [0.0, 0.0, 50.0, 50.0], 0.5),
        ]
        case = tmp_path / f"miss{miss_image}"
        case.mkdir()
        ours, _ = assert_matches_pycocotools(case, truth, results)
        aps.append(ours.stats.ap)
    assert aps[0] < aps[1]


def test_max_detections_cut_lower_ranked_hits(tmp_path: Path) -> None:
    truth = {
        "images": [image(1)],
        "annotations": [annotation(1, 1, 1, [0.0, 0.0, 50.0, 50.0])],
        "categories": categories([1]),
    }
    misses = [result(1, 1, [500.0, 400.0, 5.0 + i % 7, 5.0], 0.9) for i in range(100)]
    ours, _ = assert_matches_pycocotools(
        tmp_path, truth, [*misses, result(1, 1, [0.0, 0.0, 50.0, 50.0], 0.8)]
    )
    assert ours.stats.ap == 0.0 and ours.stats.ar100 == 0.0


def test_ignore_flag_is_pycocotools_compatible_by_default_and_honoured_on_request(tmp_path: Path) -> None:
    truth = {
        "images": [image(1)],
        "annotations": [
            annotation(1, 1, 1, [0.0, 0.0, 50.0, 50.0]),
            annotation(2, 1, 1, [100.0, 100.0, 50.0, 50.0], ignore=1),
        ],
        "categories": categories([1]),
    }
    results = [result(1, 1, [0.0, 0.0, 50.0, 50.0], 0.9), result(1, 1, [100.0, 100.0, 50.0, 50.0], 0.8)]
    plain, _ = assert_matches_pycocotools(
        tmp_path, truth, results
    )  # pycocotools overwrites ignore with iscrowd
    assert (plain.stats.ap, plain.stats.ar1) == pytest.approx((1.0, 0.5), abs=1e-12)
    params = CocoEvalParams(use_ignore_flag=True)
    honoured = evaluate_coco_files(tmp_path / "gt.json", tmp_path / "pred.json", params)
    # one object to find, and the match on the ignored box counts neither way
    assert (honoured.stats.ap, honoured.stats.ar1) == pytest.approx((1.0, 1.0), abs=1e-12)


def test_iou_ties_go_to_the_later_ground_truth(tmp_path: Path) -> None:
    truth = {
        "images": [image(1)],
        "annotations": [
            annotation(1, 1, 1, [0.0, 0.0, 40.0, 40.0]),
            annotation(2, 1, 1, [20.0, 0.0, 40.0, 40.0]),
        ],
        "categories": categories([1]),
    }
    # the first detection has IoU 0.6 with both and takes box 2, leaving box 1 for the second
    results = [result(1, 1, [10.0, 0.0, 40.0, 40.0], 0.9), result(1, 1, [0.0, 0.0, 40.0, 40.0], 0.8)]
    ours, _ = assert_matches_pycocotools(tmp_path, truth, results)
    assert ours.stats.ap50 == pytest.approx(1.0, abs=1e-12)


def test_iou_equal_to_the_threshold_matches(tmp_path: Path) -> None:
    truth = {
        "images": [image(1)],
        "annotations": [annotation(1, 1, 1, [0.0, 0.0, 40.0, 40.0])],
        "categories": categories([1]),
    }
    ours, _ = assert_matches_pycocotools(
        tmp_path, truth, [result(1, 1, [0.0, 0.0, 40.0, 30.0], 0.9)]
    )  # IoU 0.75
    assert ours.precision[:6, 0, 0, 0, 2].tolist() == pytest.approx([1.0] * 6, abs=1e-12)
    assert ours.precision[6:, 0, 0, 0, 2].tolist() == [0.0] * 4


def test_match_to_annotation_id_zero_is_kept() -> None:
    """pycocotools stores matches by ground-truth id, so it loses a match to id 0; we do not."""
    truth = CocoGroundTruth(
        images=(CocoImage(1),),
        categories=(CocoCategory(1),),
        annotations=CocoAnnotations.from_columns([[0, 0, 40, 40]], image_id=[1], category_id=[1], id=[0]),
    )
    found = CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 40, 40]], score=[0.7])
    assert evaluate_coco(truth, found).stats.ap == pytest.approx(1.0, abs=1e-12)


def test_iou_thresholds_without_050_leave_ap50_undefined() -> None:
    truth = CocoGroundTruth(
        images=(CocoImage(1),),
        categories=(CocoCategory(1),),
        annotations=CocoAnnotations.from_columns([[0, 0, 40, 40]], image_id=[1], category_id=[1]),
    )
    found = CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 40, 40]], score=[0.7])
    stats = evaluate_coco(truth, found, CocoEvalParams(iou_thresholds=(0.6, 0.7))).stats
    assert (stats.ap, stats.ap50, stats.ap75) == pytest.approx((1.0, -1.0, -1.0), abs=1e-12)


def test_in_memory_tables_equal_files(tmp_path: Path) -> None:
    truth, results = random_case(7)
    gt_path, pred_path = write_case(tmp_path, truth, results)
    ground_truth = read_coco_ground_truth(gt_path)
    from_files = evaluate_coco_files(gt_path, pred_path)
    in_memory = evaluate_coco(ground_truth, read_coco_detections(pred_path, ground_truth))
    assert from_files.to_dict() == in_memory.to_dict()
    assert list(from_files.to_dict()) == list(STAT_KEYS)
    assert from_files.precision.shape == (10, 101, len(CATEGORIES), 4, 3)
    assert from_files.recall.shape == (10, len(CATEGORIES), 4, 3)
    assert from_files.category_ids == tuple(CATEGORIES)


def test_detections_must_name_known_images_and_categories() -> None:
    truth = CocoGroundTruth(images=(CocoImage(1),), categories=(CocoCategory(1),))
    with pytest.raises(ValueError, match=r"image ids .* \[9\]"):
        evaluate_coco(truth, CocoDetections(image_id=[9], category_id=[1], bbox=[[0, 0, 1, 1]], score=[1]))
    with pytest.raises(ValueError, match=r"category ids .* \[4\]"):
        evaluate_coco(truth, CocoDetections(image_id=[1], category_id=[4], bbox=[[0, 0, 1, 1]], score=[1]))


def test_bad_files_raise_format_error_naming_the_file(tmp_path: Path) -> None:
    gt_path, pred_path = write_case(tmp_path, {"images": [image(1)], "annotations": [], "categories": []}, [])
    pred_path.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]')
    with pytest.raises(FormatError, match=r"pred\.json: results\[0\]: category_id 1 is not a category"):
        evaluate_coco_files(gt_path, pred_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_detections": (1, 10)}, "three positive integers"),
        ({"max_detections": (0, 10, 100)}, "three positive integers"),
        ({"recall_thresholds": (0.5, 0.1)}, "ascending"),
        ({"iou_thresholds": ()}, "non-empty"),
        ({"iou_thresholds": (0.5, 1.5)}, r"\[0, 1\]"),
        ({"area_ranges": ((0, 1), (0, 1), (5, 1), (0, 1))}, "four"),
    ],
)
def test_params_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CocoEvalParams(**changes)


def test_params_sort_max_detections() -> None:
    assert CocoEvalParams(max_detections=(100, 1, 10)).max_detections == (1, 10, 100)
