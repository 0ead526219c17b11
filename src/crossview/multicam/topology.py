"""Camera topology: which cameras see common ground, and how long objects take between views.

A ``CameraTopology`` is typed configuration: loaded from a mapping (JSON, YAML, TOML) with
``CameraTopology.model_validate`` or from JSON text with ``CameraTopology.from_json``, written
with ``to_json``. Overlaps can be computed from calibration (``overlaps_from_geometry``) and
transit windows learned from associated tracks (``learn_transitions``); ``learn_topology`` does
both.

Time gaps are measured from the moment an object leaves one camera's view to the moment it
enters the next one's, in seconds; a negative gap means the two sightings overlap in time.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from crossview.core.camera import Camera
from crossview.multicam.geometry import GroundProjector, convex_intersection, polygon_area

CameraPair = tuple[str, str]
Window = tuple[float, float]
Visit = tuple[Hashable, str, float, float]

PAIR_SEPARATOR = "->"


def _pair(value: Any, what: str) -> CameraPair:
    if isinstance(value, str):
        parts = value.split(PAIR_SEPARATOR)
        if len(parts) != 2:
            raise ValueError(f"{what} {value!r} must be written 'from{PAIR_SEPARATOR}to'")
        value = [part.strip() for part in parts]
    items = list(value)
    if len(items) != 2 or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{what} must be two camera ids, got {value!r}")
    return items[0], items[1]


def _window(value: Any, pair: CameraPair) -> Window:
    if isinstance(value, Mapping):
        unknown = set(value) - {"min_seconds", "max_seconds"}
        if unknown or len(value) != 2:
            raise ValueError(
                f"transition {pair}: expected keys min_seconds and max_seconds, got {sorted(map(str, value))}"
            )
        value = (value["min_seconds"], value["max_seconds"])
    items = list(value)
    if len(items) != 2:
        raise ValueError(f"transition {pair}: expected (min_seconds, max_seconds), got {value!r}")
    try:
        low, high = float(items[0]), float(items[1])
    except (TypeError, ValueError):
        raise ValueError(f"transition {pair}: seconds must be numbers, got {value!r}") from None
    return low, high


class _WindowTable(Mapping[CameraPair, Window]):
    """A read-only, hashable, copyable mapping of transit windows, sorted by pair."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[CameraPair, Window]) -> None:
        self._items = dict(sorted(items.items()))

    def __getitem__(self, key: CameraPair) -> Window:
        return self._items[key]

    def __iter__(self) -> Iterator[CameraPair]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


