"""Cross-camera association: per-camera tracklets become global identities, offline or online.

Evidence between two tracklets (``pair_evidence``), each term kept so a decision can be explained:

* **appearance**: cosine distance ``1 - cos`` of their aggregated embeddings;
* **position**: while both are visible at once in two cameras that see common ground, the median
  ground distance between them (one object is at one place); beyond ``position_gate_m`` they are
  two objects, closer it lowers the cost;
* **time and topology**: one object cannot be in two cameras at once unless those overlap, nor
  twice in one camera at once; moving between cameras takes a plausible transit time
  (``CameraTopology.plausible``); pairs of cameras that no chain of links joins get a penalty;
* **class**: objects of different classes never match, or, with ``class_mismatch_penalty`` (for
  classes guessed from box size), cost that much more.

``cost = appearance_weight * appearance + position_weight * (distance / gate - 0.5)
+ unknown_link_penalty + class_mismatch_penalty`` where each term applies, ``inf`` where a
constraint forbids the pair.

**Offline** (``associate``): constrained agglomerative clustering. Clusters merge cheapest
first while their linkage cost is at most ``max_cost``, and only if the merged cluster stays
physically possible: no two members at once in non-overlapping cameras (or in one camera), close
positions wherever two members are co-visible, and a plausible transit between consecutive visits.
The linkage is the average pair cost (``linkage="average"``) or the cheapest pair (``"single"``):
single linkage follows an object along its chain of visits even when its first and last look
apart (lighting differs from camera to camera), and the constraints keep it from chaining two
objects that were ever seen apart at once.

**Online** (``OnlineAssociator``): tracklets are assigned once, when they are reported (after the
tracker confirmed them); the cheapest feasible identity within ``max_cost`` (Hungarian over the
tracklets of one call) is joined, otherwise a new global id is minted. An assigned id never
changes, so downstream consumers can rely on it.

``max_cost="auto"`` calibrates the threshold from the data itself: two tracklets of one camera
that overlap in time are certainly different objects, so the low quantile of their appearance
distances tells how close different objects look with this embedder.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from crossview.multicam.topology import CameraTopology

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class Tracklet:
    """One confirmed track of one camera, summarised for association.

    ``times`` (seconds, strictly increasing) and ``ground`` (``(T, 2)`` metres, ``NaN`` rows where
    unknown) sample its trajectory; ``embedding`` is its aggregated appearance (L2-normalised here).
    ``clear`` (``(T,)`` booleans, all true when omitted) marks the samples whose box was whole: not
    cut by the image border nor touching another object's box. Only those are trusted to place the
    object when two cameras' positions are compared, since a partly hidden box is centred on its
    visible part, up to half a car's length off.
    """

    camera_id: str
    track_id: int
    times: FloatArray
    ground: FloatArray
    embedding: NDArray[np.float32]
    class_id: int = 0
    clear: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        ground = np.asarray(self.ground, dtype=np.float64)
        name = f"tracklet {self.camera_id}/{self.track_id}"
        if times.size == 0:
            raise ValueError(f"{name} has no samples")
        if ground.shape != (times.size, 2):
            raise ValueError(f"{name}: ground must have shape ({times.size}, 2), got {ground.shape}")
        if not np.all(np.isfinite(times)):
            raise ValueError(f"{name}: times must be finite")
        if np.any(np.diff(times) <= 0):
            bad = int(np.flatnonzero(np.diff(times) <= 0)[0])
            raise ValueError(
                f"{name}: timestamps out of order at sample {bad + 1} ({times[bad]} then {times[bad + 1]})"
            )
        embedding = np.asarray(self.embedding, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(embedding))
        if embedding.size == 0 or not math.isfinite(norm) or norm == 0:
            raise ValueError(f"{name}: embedding must be a finite non-zero vector")
        clear = np.ones(times.size, bool) if self.clear is None else np.asarray(self.clear, bool)
        if clear.shape != times.shape:
            raise ValueError(f"{name}: clear must have shape ({times.size},), got {clear.shape}")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "ground", ground)
        object.__setattr__(self, "embedding", embedding / norm)
        object.__setattr__(self, "clear", clear)

    @property
    def placed(self) -> NDArray[np.bool_]:
        """Samples whose position is trusted: known, and from a whole box."""
        assert self.clear is not None  # set in __post_init__
        placed: NDArray[np.bool_] = self.clear & np.all(np.isfinite(self.ground), axis=1)
        return placed

    @property
    def t_start(self) -> float:
        return float(self.times[0])

    @property
    def t_end(self) -> float:
        return float(self.times[-1])

    @property
    def key(self) -> tuple[str, int]:
        return (self.camera_id, self.track_id)


class AssociationConfig(BaseModel):
    """Weights, gates and the merge threshold of cross-camera association."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    appearance_weight: float = Field(default=1.0, ge=0)
    position_weight: float = Field(default=0.4, ge=0)
    position_gate_m: float = Field(default=2.5, gt=0)
    min_shared_samples: int = Field(default=3, ge=1)
    unknown_link_penalty: float = Field(
        default=0.15, ge=0, description="for cameras that no chain of overlaps and transitions joins"
    )
    class_mismatch_penalty: float | None = Field(
        default=None,
        ge=0,
        description="None: different classes never match (classes from a detector); a number: they "
        "cost this much more (classes guessed from box size, which occlusion fools)",
    )
    overlap_tolerance_s: float = Field(
        default=0.5, ge=0, description="co-visibility shorter than this is ignored"
    )
    transit_slack_s: float = Field(default=2.0, ge=0)
    linkage: Literal["average", "single"] = Field(
        default="average", description="offline clustering: average pair cost, or cheapest pair"
    )
    max_cost: float | Literal["auto"] = "auto"
    auto_quantile: float = Field(default=0.05, gt=0, lt=1)
    auto_fallback: float = Field(default=0.3, gt=0)
    auto_min_pairs: int = Field(default=10, ge=1)


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """Why two tracklets are (not) the same object: each term, the total, and a refusal reason."""

    appearance: float
    position_m: float  # median ground distance while co-visible; NaN when not measured
    gap_s: float  # later start minus earlier end (negative: seen at once)
    link_penalty: float
    cost: float  # inf when forbidden
    reason: str = ""  # why forbidden, "" otherwise

    @property
    def feasible(self) -> bool:
        return math.isfinite(self.cost)


