"""COCO detection JSON: ground truth (images, annotations, categories) and result lists.

Boxes are ``[x, y, width, height]`` in pixels, as COCO writes them. A ground-truth file is an
object with ``images``, ``annotations`` and ``categories``; a result file is a list of
``{"image_id", "category_id", "bbox", "score"}`` objects. Both are read into columnar tables
(``CocoAnnotations``, ``CocoDetections``) whose rows keep file order, because COCO evaluation
breaks score ties by that order.

Readers check everything the evaluation relies on and raise ``FormatError`` naming the file,
the offending entry (``annotations[12] (id 40)``) and the problem. Optional annotation fields take
the values pycocotools would compute or assume: ``area`` defaults to ``width * height``,
``iscrowd`` and ``ignore`` to 0. Writers produce files pycocotools' ``COCO`` and ``loadRes`` read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.core.detections import Detections
from crossview.io.formats._errors import FormatError
from crossview.io.formats._text import read_text

_Rows = NDArray[np.bool_] | NDArray[np.int64] | slice


def _int_column(name: str, owner: str, values: ArrayLike | None, n: int, fill: int) -> NDArray[np.int64]:
    if values is None:
        return np.full(n, fill, np.int64)
    array = np.asarray(values)
    if array.size == 0:
        array = array.reshape(0)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{owner}.{name} must have shape ({n},), got {array.shape}")
    fractional = array.size > 0 and not np.issubdtype(array.dtype, np.integer)
    if fractional and (not np.all(np.isfinite(array)) or np.any(array != np.round(array))):
        raise ValueError(f"{owner}.{name} must hold whole numbers, got {array.dtype} with fractions")
    return np.ascontiguousarray(array, dtype=np.int64)


def _float_column(name: str, owner: str, values: ArrayLike, n: int) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{owner}.{name} must have shape ({n},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{owner}.{name} has non-finite values in rows {np.flatnonzero(~np.isfinite(array))[:10]}"
        )
    return np.ascontiguousarray(array)


def _bool_column(name: str, owner: str, values: ArrayLike | None, n: int) -> NDArray[np.bool_]:
    if values is None:
        return np.zeros(n, np.bool_)
    array = np.asarray(values)
    if array.size == 0:
        array = array.reshape(0)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{owner}.{name} must have shape ({n},), got {array.shape}")
    return np.ascontiguousarray(array != 0)


def _boxes(owner: str, values: ArrayLike) -> NDArray[np.float64]:
    boxes = np.asarray(values, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{owner}.bbox must have shape (N, 4) as [x, y, width, height], got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
        raise ValueError(f"{owner}.bbox has non-finite values in rows {bad[:10].tolist()}")
    if np.any(boxes[:, 2:] < 0):
        bad = np.flatnonzero(np.any(boxes[:, 2:] < 0, axis=1))
        raise ValueError(f"{owner}.bbox rows {bad[:10].tolist()} have a negative width or height")
    return np.ascontiguousarray(boxes)


# ------------------------------------------------------------------------------ tables
@dataclass(frozen=True, slots=True)
class CocoImage:
    """One entry of a ground truth's ``images`` list (width and height 0 when not given)."""

    id: int
    file_name: str = ""
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class CocoCategory:
    """One entry of a ground truth's ``categories`` list."""

    id: int
    name: str = ""
    supercategory: str = ""