class CameraTopology(BaseModel):
    """Cameras, their overlapping pairs and directed transit-time windows.

    ``overlaps`` holds unordered pairs (stored sorted); ``transitions`` maps a directed pair
    ``(from_camera, to_camera)`` to ``(min_seconds, max_seconds)``, the plausible time between
    leaving ``from_camera``'s view and entering ``to_camera``'s. A pair may have a window each
    way, and a camera a window to itself (leaving and coming back).

    >>> topology = CameraTopology.model_validate(
    ...     {"cameras": ["gate", "lobby", "yard"], "overlaps": [["lobby", "gate"]],
    ...      "transitions": {"gate->yard": [5, 40]}}
    ... )
    >>> topology.overlapping("gate", "lobby"), topology.transit_window("gate", "yard")
    (True, (5.0, 40.0))
    >>> topology.plausible("gate", "yard", 20.0), topology.plausible("yard", "gate", 20.0)
    (True, False)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cameras: tuple[str, ...]
    overlaps: frozenset[CameraPair] = frozenset()
    transitions: Mapping[CameraPair, Window] = Field(default_factory=dict, validate_default=True)
    _group: dict[str, int] = PrivateAttr(default_factory=dict)  # from the links, for ``connected``

    # ------------------------------------------------------------------------ validation
    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: tuple[str, ...]) -> tuple[str, ...]:
        for camera in cameras:
            if not camera:
                raise ValueError("camera ids must be non-empty strings")
        duplicates = sorted({camera for camera in cameras if cameras.count(camera) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {duplicates}")
        return cameras

    @field_validator("overlaps", mode="before")
    @classmethod
    def _sorted_pairs(cls, value: Any) -> Any:
        if isinstance(value, str | bytes | Mapping):
            raise ValueError(f"overlaps must be a list of camera pairs, got {type(value).__name__}")
        pairs = set()
        for item in value:
            first, second = _pair(item, "an overlap")
            if first == second:
                raise ValueError(f"overlap ({first!r}, {second!r}) pairs a camera with itself")
            pairs.add((first, second) if first < second else (second, first))
        return frozenset(pairs)

    @field_validator("transitions", mode="before")
    @classmethod
    def _transition_table(cls, value: Any) -> Any:
        table: dict[CameraPair, Window] = {}
        if isinstance(value, Mapping):
            entries = [(_pair(key, "a transition key"), window) for key, window in value.items()]
        elif isinstance(value, str | bytes):
            raise ValueError("transitions must be a mapping or a list of entries, got a string")
        else:
            entries = []
            for entry in value:
                if not isinstance(entry, Mapping):
                    raise ValueError(f"a transition entry must be a mapping, got {entry!r}")
                expected = {"from_camera", "to_camera", "min_seconds", "max_seconds"}
                if set(entry) != expected:
                    raise ValueError(
                        f"a transition entry needs exactly the keys {sorted(expected)}, "
                        f"got {sorted(map(str, entry))}"
                    )
                pair = _pair((entry["from_camera"], entry["to_camera"]), "a transition")
                entries.append((pair, (entry["min_seconds"], entry["max_seconds"])))
        for pair, window in entries:
            if pair in table:
                raise ValueError(f"transition {pair} is given twice")
            table[pair] = _window(window, pair)
        return table

    @field_validator("transitions")
    @classmethod
    def _read_only(cls, value: Mapping[CameraPair, Window]) -> Mapping[CameraPair, Window]:
        return _WindowTable(value)

    @model_validator(mode="after")
    def _known_and_ordered(self) -> CameraTopology:
        known = set(self.cameras)
        for pair in sorted(self.overlaps):
            unknown = [camera for camera in pair if camera not in known]
            if unknown:
                raise ValueError(
                    f"overlap {pair} names unknown camera(s) {unknown}; cameras are {list(self.cameras)}"
                )
        for pair, (low, high) in self.transitions.items():
            unknown = [camera for camera in pair if camera not in known]
            if unknown:
                raise ValueError(
                    f"transition {pair} names unknown camera(s) {unknown}; cameras are {list(self.cameras)}"
                )
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"transition {pair}: seconds must be finite, got ({low}, {high})")
            if low < 0:
                raise ValueError(f"transition {pair}: min_seconds must be >= 0, got {low}")
            if low > high:
                raise ValueError(f"transition {pair}: min_seconds {low} exceeds max_seconds {high}")
        self._group = self._linked_groups()
        return self

    def _linked_groups(self) -> dict[str, int]:
        """Each camera's group: cameras joined by a chain of overlaps and transitions share one."""
        group = {camera: number for number, camera in enumerate(self.cameras)}
        links = [*self.overlaps, *self.transitions]
        changed = True
        while changed:  # a few passes over a handful of links: the groups settle at their minimum
            changed = False
            for first, second in links:
                low = min(group[first], group[second])
                if group[first] != low or group[second] != low:
                    group[first] = group[second] = low
                    changed = True
        return group

    @field_serializer("overlaps")
    def _overlaps_out(self, overlaps: frozenset[CameraPair]) -> list[list[str]]:
        return [list(pair) for pair in sorted(overlaps)]

    @field_serializer("transitions")
    def _transitions_out(self, transitions: Mapping[CameraPair, Window]) -> list[dict[str, Any]]:
        return [
            {"from_camera": first, "to_camera": second, "min_seconds": low, "max_seconds": high}
            for (first, second), (low, high) in sorted(transitions.items())
        ]

    # ---------------------------------------------------------------------------- queries
    def _require(self, *cameras: str) -> None:
        for camera in cameras:
            if camera not in self.cameras:
                raise ValueError(f"unknown camera {camera!r}; the topology has {list(self.cameras)}")

    def grouped(self, units: Mapping[str, str]) -> CameraTopology:
        """This topology with groups of cameras taken as one camera each (the site stage's fused
        groups): ``units`` maps a camera to its group's id; cameras it leaves out stay as they are.
        Overlaps inside a group go; one with a camera outside becomes the group's. A transition
        inside a group becomes the group's window to itself (leaving its view and coming back), and
        windows that now join the same two units become one spanning them all.

        >>> topology = CameraTopology.model_validate(
        ...     {"cameras": ["a", "b", "c"], "overlaps": [["a", "b"]],
        ...      "transitions": {"a->c": [5, 10], "b->c": [8, 20]}})
        >>> merged = topology.grouped({"a": "a+b", "b": "a+b"})
        >>> merged.cameras, sorted(merged.overlaps), dict(merged.transitions)
        (('a+b', 'c'), [], {('a+b', 'c'): (5.0, 20.0)})
        """
        unit = {camera: units.get(camera, camera) for camera in self.cameras}
        clash = sorted(set(units.values()) & (set(self.cameras) - set(units)))
        if clash:
            raise ValueError(f"group ids {clash} are also the ids of cameras outside the groups")
        cameras = tuple(dict.fromkeys(unit.values()))
        overlaps = {(unit[a], unit[b]) for a, b in self.overlaps if unit[a] != unit[b]}
        windows: dict[CameraPair, Window] = {}
        for (a, b), (low, high) in self.transitions.items():
            pair = (unit[a], unit[b])
            known = windows.get(pair)
            windows[pair] = (low, high) if known is None else (min(known[0], low), max(known[1], high))
        return CameraTopology(cameras=cameras, overlaps=frozenset(overlaps), transitions=windows)

    def overlapping(self, a: str, b: str) -> bool:
        """Whether two different cameras see common ground (a camera is not said to overlap itself)."""
        self._require(a, b)
        return (a, b) in self.overlaps or (b, a) in self.overlaps

    def transit_window(self, from_camera: str, to_camera: str) -> Window | None:
        """``(min_seconds, max_seconds)`` from leaving ``from_camera`` to entering ``to_camera``, if known."""
        self._require(from_camera, to_camera)
        return self.transitions.get((from_camera, to_camera))

    def plausible(self, from_camera: str, to_camera: str, gap_seconds: float, *, slack: float = 2.0) -> bool:
        """Whether one object can leave ``from_camera`` and appear in ``to_camera`` ``gap_seconds`` later.

        The same camera or two overlapping cameras: any gap up to ``slack`` (negative ones
        included, the object being in both views at once). Otherwise, and for longer gaps, a
        transition window widened by ``slack`` on both sides must contain the gap.
        """
        self._require(from_camera, to_camera)
        if not math.isfinite(gap_seconds):
            raise ValueError(f"gap_seconds must be finite, got {gap_seconds}")
        if not (slack >= 0 and math.isfinite(slack)):
            raise ValueError(f"slack must be finite and >= 0, got {slack}")
        if (from_camera == to_camera or self.overlapping(from_camera, to_camera)) and gap_seconds <= slack:
            return True
        window = self.transitions.get((from_camera, to_camera))
        return window is not None and window[0] - slack <= gap_seconds <= window[1] + slack

    def neighbours(
        self, camera: str, *, direction: Literal["both", "outgoing", "incoming"] = "both"
    ) -> tuple[str, ...]:
        """Other cameras linked to ``camera`` by an overlap or a transition, in camera order.

        ``direction`` limits transitions to those leaving (``outgoing``) or entering
        (``incoming``) ``camera``; overlaps count in every direction.
        """
        self._require(camera)
        if direction not in ("both", "outgoing", "incoming"):
            raise ValueError(f"direction must be 'both', 'outgoing' or 'incoming', got {direction!r}")
        linked = {other for pair in self.overlaps if camera in pair for other in pair}
        for first, second in self.transitions:
            if first == camera and direction != "incoming":
                linked.add(second)
            if second == camera and direction != "outgoing":
                linked.add(first)
        linked.discard(camera)
        return tuple(name for name in self.cameras if name in linked)

    def connected(self, a: str, b: str) -> bool:
        """Whether some chain of overlaps and transitions (taken either way) joins ``a`` and ``b``.

        Cameras two hops apart have no window of their own (an object may stop on the way), but
        an object can go from one to the other through the cameras between them.
        """
        self._require(a, b)
        group = self._group or self._linked_groups()  # empty only when built without validation
        return group[a] == group[b]

    def check(self, camera_ids: Iterable[str] | None = None) -> list[str]:
        """Warnings about cameras through which cross-camera identities cannot be linked.

        Covers ``camera_ids`` (default: the topology's cameras): ids the topology does not know,
        and isolated cameras (no overlap and no transition to or from another camera).
        """
        ids = list(self.cameras if camera_ids is None else camera_ids)
        warnings = []
        for camera in dict.fromkeys(ids):
            if camera not in self.cameras:
                warnings.append(
                    f"camera {camera!r} is not in the topology: "
                    "cross-camera identities cannot be linked through it"
                )
            elif not self.neighbours(camera):
                warnings.append(
                    f"camera {camera!r} has no overlaps and no transitions to or from other cameras: "
                    "cross-camera identities cannot be linked through it"
                )
        return warnings

    # ------------------------------------------------------------------------------ text
    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON that ``CameraTopology.from_json`` (or ``model_validate_json``) reads back."""
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> CameraTopology:
        return cls.model_validate_json(text)


# ------------------------------------------------------------------------------- geometry
def overlaps_from_geometry(
    cameras: Sequence[Camera], max_range_m: float = 40.0, min_area_m2: float = 1.0
) -> frozenset[CameraPair]:
    """Pairs of cameras whose visible ground, each within ``max_range_m``, overlaps by ``min_area_m2``.

    Cameras without ground calibration are left out (they overlap nothing here). Pairs are
    sorted tuples.

    >>> from crossview.multicam.geometry import look_at_camera
    >>> a = look_at_camera("a", 640, 480, 60, position=(0, 0, 5), target=(0, 10, 0))
    >>> b = look_at_camera("b", 640, 480, 60, position=(0, 20, 5), target=(0, 10, 0))
    >>> far = look_at_camera("far", 640, 480, 60, position=(500, 0, 5), target=(500, 10, 0))
    >>> sorted(overlaps_from_geometry([a, b, far]))
    [('a', 'b')]
    """
    if not min_area_m2 >= 0:
        raise ValueError(f"min_area_m2 must be >= 0, got {min_area_m2}")
    ids = [camera.id for camera in cameras]
    duplicates = sorted({camera for camera in ids if ids.count(camera) > 1})
    if duplicates:
        raise ValueError(f"camera ids must be unique, repeated: {duplicates}")
    polygons = {
        camera.id: GroundProjector(camera).visible_ground(max_range_m)
        for camera in cameras
        if camera.has_ground_calibration
    }
    named = [(name, polygon) for name, polygon in polygons.items() if len(polygon) >= 3]
    pairs = set()
    for index, (first, polygon_a) in enumerate(named):
        low_a, high_a = polygon_a.min(axis=0), polygon_a.max(axis=0)
        for second, polygon_b in named[index + 1 :]:
            if np.any(polygon_b.max(axis=0) < low_a) or np.any(polygon_b.min(axis=0) > high_a):
                continue
            area = polygon_area(convex_intersection(polygon_a, polygon_b))
            if area >= min_area_m2 and area > 0:
                pairs.add((first, second) if first < second else (second, first))
    return frozenset(pairs)


# ------------------------------------------------------------------------------- learning
def _visit_columns(
    visits: Iterable[Sequence[Any]],
) -> tuple[NDArray[np.int64], list[str], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    identities: dict[Hashable, int] = {}
    camera_index: dict[str, int] = {}
    ids, cams, starts, ends = [], [], [], []
    for row, visit in enumerate(visits):
        if len(visit) != 4:
            raise ValueError(f"visit {row} must be (global_id, camera_id, t_start, t_end), got {visit!r}")
        identity, camera, start, end = visit
        if not isinstance(camera, str) or not camera:
            raise ValueError(f"visit {row}: camera_id must be a non-empty string, got {camera!r}")
        start, end = float(start), float(end)
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"visit {row}: times must be finite, got ({start}, {end})")
        if end < start:
            raise ValueError(f"visit {row}: t_end {end} is before t_start {start}")
        ids.append(identities.setdefault(identity, len(identities)))
        cams.append(camera_index.setdefault(camera, len(camera_index)))
        starts.append(start)
        ends.append(end)
    return (
        np.asarray(ids, dtype=np.int64),
        list(camera_index),
        np.asarray(cams, dtype=np.int64),
        np.asarray(starts, dtype=np.float64),
        np.asarray(ends, dtype=np.float64),
    )


def transition_gaps(visits: Iterable[Sequence[Any]]) -> dict[CameraPair, NDArray[np.float64]]:
    """Every observed gap per directed camera pair, from ``(global_id, camera_id, t_start, t_end)`` rows.

    Each global id's visits are sorted by time; each consecutive two in different cameras give
    ``next.t_start - previous.t_end`` (negative when the sightings overlap in time). Consecutive
    visits in the same camera give no gap.

    >>> gaps = transition_gaps([(1, "a", 0, 5), (1, "b", 8, 9), (2, "a", 0, 2), (2, "b", 6, 7)])
    >>> {pair: values.tolist() for pair, values in gaps.items()}
    {('a', 'b'): [3.0, 4.0]}
    """
    ids, names, cams, starts, ends = _visit_columns(visits)
    if len(ids) < 2:
        return {}
    order = np.lexsort((ends, starts, ids))
    ids, cams, starts, ends = ids[order], cams[order], starts[order], ends[order]
    linked = (ids[1:] == ids[:-1]) & (cams[1:] != cams[:-1])
    sources, targets = cams[:-1][linked], cams[1:][linked]
    gaps = (starts[1:] - ends[:-1])[linked]
    keys = sources * len(names) + targets
    result: dict[CameraPair, NDArray[np.float64]] = {}
    for key in np.unique(keys):
        source, target = divmod(int(key), len(names))
        result[(names[source], names[target])] = np.sort(gaps[keys == key])
    return dict(sorted(result.items()))


def learn_transitions(
    visits: Iterable[Sequence[Any]],
    *,
    quantiles: tuple[float, float] = (0.02, 0.98),
    margin_seconds: float = 2.0,
    min_samples: int = 3,
) -> dict[CameraPair, Window]:
    """Transit windows per directed camera pair, learned from associated tracks.

    ``visits``: ``(global_id, camera_id, t_start, t_end)`` rows (seconds). Gaps come from
    ``transition_gaps``; negative ones (the object seen in both cameras at once) are evidence of
    overlap, not of transit, and are left out. A pair's window is the ``quantiles`` of its gaps
    widened by ``margin_seconds`` each side (the lower end not below 0). Pairs with fewer than
    ``min_samples`` non-negative gaps are left out: too few to trust.

    >>> visits = [(i, "a", 0, 10) for i in range(5)] + [(i, "b", 10 + 20 + i, 60) for i in range(5)]
    >>> learn_transitions(visits, quantiles=(0, 1), margin_seconds=1)
    {('a', 'b'): (19.0, 25.0)}
    """
    low_q, high_q = quantiles
    if not 0 <= low_q < high_q <= 1:
        raise ValueError(f"quantiles must satisfy 0 <= low < high <= 1, got {quantiles}")
    if not (margin_seconds >= 0 and math.isfinite(margin_seconds)):
        raise ValueError(f"margin_seconds must be finite and >= 0, got {margin_seconds}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    windows: dict[CameraPair, Window] = {}
    for pair, gaps in transition_gaps(visits).items():
        transits = gaps[gaps >= 0]
        if len(transits) < min_samples:
            continue
        low, high = np.quantile(transits, [low_q, high_q])
        windows[pair] = (max(0.0, float(low) - margin_seconds), float(high) + margin_seconds)
    return windows


def overlaps_from_visits(visits: Iterable[Sequence[Any]], *, min_samples: int = 3) -> frozenset[CameraPair]:
    """Camera pairs in which at least ``min_samples`` objects were seen in both at once.

    Counted over consecutive visits of each global id (see ``transition_gaps``), both directions
    together.

    >>> visits = [(i, "a", 0, 10) for i in range(3)] + [(i, "b", 8, 20) for i in range(3)]
    >>> sorted(overlaps_from_visits(visits))
    [('a', 'b')]
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    counts: dict[CameraPair, int] = {}
    for (first, second), gaps in transition_gaps(visits).items():
        pair = (first, second) if first < second else (second, first)
        counts[pair] = counts.get(pair, 0) + int(np.sum(gaps < 0))
    return frozenset(pair for pair, count in counts.items() if count >= min_samples)


