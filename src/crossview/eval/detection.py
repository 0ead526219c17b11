"""COCO bounding-box detection metrics, numerically equal to pycocotools' ``COCOeval``.

The semantics are pycocotools' (``iouType="bbox"``), step for step:

- IoU thresholds ``0.50:0.05:0.95`` and 101 recall points ``0:0.01:1`` by default; the
  precision at a recall point is the interpolated (monotone from the right) precision at the
  first detection reaching that recall, 0 if never reached.
- Matching is per image and category. Detections are taken highest score first (a stable
  sort, so ties keep file order) and only the best ``max_detections[-1]`` per image and
  category are kept. Each detection takes the unmatched ground truth with the highest IoU at
  or above the threshold (the later one on a tie), preferring not-ignored ground truths;
  crowd ground truths (IoU = intersection over the *detection's* area) may be matched any
  number of times. Detections matched to an ignored ground truth count neither way.
- A ground truth is ignored if it is a crowd, or its annotation ``area`` lies outside the
  area range (bounds inclusive). A detection outside the area range is ignored when
  unmatched. Area ranges are all ``[0, 1e10]``, small ``[0, 32²]``, medium ``[32², 96²]``,
  large ``[96², 1e10]``.
- Detections of all images are ranked per category by score (stable, ties in image-id order),
  precision is -1 where a category has no not-ignored ground truth, and every summary is the
  mean over the entries that are not -1 (-1 when there are none).

Three deliberate differences, none of which shows on COCO-style data:
pycocotools overwrites each annotation's ``ignore`` flag with ``iscrowd``; so does this module
unless ``CocoEvalParams(use_ignore_flag=True)``. pycocotools records a match by the ground
truth's id, so a match to an annotation with id 0 is lost; here it is kept. pycocotools' AP
looks up ``max_detections == 100`` literally (-1 if absent); here it uses the largest.

The matching loop runs over detection ranks (at most ``max_detections[-1]`` steps), each
step vectorised over every image, category, area range and IoU threshold at once.

>>> from crossview.io.formats import coco
>>> truth = coco.CocoGroundTruth(
...     images=(coco.CocoImage(1),),
...     categories=(coco.CocoCategory(1, "car"),),
...     annotations=coco.CocoAnnotations.from_columns([[0, 0, 50, 50]], image_id=[1], category_id=[1]),
... )
>>> found = coco.CocoDetections(image_id=[1], category_id=[1], bbox=[[0, 0, 50, 50]], score=[0.9])
>>> round(evaluate_coco(truth, found).to_dict()["AP50"], 6)  # tp / (tp + fp + eps), as pycocotools
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crossview.io.formats.coco import (
    CocoDetections,
    CocoGroundTruth,
    read_coco_detections,
    read_coco_ground_truth,
)

AreaRange = tuple[float, float]

# np.linspace exactly as pycocotools builds them, so thresholds compare bit for bit.
DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
DEFAULT_RECALL_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
DEFAULT_MAX_DETECTIONS: tuple[int, int, int] = (1, 10, 100)
DEFAULT_AREA_RANGES: tuple[AreaRange, AreaRange, AreaRange, AreaRange] = (
    (0.0, 1e5**2),
    (0.0, 32.0**2),
    (32.0**2, 96.0**2),
    (96.0**2, 1e5**2),
)
AREA_NAMES = ("all", "small", "medium", "large")
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

_UNDEFINED = -1.0
_MAX_IOU_THRESHOLD = 1 - 1e-10  # pycocotools caps every threshold here so IoU 1 still matches at 1.0


@dataclass(frozen=True, slots=True)
class CocoEvalParams:
    """What to evaluate, as pycocotools' ``Params`` (defaults are COCO's).

    ``max_detections`` holds three per-image-and-category limits (sorted on construction):
    AP uses the largest, the ``AR1/AR10/AR100`` stats use them in order. ``area_ranges`` are
    ``(low, high)`` areas for all, small, medium and large, bounds inclusive. ``image_ids``
    and ``category_ids`` restrict the evaluation (``None``: every image and category of the
    ground truth). ``use_ignore_flag`` honours annotations' ``ignore`` field, which
    pycocotools overwrites with ``iscrowd``.
    """

    iou_thresholds: tuple[float, ...] = DEFAULT_IOU_THRESHOLDS
    recall_thresholds: tuple[float, ...] = DEFAULT_RECALL_THRESHOLDS
    max_detections: tuple[int, int, int] = DEFAULT_MAX_DETECTIONS
    area_ranges: tuple[AreaRange, AreaRange, AreaRange, AreaRange] = DEFAULT_AREA_RANGES
    image_ids: tuple[int, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    use_ignore_flag: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        ious = tuple(float(value) for value in np.asarray(self.iou_thresholds, np.float64).reshape(-1))
        if not ious or not all(0.0 <= value <= 1.0 for value in ious):
            raise ValueError(
                f"iou_thresholds must be a non-empty sequence in [0, 1], got {self.iou_thresholds}"
            )
        set_(self, "iou_thresholds", ious)
        recalls = tuple(float(value) for value in np.asarray(self.recall_thresholds, np.float64).reshape(-1))
        if (
            not recalls
            or not all(0.0 <= value <= 1.0 for value in recalls)
            or list(recalls) != sorted(recalls)
        ):
            raise ValueError(
                f"recall_thresholds must be ascending values in [0, 1], got {self.recall_thresholds}"
            )
        set_(self, "recall_thresholds", recalls)
        limits = tuple(sorted(int(value) for value in self.max_detections))
        if len(limits) != 3 or limits[0] < 1:
            raise ValueError(f"max_detections must be three positive integers, got {self.max_detections}")
        set_(self, "max_detections", limits)
        ranges = tuple((float(low), float(high)) for low, high in self.area_ranges)
        if len(ranges) != len(AREA_NAMES) or any(low > high for low, high in ranges):
            raise ValueError(
                f"area_ranges must be four (low, high) pairs for {AREA_NAMES}, got {self.area_ranges}"
            )
        set_(self, "area_ranges", ranges)
        for name in ("image_ids", "category_ids"):
            ids = getattr(self, name)
            if ids is not None:
                set_(self, name, tuple(int(value) for value in np.asarray(ids).reshape(-1)))


@dataclass(frozen=True, slots=True)
class CocoStats:
    """The twelve numbers of ``COCOeval.summarize()``, fractions in [0, 1] or -1 where undefined.

    ``ar1``, ``ar10`` and ``ar100`` are recall at ``max_detections[0]``, ``[1]`` and ``[2]``
    (1, 10 and 100 by default); every other stat uses the largest limit.
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float

    def as_array(self) -> NDArray[np.float64]:
        """In ``COCOeval.stats`` order."""
        return np.array([getattr(self, item.name) for item in fields(self)], np.float64)


