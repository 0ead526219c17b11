"""The parking flow: index every vehicle entry; on each exit, find its entry and report the session.

Entries are vehicle tracklets of the entry cameras, indexed with their metadata. When a vehicle
tracklet appears in an exit camera, the index is searched by its appearance among entries that
started before it (a filter inside the index), then re-ranked by context: a stay shorter than
the quickest drive from gate to exit, or longer than ``max_stay_s``, is implausible. A matching
global identity from cross-camera association (the same object followed through the site) is
used when the two agree, and reported. Each entry closes at most one session, and each global
identity exits once (a fragmented exit track does not open a second session).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crossview.multicam.association import Tracklet
from crossview.search.engine import Hit, SearchEngine
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter, VectorIndex


class ParkingConfig(BaseModel):
    """Which cameras watch the way in and out, and what a plausible stay is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_cameras: frozenset[str]
    exit_cameras: frozenset[str]
    vehicle_classes: frozenset[int] = frozenset({2})
    min_stay_s: float = Field(default=5.0, ge=0, description="quickest drive from entry to exit")
    max_stay_s: float = Field(default=7 * 86_400.0, gt=0)
    candidates: int = Field(default=20, ge=1)


@dataclass(frozen=True, slots=True)
class ParkingSession:
    """One vehicle's stay: where and when it entered and left, the cameras between, and why."""

    exit_camera: str
    exit_track: int
    exit_time: float
    entry_camera: str | None
    entry_track: int | None
    entry_time: float | None
    global_id: int | None
    path: tuple[str, ...]
    hits: tuple[Hit, ...]

    @property
    def matched(self) -> bool:
        return self.entry_track is not None

    @property
    def duration_s(self) -> float | None:
        return None if self.entry_time is None else self.exit_time - self.entry_time


class ParkingFlow:
    """Feeds on finished (or confirmed) tracklets; returns a session whenever a vehicle exits.

    >>> import numpy as np
    >>> flow = ParkingFlow(ParkingConfig(entry_cameras={"gate"}, exit_cameras={"exit"}, min_stay_s=1))
    >>> red = np.array([1.0, 0.0, 0.0])
    >>> flow.observe(Tracklet("gate", 4, np.arange(3.0), np.zeros((3, 2)), red, 2)) is None
    True
    >>> session = flow.observe(Tracklet("exit", 9, np.arange(50.0, 53.0), np.zeros((3, 2)), red, 2))
    >>> session.entry_track, session.entry_time, session.exit_time
    (4, 0.0, 50.0)
    """

    def __init__(self, config: ParkingConfig, index: VectorIndex | None = None) -> None:
        self.config = config
        self._index = index
        self._engine: SearchEngine | None = None
        self._next_id = 0
        self._entries: dict[int, Tracklet] = {}
        self._global_ids: dict[int, int | None] = {}
        self._closed: set[int] = set()
        self._exited: set[int] = set()  # global ids whose exit was reported
        self._paths: dict[int, list[tuple[float, str]]] = {}
        self.sessions: list[ParkingSession] = []

    def observe(self, tracklet: Tracklet, global_id: int | None = None) -> ParkingSession | None:
        """Record a tracklet: index it if it is a vehicle entry; answer with a session on an exit."""
        if global_id is not None:
            self._paths.setdefault(global_id, []).append((tracklet.t_start, tracklet.camera_id))
        if tracklet.class_id not in self.config.vehicle_classes:
            return None
        if tracklet.camera_id in self.config.entry_cameras:
            self._add_entry(tracklet, global_id)
            return None
        if tracklet.camera_id in self.config.exit_cameras:
            if global_id is not None and global_id in self._exited:
                return None  # another piece of an exit already reported (a fragmented track)
            session = self._match_exit(tracklet, global_id)
            self.sessions.append(session)
            if global_id is not None:
                self._exited.add(global_id)
            return session
        return None

    def _engine_for(self, dim: int) -> SearchEngine:
        if self._engine is None:
            index = self._index if self._index is not None else FaissIndex(None, dim, factory="Flat")
            entries = {
                (e, x): (self.config.min_stay_s, self.config.max_stay_s)
                for e in self.config.entry_cameras
                for x in self.config.exit_cameras
            }
            self._engine = SearchEngine(index, topology=entries)
        return self._engine

    def _add_entry(self, tracklet: Tracklet, global_id: int | None) -> None:
        engine = self._engine_for(tracklet.embedding.size)
        number = self._next_id
        self._next_id += 1
        finite = tracklet.ground[np.all(np.isfinite(tracklet.ground), axis=1)]
        x, y = (float(finite[0, 0]), float(finite[0, 1])) if len(finite) else (None, None)
        entry = Entry(
            camera_id=tracklet.camera_id,
            track_id=tracklet.track_id,
            global_id=-1 if global_id is None else global_id,
            class_id=tracklet.class_id,
            t_start=tracklet.t_start,
            t_end=tracklet.t_start,  # the moment of entry: context compares the exit with it
            x=x,
            y=y,
        )
        engine.index.add([number], tracklet.embedding[None, :], [entry])
        self._entries[number] = tracklet
        self._global_ids[number] = global_id

    def _match_exit(self, tracklet: Tracklet, global_id: int | None) -> ParkingSession:
        engine = self._engine_for(tracklet.embedding.size)
        path = self._path(global_id)
        unmatched = ParkingSession(
            tracklet.camera_id, tracklet.track_id, tracklet.t_start, None, None, None, global_id, path, ()
        )
        if engine.index.count() == 0:
            return unmatched
        hits = engine.search(
            embedding=tracklet.embedding,
            k=self.config.candidates,
            filter=Filter(
                cameras=self.config.entry_cameras,
                classes=self.config.vehicle_classes,
                time_range=(-np.inf, tracklet.t_start),
            ),
            candidates=self.config.candidates,
            query_camera=tracklet.camera_id,
            query_time=tracklet.t_start,
        )
        hits = [hit for hit in hits if hit.id not in self._closed]
        if global_id is not None:
            # the identity followed through the site outranks appearance alone when both exist
            same = [
                hit for hit in hits if self._global_ids.get(hit.id) == global_id and hit.verdict != "too_fast"
            ]
            if same:
                hits = same + [hit for hit in hits if hit not in same]
        if not hits:
            return unmatched
        best = hits[0]
        self._closed.add(best.id)
        entry = self._entries[best.id]
        return ParkingSession(
            tracklet.camera_id,
            tracklet.track_id,
            tracklet.t_start,
            entry.camera_id,
            entry.track_id,
            entry.t_start,
            global_id,
            path,
            tuple(hits[:5]),
        )

    def _path(self, global_id: int | None) -> tuple[str, ...]:
        if global_id is None:
            return ()
        visits = sorted(self._paths.get(global_id, []))
        cameras: list[str] = []
        for _, camera in visits:
            if not cameras or cameras[-1] != camera:
                cameras.append(camera)
        return tuple(cameras)


def session_accuracy(sessions: Sequence[ParkingSession], truth: dict[tuple[str, int], int]) -> float:
    """Top-1 exit-to-entry accuracy: the share of exits whose entry tracklet is the same true object.

    ``truth`` maps ``(camera_id, track_id)`` of tracklets to ground-truth object ids; exits whose
    own object is unknown are left out.
    """
    scored = [s for s in sessions if (s.exit_camera, s.exit_track) in truth]
    if not scored:
        return float("nan")
    right = sum(
        s.entry_camera is not None
        and s.entry_track is not None
        and truth.get((s.entry_camera, s.entry_track)) == truth[(s.exit_camera, s.exit_track)]
        for s in scored
    )
    return right / len(scored)