def pair_evidence(
    first: Tracklet, second: Tracklet, topology: CameraTopology | None, config: AssociationConfig
) -> PairEvidence:
    """The evidence that ``first`` and ``second`` are one object (see the module docstring)."""
    appearance = float(1.0 - np.dot(first.embedding, second.embedding))
    earlier, later = (first, second) if first.t_start <= second.t_start else (second, first)
    gap = later.t_start - earlier.t_end
    shared = min(first.t_end, second.t_end) - max(first.t_start, second.t_start)

    def refuse(reason: str, position: float = math.nan) -> PairEvidence:
        return PairEvidence(appearance, position, gap, 0.0, math.inf, reason)

    class_penalty = 0.0
    if first.class_id != second.class_id:
        if config.class_mismatch_penalty is None:
            return refuse(f"classes differ ({first.class_id} vs {second.class_id})")
        class_penalty = config.class_mismatch_penalty
    same_camera = first.camera_id == second.camera_id
    overlapping = (
        not same_camera and topology is not None and topology.overlapping(first.camera_id, second.camera_id)
    )
    position = math.nan
    cost = config.appearance_weight * appearance + class_penalty
    if same_camera and shared >= 0:  # sharing even one timestamp is two boxes at once
        return refuse("seen at once in the same camera")
    if shared > config.overlap_tolerance_s:
        if not overlapping:
            return refuse(f"seen at once in {first.camera_id} and {second.camera_id}, which do not overlap")
        position = _co_visible_distance(first, second, config.min_shared_samples)
        if math.isfinite(position):
            if position > config.position_gate_m:
                return refuse(f"{position:.1f} m apart while seen at once", position)
            cost += config.position_weight * (position / config.position_gate_m - 0.5)
        return PairEvidence(appearance, position, gap, 0.0, cost)
    penalty = 0.0
    if not same_camera and not overlapping:
        window = None if topology is None else topology.transit_window(earlier.camera_id, later.camera_id)
        if window is None:
            if topology is None or not topology.connected(earlier.camera_id, later.camera_id):
                penalty = config.unknown_link_penalty
        elif not topology.plausible(  # type: ignore[union-attr]
            earlier.camera_id, later.camera_id, max(gap, 0.0), slack=config.transit_slack_s
        ):
            return refuse(
                f"transit {earlier.camera_id}->{later.camera_id} of {gap:.1f} s is outside "
                f"[{window[0]:.1f}, {window[1]:.1f}] s"
            )
    return PairEvidence(appearance, position, gap, penalty, cost + penalty)