@dataclass(frozen=True, eq=False, slots=True)
class CocoEvalResult:
    """COCO detection metrics.

    ``per_class`` maps category id to AP@[.5:.95] (all areas, largest ``max_detections``),
    -1 for a category without ground truth. ``precision`` is ``(T, R, K, A, M)`` and ``recall``
    ``(T, K, A, M)`` as ``COCOeval.eval`` has them: IoU thresholds, recall points, categories
    (ascending id, ``category_ids``), area ranges (``AREA_NAMES``), detection limits.
    """

    stats: CocoStats
    per_class: Mapping[int, float]
    category_ids: tuple[int, ...]
    category_names: Mapping[int, str]
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    params: CocoEvalParams

    def to_dict(self) -> dict[str, float]:
        """``{"AP": ..., "AP50": ..., ..., "ARl": ...}``, fractions, -1 where undefined."""
        return dict(zip(STAT_KEYS, self.stats.as_array().tolist(), strict=True))


def evaluate_coco_files(
    gt_path: str | Path, pred_path: str | Path, params: CocoEvalParams | None = None
) -> CocoEvalResult:
    """Read a ground-truth and a results file and evaluate them (``FormatError`` on bad files)."""
    ground_truth = read_coco_ground_truth(gt_path)
    detections = read_coco_detections(pred_path, ground_truth)
    return evaluate_coco(ground_truth, detections, params)