@dataclass(frozen=True, eq=False, slots=True)
class CocoAnnotations:
    """Ground-truth boxes, one row per annotation, columnar and in file order.

    ``bbox`` is ``(N, 4)`` ``[x, y, width, height]``; ``area`` is the annotation's own area
    (COCO evaluation uses it, not the box, to place an object in the small/medium/large ranges).

    >>> rows = CocoAnnotations.from_columns([[0, 0, 10, 20]], image_id=[1], category_id=[3])
    >>> rows.id.tolist(), rows.area.tolist()
    ([1], [200.0])
    """

    id: NDArray[np.int64]
    image_id: NDArray[np.int64]
    category_id: NDArray[np.int64]
    bbox: NDArray[np.float64]
    area: NDArray[np.float64]
    iscrowd: NDArray[np.bool_]
    ignore: NDArray[np.bool_]

    def __post_init__(self) -> None:
        owner = "CocoAnnotations"
        bbox = _boxes(owner, self.bbox)
        n = bbox.shape[0]
        set_ = object.__setattr__
        set_(self, "bbox", bbox)
        for name in ("id", "image_id", "category_id"):
            set_(self, name, _int_column(name, owner, getattr(self, name), n, 0))
        set_(self, "area", _float_column("area", owner, self.area, n))
        set_(self, "iscrowd", _bool_column("iscrowd", owner, self.iscrowd, n))
        set_(self, "ignore", _bool_column("ignore", owner, self.ignore, n))

    @classmethod
    def from_columns(
        cls,
        bbox: ArrayLike,
        *,
        image_id: ArrayLike,
        category_id: ArrayLike,
        id: ArrayLike | None = None,  # the COCO field name
        area: ArrayLike | None = None,
        iscrowd: ArrayLike | None = None,
        ignore: ArrayLike | None = None,
    ) -> Self:
        """Build with COCO's defaults: ids ``1..N``, ``area = width * height``, not crowd, not ignored."""
        boxes = _boxes("CocoAnnotations", bbox)
        n = boxes.shape[0]
        return cls(
            id=np.arange(1, n + 1, dtype=np.int64) if id is None else np.asarray(id),
            image_id=np.asarray(image_id),
            category_id=np.asarray(category_id),
            bbox=boxes,
            area=boxes[:, 2] * boxes[:, 3] if area is None else np.asarray(area),
            iscrowd=np.zeros(n, np.bool_) if iscrowd is None else np.asarray(iscrowd),
            ignore=np.zeros(n, np.bool_) if ignore is None else np.asarray(ignore),
        )

    @classmethod
    def empty(cls) -> Self:
        return cls.from_columns(
            np.zeros((0, 4)), image_id=np.zeros(0, np.int64), category_id=np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return int(self.bbox.shape[0])

    def __getitem__(self, rows: _Rows) -> CocoAnnotations:
        return CocoAnnotations(
            id=self.id[rows],
            image_id=self.image_id[rows],
            category_id=self.category_id[rows],
            bbox=self.bbox[rows],
            area=self.area[rows],
            iscrowd=self.iscrowd[rows],
            ignore=self.ignore[rows],
        )


@dataclass(frozen=True, eq=False, slots=True)
class CocoGroundTruth:
    """A COCO ground-truth file: images, categories and annotations.

    Image, category and annotation ids are unique, and every annotation names a listed
    image and category; construction checks both (``ValueError``).
    """

    images: tuple[CocoImage, ...]
    categories: tuple[CocoCategory, ...]
    annotations: CocoAnnotations = field(default_factory=CocoAnnotations.empty)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "categories", tuple(self.categories))
        for name, ids in (
            ("image", self.image_ids),
            ("category", self.category_ids),
            ("annotation", self.annotations.id),
        ):
            duplicated = _first_duplicate(ids)
            if duplicated is not None:
                raise ValueError(f"CocoGroundTruth: duplicate {name} id {int(ids[duplicated[1]])}")
        for name, column, known in (
            ("image", self.annotations.image_id, self.image_ids),
            ("category", self.annotations.category_id, self.category_ids),
        ):
            unknown = ~np.isin(column, known)
            if unknown.any():
                raise ValueError(
                    f"CocoGroundTruth: annotations name unknown {name} ids {_few(column[unknown])}"
                )

    @property
    def image_ids(self) -> NDArray[np.int64]:
        """Image ids in file order."""
        return np.fromiter((image.id for image in self.images), np.int64, len(self.images))

    @property
    def category_ids(self) -> NDArray[np.int64]:
        """Category ids in file order."""
        return np.fromiter((category.id for category in self.categories), np.int64, len(self.categories))

    @property
    def category_names(self) -> dict[int, str]:
        return {category.id: category.name for category in self.categories}