def _co_visible_distance(first: Tracklet, second: Tracklet, min_samples: int, reach_s: float = 1.0) -> float:
    """Median ground distance at ``first``'s placed samples inside the shared interval.

    ``second`` is interpolated between its own placed samples, at those of ``first`` within
    ``reach_s`` of one; NaN (no evidence) when fewer than ``min_samples`` such pairs exist.
    """
    start, stop = max(first.t_start, second.t_start), min(first.t_end, second.t_end)
    placed = second.placed
    if placed.sum() < 2:
        return math.nan
    anchors = second.times[placed]
    mine = (first.times >= start) & (first.times <= stop) & first.placed
    times = first.times[mine]
    slot = np.clip(np.searchsorted(anchors, times), 1, anchors.size - 1)
    nearest = np.minimum(np.abs(times - anchors[slot - 1]), np.abs(anchors[slot] - times))
    near = nearest <= reach_s
    if near.sum() < min_samples:
        return math.nan
    times = times[near]
    other = np.column_stack([np.interp(times, anchors, second.ground[placed, axis]) for axis in range(2)])
    return float(np.median(np.linalg.norm(first.ground[mine][near] - other, axis=1)))


def auto_threshold(tracklets: Sequence[Tracklet], config: AssociationConfig) -> float:
    """``max_cost`` from the data: a low quantile of the appearance cost of certainly different objects.

    Tracklets of one camera seen at once are different objects; the ``auto_quantile`` of their
    appearance costs is how close different objects can look. Falls back to ``auto_fallback``
    when fewer than ``auto_min_pairs`` such pairs exist.
    """
    if config.max_cost != "auto":
        return float(config.max_cost)
    costs = []
    for i, first in enumerate(tracklets):
        for second in tracklets[i + 1 :]:
            if first.camera_id != second.camera_id or first.class_id != second.class_id:
                continue
            shared = min(first.t_end, second.t_end) - max(first.t_start, second.t_start)
            if shared > config.overlap_tolerance_s:
                costs.append(
                    config.appearance_weight * (1.0 - float(np.dot(first.embedding, second.embedding)))
                )
    if len(costs) < config.auto_min_pairs:
        return config.auto_fallback
    return float(np.quantile(costs, config.auto_quantile))


@dataclass(frozen=True, slots=True)
class Merge:
    """One step of offline clustering: two clusters joined at their linkage cost."""

    left: tuple[tuple[str, int], ...]
    right: tuple[tuple[str, int], ...]
    cost: float


@dataclass(frozen=True, slots=True)
class Association:
    """Global ids aligned with the input tracklets, the threshold used and the merges made."""

    global_ids: NDArray[np.int64]
    threshold: float
    merges: list[Merge] = field(default_factory=list)

    def mapping(self, tracklets: Sequence[Tracklet]) -> dict[tuple[str, int], int]:
        """``(camera_id, track_id) -> global id``."""
        return {t.key: int(g) for t, g in zip(tracklets, self.global_ids.tolist(), strict=True)}