def evaluate_coco(
    ground_truth: CocoGroundTruth, detections: CocoDetections, params: CocoEvalParams | None = None
) -> CocoEvalResult:
    """COCO bbox AP/AR of ``detections`` against ``ground_truth`` (see the module docstring).

    Raises ``ValueError`` when a detection names an image or category the ground truth
    does not have.
    """
    params = params or CocoEvalParams()
    _check_references(ground_truth, detections)
    image_ids = np.unique(ground_truth.image_ids if params.image_ids is None else np.array(params.image_ids))
    category_ids = np.unique(
        ground_truth.category_ids if params.category_ids is None else np.array(params.category_ids)
    ).astype(np.int64)
    truth = _prepare_truth(ground_truth, image_ids, category_ids, params)
    found = _prepare_detections(detections, image_ids, category_ids, params.max_detections[-1])
    thresholds = np.minimum(np.array(params.iou_thresholds), _MAX_IOU_THRESHOLD)
    matched, ignored = _match(truth, found, thresholds, np.array(params.area_ranges))
    precision, recall = _accumulate(truth, found, matched, ignored, len(category_ids), params)
    stats = _summarize(precision, recall, params)
    last = len(params.max_detections) - 1
    per_class = {int(category): _mean(precision[:, :, k, 0, last]) for k, category in enumerate(category_ids)}
    names = ground_truth.category_names
    return CocoEvalResult(
        stats=stats,
        per_class=per_class,
        category_ids=tuple(int(category) for category in category_ids),
        category_names={int(category): names.get(int(category), "") for category in category_ids},
        precision=precision,
        recall=recall,
        params=params,
    )


def _check_references(ground_truth: CocoGroundTruth, detections: CocoDetections) -> None:
    for column, known, what in (
        (detections.image_id, ground_truth.image_ids, "image"),
        (detections.category_id, ground_truth.category_ids, "category"),
    ):
        unknown = np.unique(column[~np.isin(column, known)])
        if len(unknown):
            raise ValueError(
                f"detections name {what} ids the ground truth does not have: {unknown[:10].tolist()}"
            )


# ------------------------------------------------------------------------------ preparation
@dataclass(frozen=True, slots=True)
class _Truth:
    """Ground truths sorted by (category, image), file order within; ``group = k * I + i``."""

    group: NDArray[np.int64]
    category: NDArray[np.int64]
    bbox: NDArray[np.float64]
    crowd: NDArray[np.bool_]
    ignored: NDArray[np.bool_]  # (A, G): ignored in each area range


@dataclass(frozen=True, slots=True)
class _Found:
    """Kept detections sorted by group, then score (stable); ``rank`` counts from 0 per group."""

    group: NDArray[np.int64]
    category: NDArray[np.int64]
    image: NDArray[np.int64]
    rank: NDArray[np.int64]
    score: NDArray[np.float64]
    bbox: NDArray[np.float64]