@dataclass(frozen=True, eq=False, slots=True)
class CocoDetections:
    """Detection results, one row per box, columnar and in file order.

    >>> boxes = [[0, 0, 5, 5], [1, 1, 4, 4]]
    >>> results = CocoDetections(image_id=[1, 1], category_id=[3, 3], bbox=boxes, score=[0.9, 0.4])
    >>> len(results), results.area.tolist()
    (2, [25.0, 16.0])
    """

    image_id: NDArray[np.int64]
    category_id: NDArray[np.int64]
    bbox: NDArray[np.float64]
    score: NDArray[np.float64]

    def __post_init__(self) -> None:
        owner = "CocoDetections"
        bbox = _boxes(owner, self.bbox)
        n = bbox.shape[0]
        set_ = object.__setattr__
        set_(self, "bbox", bbox)
        set_(self, "image_id", _int_column("image_id", owner, self.image_id, n, 0))
        set_(self, "category_id", _int_column("category_id", owner, self.category_id, n, 0))
        set_(self, "score", _float_column("score", owner, self.score, n))

    @classmethod
    def empty(cls) -> Self:
        return cls(
            image_id=np.zeros(0, np.int64),
            category_id=np.zeros(0, np.int64),
            bbox=np.zeros((0, 4)),
            score=np.zeros(0),
        )

    @classmethod
    def concatenate(cls, parts: Iterable[CocoDetections]) -> Self:
        """Stack tables row-wise, keeping each part's order."""
        items = list(parts)
        if not items:
            return cls.empty()
        return cls(
            image_id=np.concatenate([part.image_id for part in items]),
            category_id=np.concatenate([part.category_id for part in items]),
            bbox=np.concatenate([part.bbox for part in items]),
            score=np.concatenate([part.score for part in items]),
        )

    def __len__(self) -> int:
        return int(self.bbox.shape[0])

    def __getitem__(self, rows: _Rows) -> CocoDetections:
        return CocoDetections(self.image_id[rows], self.category_id[rows], self.bbox[rows], self.score[rows])

    @property
    def area(self) -> NDArray[np.float64]:
        """``width * height``, the area COCO evaluation gives a detection."""
        return self.bbox[:, 2] * self.bbox[:, 3]


def _first_duplicate(ids: NDArray[np.int64]) -> tuple[int, int] | None:
    """Positions ``(first, second)`` of the earliest repeated id (by second occurrence), or ``None``."""
    if len(ids) < 2:
        return None
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(repeated) == 0:
        return None
    seconds = order[repeated + 1]
    pick = int(np.argmin(seconds))
    return int(order[repeated[pick]]), int(seconds[pick])


def _few(values: NDArray[np.int64]) -> str:
    unique = np.unique(values)
    more = f" and {len(unique) - 5} more" if len(unique) > 5 else ""
    return f"{unique[:5].tolist()}{more}"