def associate(
    tracklets: Sequence[Tracklet],
    topology: CameraTopology | None = None,
    config: AssociationConfig | None = None,
) -> Association:
    """Offline association of a whole recording: constrained agglomerative clustering.

    >>> import numpy as np
    >>> def seen(camera, start, x, colour):
    ...     times = start + np.arange(5.0)
    ...     return Tracklet(camera, 1, times, np.column_stack([x + times, 0 * times]), colour)
    >>> topo = CameraTopology(cameras=("a", "b"), transitions={("a", "b"): (1.0, 10.0)})
    >>> red, blue = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    >>> found = associate([seen("a", 0, 0, red), seen("b", 8, 0, red), seen("b", 30, 0, blue)], topo)
    >>> found.global_ids.tolist()
    [0, 0, 1]
    """
    config = config or AssociationConfig()
    _warn_unlinked(tracklets, topology)
    n = len(tracklets)
    threshold = auto_threshold(tracklets, config)
    if n == 0:
        return Association(np.zeros(0, np.int64), threshold)
    costs = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(i + 1, n):
            costs[i, j] = costs[j, i] = pair_evidence(tracklets[i], tracklets[j], topology, config).cost
    clusters: dict[int, list[int]] = {i: [i] for i in range(n)}
    # linkage cost between clusters, kept by Lance-Williams (average: inf once any pair is forbidden)
    linkage = costs.copy()
    np.fill_diagonal(linkage, np.inf)
    merges: list[Merge] = []
    while True:
        flat = int(np.argmin(linkage))
        a, b = divmod(flat, n)
        best = linkage[a, b]
        if not best <= threshold:
            break
        merged = clusters[a] + clusters[b]
        if not _feasible([tracklets[i] for i in merged], topology, config):
            linkage[a, b] = linkage[b, a] = np.inf
            continue
        merges.append(
            Merge(
                tuple(tracklets[i].key for i in clusters[a]),
                tuple(tracklets[i].key for i in clusters[b]),
                best,
            )
        )
        size_a, size_b = len(clusters[a]), len(clusters[b])
        if config.linkage == "single":
            row = np.minimum(linkage[a], linkage[b])
        else:
            row = (size_a * linkage[a] + size_b * linkage[b]) / (size_a + size_b)
        linkage[a], linkage[:, a] = row, row
        linkage[a, a] = np.inf
        linkage[b], linkage[:, b] = np.inf, np.inf
        clusters[a] = merged
        del clusters[b]
    global_ids = np.empty(n, np.int64)
    ordered = sorted(clusters.values(), key=lambda members: min(tracklets[i].t_start for i in members))
    for number, members in enumerate(ordered):
        global_ids[members] = number
    return Association(global_ids, threshold, merges)


def _feasible(
    members: Sequence[Tracklet], topology: CameraTopology | None, config: AssociationConfig
) -> bool:
    """Whether one object could have produced all ``members``: co-visibility and consecutive transits."""
    ordered = sorted(members, key=lambda t: t.t_start)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            gap = second.t_start - first.t_end
            if gap > 0 or (gap >= -config.overlap_tolerance_s and first.camera_id != second.camera_id):
                continue  # not co-visible: checked as consecutive visits below
            if not pair_evidence(first, second, topology, config).feasible:
                return False
    # consecutive visits: each tracklet against the one that ended last before it started
    for i, current in enumerate(ordered[1:], start=1):
        before = [t for t in ordered[:i] if t.t_end - config.overlap_tolerance_s <= current.t_start]
        if not before:
            continue
        previous = max(before, key=lambda t: t.t_end)
        if current.t_start - previous.t_end < -config.overlap_tolerance_s:
            continue
        if not pair_evidence(previous, current, topology, config).feasible:
            return False
    return True


def _warn_unlinked(tracklets: Sequence[Tracklet], topology: CameraTopology | None) -> None:
    cameras = sorted({t.camera_id for t in tracklets})
    if len(cameras) < 2:
        return
    if topology is None:
        warnings.warn(
            "no camera topology given: cross-camera links rest on appearance alone "
            "(give overlaps and transit windows, or learn them)",
            stacklevel=3,
        )
        return
    for message in topology.check(cameras):
        warnings.warn(message, stacklevel=3)