def learn_topology(
    cameras: Sequence[Camera],
    visits: Iterable[Sequence[Any]] = (),
    *,
    max_range_m: float = 40.0,
    min_area_m2: float = 1.0,
    observed_overlaps: bool = True,
    quantiles: tuple[float, float] = (0.02, 0.98),
    margin_seconds: float = 2.0,
    min_samples: int = 3,
) -> CameraTopology:
    """A topology from calibration and associated tracks.

    Overlaps: ``overlaps_from_geometry`` over the calibrated cameras, plus (when
    ``observed_overlaps``) pairs seen at the same time by at least ``min_samples`` objects.
    Transitions: ``learn_transitions``. Every camera id in ``visits`` must be one of ``cameras``.
    """
    rows = [tuple(visit) for visit in visits]
    ids = tuple(camera.id for camera in cameras)
    unknown = sorted({str(row[1]) for row in rows if len(row) == 4 and row[1] not in ids})
    if unknown:
        raise ValueError(f"visits name camera(s) {unknown} that are not among the cameras {list(ids)}")
    overlaps = set(overlaps_from_geometry(cameras, max_range_m=max_range_m, min_area_m2=min_area_m2))
    if observed_overlaps:
        overlaps |= overlaps_from_visits(rows, min_samples=min_samples)
    transitions = learn_transitions(
        rows, quantiles=quantiles, margin_seconds=margin_seconds, min_samples=min_samples
    )
    return CameraTopology(cameras=ids, overlaps=frozenset(overlaps), transitions=transitions)