def _positions(
    ids: NDArray[np.int64], sorted_ids: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Index of each id in ``sorted_ids`` and whether it is there at all."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), np.bool_)
    index = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return index.astype(np.int64), sorted_ids[index] == ids


def _prepare_truth(
    ground_truth: CocoGroundTruth,
    image_ids: NDArray[np.int64],
    category_ids: NDArray[np.int64],
    params: CocoEvalParams,
) -> _Truth:
    rows = ground_truth.annotations
    image, in_images = _positions(rows.image_id, image_ids)
    category, in_categories = _positions(rows.category_id, category_ids)
    keep = np.flatnonzero(in_images & in_categories)
    group = category[keep] * len(image_ids) + image[keep]
    order = keep[np.argsort(group, kind="stable")]
    group = np.sort(group, kind="stable")
    ignore = rows.iscrowd[order] | (rows.ignore[order] if params.use_ignore_flag else False)
    area = rows.area[order]
    ranges = np.array(params.area_ranges)
    outside = (area[None, :] < ranges[:, :1]) | (area[None, :] > ranges[:, 1:])
    return _Truth(
        group=group,
        category=category[order],
        bbox=rows.bbox[order],
        crowd=rows.iscrowd[order],
        ignored=ignore[None, :] | outside,
    )


def _prepare_detections(
    detections: CocoDetections, image_ids: NDArray[np.int64], category_ids: NDArray[np.int64], limit: int
) -> _Found:
    image, in_images = _positions(detections.image_id, image_ids)
    category, in_categories = _positions(detections.category_id, category_ids)
    keep = np.flatnonzero(in_images & in_categories)
    group = category[keep] * len(image_ids) + image[keep]
    # lexsort is stable: equal scores keep file order, as pycocotools' mergesort does
    order = np.lexsort((-detections.score[keep], group))
    group = group[order]
    rank = np.arange(len(group)) - _segment_starts(group)
    kept = rank < limit
    rows = keep[order][kept]
    return _Found(
        group=group[kept],
        category=category[rows],
        image=image[rows],
        rank=rank[kept],
        score=detections.score[rows],
        bbox=detections.bbox[rows],
    )


def _segment_starts(keys: NDArray[np.int64]) -> NDArray[np.int64]:
    """For sorted ``keys``, the index where each element's run of equal keys starts."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    first = np.r_[True, keys[1:] != keys[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0)).astype(np.int64)


# ------------------------------------------------------------------------------ matching
def _box_iou(
    detection: NDArray[np.float64], truth: NDArray[np.float64], crowd: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Row-wise IoU of paired ``xywh`` boxes, with pycocotools' (C ``bbIou``) operation order."""
    dx, dy, dw, dh = detection.T
    gx, gy, gw, gh = truth.T
    width = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    height = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (width > 0) & (height > 0)
    intersection = width * height
    union = np.where(crowd, dw * dh, dw * dh + gw * gh - intersection)
    iou = np.zeros(len(detection))
    np.divide(intersection, union, out=iou, where=overlap)
    return iou


_CHUNK_PAIRS = 1 << 22  # (detection, ground truth) pairs per block, bounding memory in crowded scenes


def _edges(
    truth: _Truth, found: _Found, lowest: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Pairs of the same image and category with IoU >= ``lowest``: detection, ground truth, IoU."""
    start = np.searchsorted(truth.group, found.group, side="left")
    pairs_per = np.searchsorted(truth.group, found.group, side="right") - start
    ends = np.cumsum(pairs_per)
    parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]] = []
    first = 0
    while first < len(pairs_per):
        last = max(
            int(np.searchsorted(ends, ends[first] - pairs_per[first] + _CHUNK_PAIRS, side="right")), first + 1
        )
        counts = pairs_per[first:last]
        pair_found = np.repeat(np.arange(first, last), counts)
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        pair_truth = np.repeat(start[first:last], counts) + offset
        iou = _box_iou(found.bbox[pair_found], truth.bbox[pair_truth], truth.crowd[pair_truth])
        keep = iou >= lowest
        parts.append((pair_found[keep], pair_truth[keep], iou[keep]))
        first = last
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (
        np.concatenate([part[0] for part in parts]).astype(np.int64),
        np.concatenate([part[1] for part in parts]).astype(np.int64),
        np.concatenate([part[2] for part in parts]),
    )


def _match(
    truth: _Truth, found: _Found, thresholds: NDArray[np.float64], ranges: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Greedy matching per image and category, for every area range and IoU threshold.

    Returns ``matched`` and ``ignored``, both ``(A, T, D)`` over the kept detections.
    """
    areas, count = len(ranges), len(thresholds)
    n_found = len(found.group)
    matched = np.zeros((areas, count, n_found), np.bool_)
    match_ignored = np.zeros((areas, count, n_found), np.bool_)

    # an edge is a pair that can match at some threshold; per detection, ordered so the last
    # valid edge of the highest tier is pycocotools' choice (higher IoU, then later ground truth)
    edge_found, edge_truth, edge_iou = _edges(truth, found, float(thresholds.min()))
    order = np.lexsort((edge_truth, edge_iou, edge_found))
    edge_found, edge_truth, edge_iou = edge_found[order], edge_truth[order], edge_iou[order]
    n_edges = len(order)
    if n_edges:
        # a not-ignored ground truth always beats an ignored one, whatever the IoU
        tier = np.arange(n_edges) + (~truth.ignored[:, edge_truth]) * n_edges  # (A, E)
        above = edge_iou[None, :] >= thresholds[:, None]  # (T, E)
        # step s handles each group's s-th detection that has edges: detections of one
        # group must go in score order, different groups are independent
        with_edges = np.unique(edge_found)
        step_of = np.full(n_found, -1, np.int64)
        step_of[with_edges] = np.arange(len(with_edges)) - _segment_starts(found.group[with_edges])
        edge_step = step_of[edge_found]
        by_step = np.argsort(edge_step, kind="stable")
        bounds = np.searchsorted(edge_step[by_step], np.arange(int(edge_step.max()) + 2))
        taken = np.zeros((areas, count, len(truth.group)), np.bool_)
        crowd = truth.crowd
        for step in range(len(bounds) - 1):
            rows = by_step[bounds[step] : bounds[step + 1]]
            owners, targets = edge_found[rows], edge_truth[rows]
            valid = above[None, :, rows] & (crowd[targets] | ~taken[:, :, targets])
            key = np.where(valid, tier[:, None, rows], -1)
            firsts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            best = np.maximum.reduceat(key, firsts, axis=2)
            lengths = np.diff(np.r_[firsts, len(rows)])
            chosen = valid & (key == np.repeat(best, lengths, axis=2))
            area_index, threshold_index, edge_index = np.nonzero(chosen)
            target = targets[edge_index]
            taken[area_index, threshold_index, target] = True
            owner = owners[edge_index]
            matched[area_index, threshold_index, owner] = True
            match_ignored[area_index, threshold_index, owner] = truth.ignored[area_index, target]

    area = found.bbox[:, 2] * found.bbox[:, 3]
    outside = (area[None, :] < ranges[:, :1]) | (area[None, :] > ranges[:, 1:])  # (A, D)
    ignored = match_ignored | (~matched & outside[:, None, :])
    return matched, ignored


# ------------------------------------------------------------------------------ accumulation
def _accumulate(
    truth: _Truth,
    found: _Found,
    matched: NDArray[np.bool_],
    ignored: NDArray[np.bool_],
    n_categories: int,
    params: CocoEvalParams,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Precision ``(T, R, K, A, M)`` and recall ``(T, K, A, M)`` as ``COCOeval.accumulate``."""
    recall_points = np.array(params.recall_thresholds)
    count, points, areas = len(params.iou_thresholds), len(recall_points), len(params.area_ranges)
    limits = params.max_detections
    precision = np.full((count, points, n_categories, areas, len(limits)), _UNDEFINED)
    recall = np.full((count, n_categories, areas, len(limits)), _UNDEFINED)

    # not-ignored ground truths per category and area range: where there are none, -1 stays
    positives = np.stack(
        [np.bincount(truth.category[~truth.ignored[a]], minlength=n_categories) for a in range(areas)], axis=1
    ).astype(np.int64)  # (K, A)
    needed = _needed_true_positives(positives, recall_points)  # (K, A, R)
    defined = (positives > 0).T  # (A, K)

    # per category by score; ties in image order, then rank within the image (pycocotools
    # concatenates images in id order and sorts stably)
    order = np.lexsort((found.rank, found.image, -found.score, found.category))
    category, rank = found.category[order], found.rank[order]
    counted = ~ignored[:, :, order]
    hits = matched[:, :, order] & counted
    misses = ~matched[:, :, order] & counted
    for m, limit in enumerate(limits):
        rows = np.flatnonzero(rank < limit)
        bounds = np.searchsorted(category[rows], np.arange(n_categories + 1))
        for first, last in _chunks(bounds, _CHUNK_DETECTIONS):
            chunk = rows[bounds[first] : bounds[last]]
            q, r = _precision_recall(
                hits[:, :, chunk],
                misses[:, :, chunk],
                np.diff(bounds[first : last + 1]),
                positives[first:last],
                needed[first:last],
            )
            chosen = defined[:, None, first:last]  # (A, 1, K')
            precision[:, :, first:last, :, m] = np.where(chosen[..., None], q, _UNDEFINED).transpose(
                1, 3, 2, 0
            )
            recall[:, first:last, :, m] = np.where(chosen, r, _UNDEFINED).transpose(1, 2, 0)
    return precision, recall


_CHUNK_DETECTIONS = 1 << 18  # detections per vectorised block, bounding memory on large result sets


def _chunks(bounds: NDArray[np.int64], budget: int) -> list[tuple[int, int]]:
    """Consecutive category ranges ``[first, last)`` holding about ``budget`` detections each."""
    chunks, first = [], 0
    categories = len(bounds) - 1
    while first < categories:
        last = int(np.searchsorted(bounds, bounds[first] + budget, side="right")) - 1
        last = min(max(last, first + 1), categories)
        chunks.append((first, last))
        first = last
    return chunks


def _needed_true_positives(
    positives: NDArray[np.int64], recall_points: NDArray[np.float64]
) -> NDArray[np.int64]:
    """The fewest true positives whose recall ``tp / npig`` (computed as pycocotools does) reaches each point.

    ``(K, A, R)``; with it, "first detection with recall >= r" becomes a search on exact integers.
    """
    needed = np.zeros((*positives.shape, len(recall_points)), np.int64)
    for total in np.unique(positives[positives > 0]):
        recalls = np.arange(total + 1, dtype=np.float64) / total
        needed[positives == total] = np.searchsorted(recalls, recall_points, side="left")
    return needed


def _precision_recall(
    hits: NDArray[np.bool_],
    misses: NDArray[np.bool_],
    lengths: NDArray[np.int64],
    positives: NDArray[np.int64],
    needed: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Interpolated precision ``(A, T, K, R)`` and final recall ``(A, T, K)`` for consecutive categories.

    ``hits``/``misses`` are ``(A, T, N)``: the categories' detections in ranking order, category
    after category (``lengths`` each), true and false positives flagged (ignored ones neither).
    """
    areas, count, n = hits.shape
    categories = len(lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)

    def running(flags: NDArray[np.bool_]) -> NDArray[np.int32]:
        # int32: bool to int64 cumsum is several times slower, and counts stay below 2**31
        total = np.cumsum(flags, axis=2, dtype=np.int32)
        before = np.concatenate([np.zeros((areas, count, 1), np.int32), total], axis=2)[:, :, starts]
        counts: NDArray[np.int32] = total - np.repeat(before, lengths, axis=2)
        return counts

    tp_count = running(hits)
    tp = tp_count.astype(np.float64)
    fp = running(misses).astype(np.float64)
    precisions = tp / (fp + tp + np.spacing(1))

    ends = starts + lengths
    present = lengths > 0
    found_total = np.zeros((areas, count, categories), np.int64)  # true positives per category
    found_total[:, :, present] = tp_count[:, :, ends[present] - 1]
    with np.errstate(divide="ignore", invalid="ignore"):  # categories without ground truth are masked later
        final = found_total.astype(np.float64) / positives.T[:, None, :]
    final[:, :, ~present] = 0.0

    envelope = np.empty_like(precisions)  # precision made monotone from the right, per category
    for start, end in zip(starts[present].tolist(), ends[present].tolist(), strict=True):
        reversed_ = precisions[:, :, start:end][:, :, ::-1]
        envelope[:, :, start:end] = np.maximum.accumulate(reversed_, axis=2)[:, :, ::-1]

    # pycocotools takes the first detection with recall >= r: the first whose tp reaches
    # `needed`, which is the needed-th true positive itself (or the first detection for 0)
    hit_at = np.flatnonzero(hits.reshape(-1))  # in (area, threshold, position) order
    hit_before = np.r_[0, np.cumsum(found_total.reshape(-1))[:-1]].reshape(found_total.shape)
    want = needed.transpose(1, 0, 2)[:, None, :, :]  # (A, 1, K, R)
    reached = present[None, None, :, None] & (want <= found_total[..., None])
    row_start = (np.arange(areas * count, dtype=np.int64) * n).reshape(areas, count, 1, 1)
    nth_hit = hit_before[..., None] + want - 1
    index = np.where(
        want == 0,
        row_start + starts[None, None, :, None],
        hit_at[np.clip(nth_hit, 0, max(len(hit_at) - 1, 0))] if len(hit_at) else 0,
    )
    values = envelope.reshape(-1)[np.where(reached, index, 0)] if n else np.zeros(reached.shape)
    return np.where(reached, values, 0.0), final


# ------------------------------------------------------------------------------ summary
def _mean(values: NDArray[np.float64]) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else _UNDEFINED


def _summarize(
    precision: NDArray[np.float64], recall: NDArray[np.float64], params: CocoEvalParams
) -> CocoStats:
    """``COCOeval.summarize`` for bbox: the same slices, means over entries that are not -1."""
    thresholds = np.array(params.iou_thresholds)
    last = len(params.max_detections) - 1

    def ap(area: int = 0, iou: float | None = None) -> float:
        values = precision
        if iou is not None:
            values = values[np.flatnonzero(np.isclose(thresholds, iou, rtol=0.0, atol=1e-9))]
        return _mean(values[:, :, :, area, last])

    def ar(area: int = 0, limit: int = last) -> float:
        return _mean(recall[:, :, area, limit])

    return CocoStats(
        ap=ap(),
        ap50=ap(iou=0.5),
        ap75=ap(iou=0.75),
        ap_small=ap(1),
        ap_medium=ap(2),
        ap_large=ap(3),
        ar1=ar(limit=0),
        ar10=ar(limit=1),
        ar100=ar(limit=2),
        ar_small=ar(1),
        ar_medium=ar(2),
        ar_large=ar(3),
    )