class OnlineAssociator:
    """Assigns each reported tracklet a global id once, as the recording goes on.

    ``assign(tracklets)`` takes the tracklets that became ready since the last call (confirmed,
    or finished) and returns their global ids (tracklets of one call may also share a new
    identity, as when overlapping cameras start tracking one object together);
    ``update(tracklet)`` refreshes the trajectory and appearance of an already assigned one (its
    id does not change). A fixed ``max_cost`` is
    needed (``"auto"`` uses ``auto_fallback`` until ``calibrate`` is called with enough tracklets).

    >>> import numpy as np
    >>> online = OnlineAssociator(config=AssociationConfig(max_cost=0.3))
    >>> one = Tracklet("a", 1, np.arange(3.0), np.zeros((3, 2)), np.array([1.0, 0.0]))
    >>> two = Tracklet("a", 2, np.arange(5.0, 8.0), np.zeros((3, 2)), np.array([0.9, 0.1]))
    >>> online.assign([one]), online.assign([two])
    ([0], [0])
    """

    def __init__(
        self, topology: CameraTopology | None = None, config: AssociationConfig | None = None
    ) -> None:
        self.topology = topology
        self.config = config or AssociationConfig()
        self.threshold = (
            self.config.auto_fallback if self.config.max_cost == "auto" else float(self.config.max_cost)
        )
        self._members: dict[int, list[Tracklet]] = {}  # live identities, by number
        self._ids: dict[tuple[str, int], int] = {}
        self._minted = 0

    def calibrate(self, tracklets: Sequence[Tracklet]) -> float:
        """Set the threshold from ``tracklets`` as ``associate`` does with ``max_cost="auto"``."""
        self.threshold = auto_threshold(tracklets, self.config)
        return self.threshold

    @property
    def identities(self) -> int:
        """Identities minted so far (forgotten ones included)."""
        return self._minted

    @property
    def live_identities(self) -> int:
        """Identities still remembered (candidates for new tracklets)."""
        return len(self._members)

    def forget_before(self, time_s: float) -> int:
        """Forget the identities last seen before ``time_s``: new tracklets can no longer join them,
        and they cost nothing any more. How many were forgotten. A long run keeps only the
        identities of its recent past (``SiteFile.memory_s``), so its memory and its cost per
        tracklet stay flat."""
        stale = [
            number for number, members in self._members.items() if max(m.t_end for m in members) < time_s
        ]
        for number in stale:
            for member in self._members.pop(number):
                self._ids.pop(member.key, None)
        return len(stale)

    def global_id(self, camera_id: str, track_id: int) -> int | None:
        return self._ids.get((camera_id, track_id))

    def assign(self, tracklets: Sequence[Tracklet]) -> list[int]:
        """Global ids of new ``tracklets`` (joining an identity or minting one), in order."""
        fresh = [t for t in tracklets if t.key not in self._ids]
        if fresh:
            known = list(self._members)
            costs = np.full((len(fresh), len(known)), np.inf)
            for i, tracklet in enumerate(fresh):
                for column, number in enumerate(known):
                    costs[i, column] = self._identity_cost(tracklet, self._members[number])
            joined: list[int] = []  # identities this call gave tracklets to, in order
            if costs.size:
                finite = np.where(np.isfinite(costs), costs, 1e9)
                rows, columns = linear_sum_assignment(finite)
                for i, column in zip(rows.tolist(), columns.tolist(), strict=True):
                    if costs[i, column] <= self.threshold:
                        self._join(fresh[i], known[column])
                        joined.append(known[column])
            # the rest, earliest first, may join an identity this call joined or minted: two
            # cameras that see one object start their tracks together, and both are reported at
            # once (the one-to-one assignment above gave it to only one of them)
            for tracklet in sorted(fresh, key=lambda t: t.t_start):
                if tracklet.key in self._ids:
                    continue
                cost, best = min(
                    ((self._identity_cost(tracklet, self._members[g]), g) for g in dict.fromkeys(joined)),
                    default=(math.inf, self._minted),
                )
                best = best if cost <= self.threshold else self._minted
                self._join(tracklet, best)
                joined.append(best)
        return [self._ids[t.key] for t in tracklets]

    def assignments(self) -> dict[tuple[str, int], int]:
        """Every remembered tracklet's identity now, by ``(camera, track)``: to compare with later."""
        return dict(self._ids)

    def moved(self, before: Mapping[tuple[str, int], int]) -> list[tuple[Tracklet, int]]:
        """The tracklets whose identity changed since ``before`` (``assignments()``), with the new one."""
        changed = {key for key, number in self._ids.items() if before.get(key, number) != number}
        return [
            (member, self._ids[member.key])
            for number in sorted({self._ids[key] for key in changed})
            for member in self._members[number]
            if member.key in changed
        ]

    def update(self, tracklet: Tracklet) -> int:
        """Replace the stored state of an assigned tracklet (longer trajectory, better embedding).

        Ids are kept unless the new state proves the identity wrong: when it is now seen at once
        with another member where one object cannot be (the same camera, cameras that do not
        overlap, or far apart in overlapping ones), the later-starting of the two leaves the
        identity and gets a new global id. Returns the tracklet's (possibly new) id.
        """
        number = self._ids.get(tracklet.key)
        if number is None:
            raise ValueError(f"tracklet {tracklet.camera_id}/{tracklet.track_id} was never assigned")
        members = self._members[number]
        members[:] = [tracklet if m.key == tracklet.key else m for m in members]
        while True:
            current = self._members[self._ids[tracklet.key]]
            clash = next((m for m in current if m.key != tracklet.key and self._conflict(tracklet, m)), None)
            if clash is None:
                return self._ids[tracklet.key]
            leaving = tracklet if tracklet.t_start >= clash.t_start else clash
            current[:] = [m for m in current if m.key != leaving.key]
            self._join(leaving, self._minted)

    def _conflict(self, first: Tracklet, second: Tracklet) -> bool:
        shared = min(first.t_end, second.t_end) - max(first.t_start, second.t_start)
        if first.camera_id == second.camera_id:
            return shared >= 0
        return (
            shared > self.config.overlap_tolerance_s
            and not pair_evidence(first, second, self.topology, self.config).feasible
        )

    def _identity_cost(self, tracklet: Tracklet, members: list[Tracklet]) -> float:
        evidence = [pair_evidence(tracklet, member, self.topology, self.config) for member in members]
        if not all(e.feasible for e in evidence):
            # a forbidden pair only matters if co-visible or the most recent visit before this one
            previous = max(members, key=lambda m: m.t_end)
            for member, e in zip(members, evidence, strict=True):
                if not e.feasible and (member is previous or self._conflict(tracklet, member)):
                    return math.inf
            evidence = [e for e in evidence if e.feasible]
        if not evidence:
            return math.inf
        costs = [e.cost for e in evidence]
        return float(min(costs) if self.config.linkage == "single" else np.mean(costs))

    def restore(self, members: Sequence[Tracklet]) -> int:
        """Add an identity known from before (its member tracklets, e.g. read back from storage
        after a restart) so that later tracklets can join it; its number.

        >>> online = OnlineAssociator(config=AssociationConfig(max_cost=0.3))
        >>> red = np.array([1.0, 0.0])
        >>> online.restore([Tracklet("a", 1, np.arange(3.0), np.zeros((3, 2)), red)])
        0
        >>> online.assign([Tracklet("a", 2, np.arange(5.0, 8.0), np.zeros((3, 2)), red)])
        [0]
        """
        if not members:
            raise ValueError("an identity needs at least one tracklet")
        taken = [t.key for t in members if t.key in self._ids]
        if taken:
            raise ValueError(f"tracklets already have an identity: {taken}")
        number = self._minted
        for tracklet in members:
            self._join(tracklet, number)
        return number

    def _join(self, tracklet: Tracklet, number: int) -> None:
        if number == self._minted:
            self._members[number] = []
            self._minted += 1
        self._members[number].append(tracklet)
        self._ids[tracklet.key] = number