# ------------------------------------------------------------------------------ reading
def _load_json(path: Path) -> Any:
    text = read_text(path, expected="JSON")
    if not text.strip():
        raise FormatError(path, "empty file (expected JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(path, f"not valid JSON: {error.msg} (column {error.colno})", error.lineno) from None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class _Section:
    """One list of records (``images``, ``annotations``, ``categories`` or results) being read."""

    def __init__(self, path: Path, name: str, records: Any) -> None:
        self.path = path
        self.name = name
        if not isinstance(records, list):
            raise FormatError(path, f"{name} must be a list, got {_kind(records)}")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise FormatError(path, f"{name}[{index}] must be an object, got {_kind(record)}")
        self.records: list[dict[str, Any]] = records

    def __len__(self) -> int:
        return len(self.records)

    def where(self, index: int) -> str:
        record_id = self.records[index].get("id")
        suffix = f" (id {record_id})" if type(record_id) is int else ""
        return f"{self.name}[{index}]{suffix}"

    def fail(self, index: int, problem: str) -> FormatError:
        return FormatError(self.path, f"{self.where(index)}: {problem}")

    def values(self, key: str, *, required: bool) -> list[Any]:
        if required and not all(key in record for record in self.records):
            missing = next(i for i, record in enumerate(self.records) if key not in record)
            raise self.fail(missing, f"missing key {key!r}")
        return [record.get(key) for record in self.records]

    def first(self, values: list[Any], bad: Callable[[Any], bool]) -> int:
        return next(i for i, value in enumerate(values) if bad(value))

    def integers(self, key: str, *, required: bool = True, default: int = 0) -> NDArray[np.int64]:
        values = self.values(key, required=required)
        if not required and None in values:
            values = [default if value is None else value for value in values]
        # the common case in one pass over types; the slow search only names the culprit
        if not set(map(type, values)) <= {int} and not all(map(_is_integer, values)):
            bad = self.first(values, lambda value: not _is_integer(value))
            raise self.fail(bad, f"{key} must be an integer, got {values[bad]!r}")
        try:
            return np.array(values, dtype=np.int64).reshape(len(values))
        except OverflowError:
            bad = self.first(values, lambda value: not -(2**63) <= value < 2**63)
            raise self.fail(bad, f"{key} is out of range: {values[bad]!r}") from None

    def numbers(self, key: str, *, required: bool = True) -> NDArray[np.float64]:
        """Finite numbers; NaN where an optional key is absent."""
        values = self.values(key, required=required)
        allowed = {int, float} if required else {int, float, type(None)}
        if not set(map(type, values)) <= allowed:
            bad = self.first(values, lambda value: type(value) not in allowed)
            raise self.fail(bad, f"{key} must be a finite number, got {values[bad]!r}")
        array = np.array([np.nan if value is None else value for value in values], np.float64).reshape(
            len(values)
        )
        given = np.array([value is not None for value in values], np.bool_).reshape(len(values))
        bad_rows = np.flatnonzero(given & ~np.isfinite(array))
        if len(bad_rows):
            raise self.fail(int(bad_rows[0]), f"{key} must be a finite number, got {values[bad_rows[0]]!r}")
        return array

    def flags(self, key: str) -> NDArray[np.bool_]:
        values = self.values(key, required=False)
        if not set(map(type, values)) <= {int, float, bool, type(None)} or not {*values} <= {0, 1, None}:
            bad = self.first(
                values, lambda value: value is not None and (not _is_flag(value) or value not in (0, 1))
            )
            raise self.fail(bad, f"{key} must be 0 or 1, got {values[bad]!r}")
        return np.array([bool(value) for value in values], dtype=np.bool_).reshape(len(values))

    def strings(self, key: str) -> list[str]:
        values = self.values(key, required=False)
        if not set(map(type, values)) <= {str, type(None)}:
            bad = self.first(values, lambda value: not isinstance(value, str | None))
            raise self.fail(bad, f"{key} must be a string, got {values[bad]!r}")
        return [value or "" for value in values]

    def boxes(self) -> NDArray[np.float64]:
        values = self.values("bbox", required=True)
        shaped = all(type(box) is list and len(box) == 4 for box in values)
        if not shaped or not {type(value) for box in values for value in box} <= {int, float}:
            bad = self.first(
                values,
                lambda box: not isinstance(box, list) or len(box) != 4 or not all(map(_is_number, box)),
            )
            raise self.fail(
                bad, f"bbox must be a list of 4 numbers [x, y, width, height], got {values[bad]!r}"
            )
        boxes = np.array(values, dtype=np.float64).reshape(len(values), 4)
        bad_rows = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
        if len(bad_rows):
            index = int(bad_rows[0])
            raise self.fail(index, f"bbox has a non-finite value: {values[index]!r}")
        bad_rows = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
        if len(bad_rows):
            index = int(bad_rows[0])
            side = "width" if boxes[index, 2] < 0 else "height"
            raise self.fail(index, f"bbox {side} is negative: {values[index]!r}")
        return boxes

    def unique(self, ids: NDArray[np.int64], what: str) -> None:
        duplicated = _first_duplicate(ids)
        if duplicated is not None:
            first, second = duplicated
            raise self.fail(second, f"duplicate {what} id {int(ids[second])} (also {self.name}[{first}])")

    def known(self, ids: NDArray[np.int64], known: NDArray[np.int64], key: str, owner: str) -> None:
        unknown = ~np.isin(ids, known)
        if unknown.any():
            index = int(np.flatnonzero(unknown)[0])
            raise self.fail(index, f"{key} {int(ids[index])} is not {owner}")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_flag(value: Any) -> bool:
    return type(value) in (int, float, bool)


def _is_integer(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value.is_integer())


def read_coco_ground_truth(path: str | Path) -> CocoGroundTruth:
    """Read a COCO ground-truth JSON file (``images``, ``annotations``, ``categories``).

    Required per annotation: ``id``, ``image_id``, ``category_id`` and ``bbox`` (4 finite numbers,
    width and height >= 0). Optional: ``area`` (default ``width * height``), ``iscrowd`` and
    ``ignore`` (0 or 1, default 0). Ids must be unique and annotations must name listed images
    and categories. Anything else (segmentations, ``info``, ``licenses``) is not kept.
    Problems raise ``FormatError`` naming the file, the entry and what is wrong.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        hint = " (this looks like a results file)" if isinstance(data, list) else ""
        raise FormatError(
            path, f"expected an object with images, annotations and categories, got {_kind(data)}{hint}"
        )
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise FormatError(
            path, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        )

    images = _Section(path, "images", data["images"])
    image_ids = images.integers("id")
    images.unique(image_ids, "image")
    names = images.strings("file_name")
    widths = images.integers("width", required=False)
    heights = images.integers("height", required=False)

    categories = _Section(path, "categories", data["categories"])
    category_ids = categories.integers("id")
    categories.unique(category_ids, "category")
    category_names = categories.strings("name")
    supercategories = categories.strings("supercategory")

    annotations = _Section(path, "annotations", data["annotations"])
    annotation_ids = annotations.integers("id")
    annotations.unique(annotation_ids, "annotation")
    annotation_images = annotations.integers("image_id")
    annotations.known(annotation_images, image_ids, "image_id", "an image in images")
    annotation_categories = annotations.integers("category_id")
    annotations.known(annotation_categories, category_ids, "category_id", "a category in categories")
    boxes = annotations.boxes()
    area = annotations.numbers("area", required=False)
    area = np.where(np.isnan(area), boxes[:, 2] * boxes[:, 3], area)  # absent: the box's area
    negative = np.flatnonzero(area < 0)
    if len(negative):
        raise annotations.fail(int(negative[0]), f"area must be >= 0, got {area[negative[0]]:g}")

    return CocoGroundTruth(
        images=tuple(
            CocoImage(int(i), name, int(w), int(h))
            for i, name, w, h in zip(image_ids, names, widths, heights, strict=True)
        ),
        categories=tuple(
            CocoCategory(int(i), name, supercategory)
            for i, name, supercategory in zip(category_ids, category_names, supercategories, strict=True)
        ),
        annotations=CocoAnnotations(
            id=annotation_ids,
            image_id=annotation_images,
            category_id=annotation_categories,
            bbox=boxes,
            area=area,
            iscrowd=annotations.flags("iscrowd"),
            ignore=annotations.flags("ignore"),
        ),
    )


def read_coco_detections(path: str | Path, ground_truth: CocoGroundTruth | None = None) -> CocoDetections:
    """Read a COCO results file: a JSON list of ``{image_id, category_id, bbox, score}``.

    Other keys (``segmentation``, ``area``, ``id``) are allowed and not kept. With
    ``ground_truth``, every ``image_id`` must be one of its images and every ``category_id``
    one of its categories. Problems raise ``FormatError`` naming the file, the entry and
    what is wrong; an empty list is a valid result set.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        hint = (
            " (this looks like a ground-truth file)"
            if isinstance(data, dict) and "annotations" in data
            else ""
        )
        raise FormatError(path, f"expected a list of results, got {_kind(data)}{hint}")
    results = _Section(path, "results", data)
    image_ids = results.integers("image_id")
    category_ids = results.integers("category_id")
    boxes = results.boxes()
    scores = results.numbers("score")
    if ground_truth is not None:
        results.known(image_ids, ground_truth.image_ids, "image_id", "an image in the ground truth")
        results.known(
            category_ids, ground_truth.category_ids, "category_id", "a category in the ground truth"
        )
    return CocoDetections(image_id=image_ids, category_id=category_ids, bbox=boxes, score=scores)


# ------------------------------------------------------------------------------ writing
def write_coco_ground_truth(path: str | Path, ground_truth: CocoGroundTruth) -> None:
    """Write a ground-truth file pycocotools' ``COCO`` loads.

    ``ignore`` is written only on annotations that have it set.
    """
    rows = ground_truth.annotations
    annotations: list[dict[str, Any]] = []
    for ann_id, image_id, category_id, box, area, crowd, ignore in zip(
        rows.id.tolist(),
        rows.image_id.tolist(),
        rows.category_id.tolist(),
        rows.bbox.tolist(),
        rows.area.tolist(),
        rows.iscrowd.tolist(),
        rows.ignore.tolist(),
        strict=True,
    ):
        record: dict[str, Any] = {
            "id": ann_id,
            "image_id": image_id,
            "category_id": category_id,
            "bbox": box,
            "area": area,
            "iscrowd": int(crowd),
        }
        if ignore:
            record["ignore"] = 1
        annotations.append(record)
    document = {
        "images": [
            {"id": image.id, "file_name": image.file_name, "width": image.width, "height": image.height}
            for image in ground_truth.images
        ],
        "annotations": annotations,
        "categories": [
            {"id": category.id, "name": category.name, "supercategory": category.supercategory}
            for category in ground_truth.categories
        ],
    }
    _write_json(path, document)


def write_coco_detections(path: str | Path, detections: CocoDetections) -> None:
    """Write a results list pycocotools' ``COCO.loadRes`` loads (an empty table writes ``[]``)."""
    document = [
        {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}
        for image_id, category_id, box, score in zip(
            detections.image_id.tolist(),
            detections.category_id.tolist(),
            detections.bbox.tolist(),
            detections.score.tolist(),
            strict=True,
        )
    ]
    _write_json(path, document)


def _write_json(path: str | Path, document: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, allow_nan=False, separators=(",", ":"))


# ------------------------------------------------------------------------------ detections
def detections_to_coco(detections: Detections, image_id: int) -> CocoDetections:
    """One image's detections as result rows (``class_id`` becomes ``category_id``)."""
    n = len(detections)
    return CocoDetections(
        image_id=np.full(n, image_id, np.int64),
        category_id=detections.class_id.astype(np.int64),
        bbox=detections.xywh.astype(np.float64),
        score=detections.confidence.astype(np.float64),
    )


def coco_to_detections(
    results: CocoDetections, image_id: int, *, camera_id: str | None = None, frame_index: int | None = None
) -> Detections:
    """The result rows of one image as ``Detections`` (``category_id`` becomes ``class_id``)."""
    rows = results[results.image_id == image_id]
    return Detections.from_xywh(
        rows.bbox,
        confidence=rows.score,
        class_id=rows.category_id,
        camera_id=camera_id,
        frame_index=frame_index,
    )


def annotations_to_detections(
    ground_truth: CocoGroundTruth,
    image_id: int,
    *,
    camera_id: str | None = None,
    frame_index: int | None = None,
) -> Detections:
    """The ground-truth boxes of one image as ``Detections`` with confidence 1.

    ``data`` carries ``annotation_id``, ``area``, ``iscrowd`` and ``ignore`` per row.
    """
    rows = ground_truth.annotations[ground_truth.annotations.image_id == image_id]
    return Detections.from_xywh(
        rows.bbox,
        class_id=rows.category_id,
        data={"annotation_id": rows.id, "area": rows.area, "iscrowd": rows.iscrowd, "ignore": rows.ignore},
        camera_id=camera_id,
        frame_index=frame_index,
    )


def ground_truth_from_detections(
    per_image: Mapping[int, Detections],
    categories: Sequence[CocoCategory],
    *,
    images: Sequence[CocoImage] | None = None,
) -> CocoGroundTruth:
    """Build a ground truth from boxes per image id (``class_id`` is the category id).

    Annotation ids run ``1..N`` in image order; ``area`` is the box area unless a table's
    ``data`` has an ``area`` column, and ``iscrowd``/``ignore`` columns are used when present.
    ``images`` defaults to one ``CocoImage`` per key of ``per_image``.
    """
    items = sorted(per_image.items())
    bbox, image_id, category_id = [np.zeros((0, 4))], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    area, iscrowd, ignore = [np.zeros(0)], [np.zeros(0, np.bool_)], [np.zeros(0, np.bool_)]
    for key, detections in items:
        box = detections.xywh.astype(np.float64)
        unset = np.zeros(len(detections), np.bool_)
        bbox.append(box)
        image_id.append(np.full(len(detections), key, np.int64))
        category_id.append(detections.class_id)
        area.append(np.asarray(detections.data.get("area", box[:, 2] * box[:, 3]), np.float64))
        iscrowd.append(np.asarray(detections.data.get("iscrowd", unset)) != 0)
        ignore.append(np.asarray(detections.data.get("ignore", unset)) != 0)
    annotations = CocoAnnotations.from_columns(
        np.concatenate(bbox),
        image_id=np.concatenate(image_id),
        category_id=np.concatenate(category_id),
        area=np.concatenate(area),
        iscrowd=np.concatenate(iscrowd),
        ignore=np.concatenate(ignore),
    )
    if images is None:
        images = [CocoImage(int(key)) for key, _ in items]
    return CocoGroundTruth(images=tuple(images), categories=tuple(categories), annotations=annotations)
