"""The service's durable state: accepted ingest batches, tracked detections and tracks (SQLite).

An ingest batch is acknowledged only after its transaction commits (WAL, ``synchronous=FULL``),
so a process killed at any moment afterwards, even by SIGKILL, still has it. The journal is
also the queue: the worker reads batches in ``queued`` state oldest first, and marks one
``done`` in the same transaction that writes its tracked detections and track summaries. A
batch that was accepted but not yet processed when the process died is processed after the
restart. Memory holds only counters, so the backlog is bounded by ``max_queued`` (refused
beyond it) and not by RAM.

A batch may carry an idempotency key (with the credential that sent it and a fingerprint of its
content), stored in the batch's own transaction: a retried request finds the batch it already
stored (``idempotent``) instead of storing it twice. Keys are kept for a day (``prune_idempotency``).

The database file is created private (0600; SQLite gives its WAL files the same mode): it holds
queued camera frames, embeddings and tracks.

Track ids are per camera. A restart begins new trackers, so each camera's new track ids are
offset past the largest one already stored (``track_offset``): ids never collide.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossview.io.files import private_file
from crossview.models.identity import ModelMismatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    first_timestamp REAL NOT NULL,
    last_timestamp REAL NOT NULL,
    frames INTEGER NOT NULL,
    detections INTEGER NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_state ON batches(state, id);
CREATE INDEX IF NOT EXISTS batches_camera ON batches(camera_id, last_timestamp);
CREATE TABLE IF NOT EXISTS idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (principal, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(created_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_images (
    batch_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (batch_id, position)
);
CREATE TABLE IF NOT EXISTS detections (
    camera_id TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    track_id INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    confidence REAL NOT NULL,
    class_id INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS detections_track ON detections(camera_id, track_id, timestamp);
CREATE INDEX IF NOT EXISTS detections_time ON detections(timestamp);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    class_id INTEGER NOT NULL,
    t_start REAL NOT NULL,
    t_end REAL NOT NULL,
    detections INTEGER NOT NULL,
    global_id INTEGER NOT NULL DEFAULT -1,
    indexed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (camera_id, track_id)
);
CREATE INDEX IF NOT EXISTS tracks_time ON tracks(t_start, t_end);
"""


class DuplicateKey(Exception):
    """The idempotency key was stored by another request in the meantime (nothing was written)."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a stored idempotency key refers to: the request's fingerprint and its batch."""

    fingerprint: str
    batch_id: int
    frames: int
    detections: int


@dataclass(frozen=True, slots=True)
class Batch:
    """One accepted ingest request of one camera."""

    id: int
    camera_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TrackRow:
    """A track as stored: its time span, detections so far, and whether it is searchable yet."""

    id: int
    camera_id: str
    track_id: int
    class_id: int
    t_start: float
    t_end: float
    detections: int
    global_id: int
    indexed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class DetectionRow:
    """One tracked detection: where, when, which track."""

    camera_id: str
    frame_index: int
    timestamp: float
    track_id: int
    xyxy: tuple[float, float, float, float]
    confidence: float
    class_id: int
    embedding: NDArray[np.float32] | None = None


class ServiceStore:
    """SQLite journal and track store of one service data directory (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ journal
    def accept(
        self,
        camera_id: str,
        payload: dict[str, Any],
        timestamps: Sequence[float],
        detections: int,
        images: Sequence[bytes] = (),
        idempotency: tuple[str, str, str] | None = None,
    ) -> int:
        """Commit one batch, with its encoded images if any, to the journal (durable on return); its id.

        ``idempotency`` is ``(principal, key, fingerprint)``, stored with the batch; ``DuplicateKey``
        when that key was stored meanwhile (then nothing is written).
        """
        text = json.dumps(payload, separators=(",", ":"))
        try:
            with self._transaction() as db:
                return self._accept(db, camera_id, text, timestamps, detections, images, idempotency)
        except sqlite3.IntegrityError as error:
            if idempotency is not None and "idempotency" in str(error):
                raise DuplicateKey(idempotency[1]) from error
            raise

    @staticmethod
    def _accept(
        db: sqlite3.Connection,
        camera_id: str,
        text: str,
        timestamps: Sequence[float],
        detections: int,
        images: Sequence[bytes],
        idempotency: tuple[str, str, str] | None,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO batches (camera_id, received_at, first_timestamp, last_timestamp, frames, "
            "detections, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (camera_id, time.time(), timestamps[0], timestamps[-1], len(timestamps), detections, text),
        )
        batch_id = cursor.lastrowid
        assert batch_id is not None
        db.executemany(
            "INSERT INTO batch_images VALUES (?, ?, ?)",
            [(batch_id, position, data) for position, data in enumerate(images)],
        )
        if idempotency is not None:
            principal, key, fingerprint = idempotency
            db.execute(
                "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (principal, key, fingerprint, batch_id, time.time()),
            )
        return batch_id

    def idempotent(self, principal: str, key: str) -> IdempotencyRecord | None:
        """The batch a credential's idempotency key already stored, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT i.fingerprint, i.batch_id, b.frames, b.detections FROM idempotency i "
                "JOIN batches b ON b.id = i.batch_id WHERE i.principal = ? AND i.key = ?",
                (principal, key),
            ).fetchone()
        return None if row is None else IdempotencyRecord(str(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def prune_idempotency(self, before: float) -> int:
        """Forget idempotency keys stored before ``before`` (epoch seconds); how many."""
        with self._transaction() as db:
            return db.execute("DELETE FROM idempotency WHERE created_at < ?", (before,)).rowcount

    def claim_model(self, key: str) -> None:
        """Record the embedder whose vectors this store holds; ``ModelMismatch`` when another one
        made the ones already stored (their spaces must not mix)."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('embedder', ?)", (key,))
                return
        if str(row[0]) != key:
            raise ModelMismatch(f"data directory {self.path.parent}", str(row[0]), key)

    def queued_by_camera(self) -> dict[str, int]:
        """Batches waiting for the worker, per camera."""
        with self._lock:
            rows = self._db.execute(
                "SELECT camera_id, COUNT(*) FROM batches WHERE state = 'queued' GROUP BY camera_id"
            ).fetchall()
        return {str(c): int(n) for c, n in rows}

    def last_timestamp(self, camera_id: str) -> float | None:
        """The latest accepted timestamp of a camera (None when it never sent)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(last_timestamp) FROM batches WHERE camera_id = ?", (camera_id,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def images(self, batch_id: int) -> list[bytes]:
        """A batch's encoded images, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM batch_images WHERE batch_id = ? ORDER BY position", (batch_id,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def queued_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM batches WHERE state = 'queued'").fetchone()
        return int(row[0])

    def next_batches(self, limit: int) -> list[Batch]:
        """The oldest ``limit`` batches not processed yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, camera_id, payload FROM batches WHERE state = 'queued' ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Batch(int(i), str(c), json.loads(p)) for i, c, p in rows]

    def last_timestamps(self) -> dict[str, float]:
        """The latest accepted timestamp of every camera (the next batch must come after it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT camera_id, MAX(last_timestamp) FROM batches GROUP BY camera_id"
            ).fetchall()
        return {str(c): float(t) for c, t in rows}

    def track_offset(self, camera_id: str) -> int:
        """The largest track id stored for a camera (0 when none): new trackers start after it."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(track_id) FROM tracks WHERE camera_id = ?", (camera_id,)
            ).fetchone()
        return int(row[0] or 0)

    def complete(
        self,
        batch_id: int | None,
        detections: Sequence[DetectionRow],
        tracks: Sequence[tuple[str, int, int, float, float, int]],
    ) -> None:
        """Write a processed batch's tracked detections and track spans, and mark it done, at once
        (``batch_id`` None: frames the service pulled itself, not from the journal).

        ``tracks``: ``(camera_id, track_id, class_id, t_start, t_end, new_detections)``.
        """
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.camera_id,
                        d.frame_index,
                        d.timestamp,
                        d.track_id,
                        *d.xyxy,
                        d.confidence,
                        d.class_id,
                        0 if batch_id is None else batch_id,  # 0: pulled by the service, no batch
                        None if d.embedding is None else np.asarray(d.embedding, np.float32).tobytes(),
                    )
                    for d in detections
                ],
            )
            db.executemany(
                "INSERT INTO tracks (camera_id, track_id, class_id, t_start, t_end, detections) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (camera_id, track_id) DO UPDATE SET "
                "t_start = MIN(t_start, excluded.t_start), t_end = MAX(t_end, excluded.t_end), "
                "detections = detections + excluded.detections",
                list(tracks),
            )
            if batch_id is not None:
                db.execute("UPDATE batches SET state = 'done', payload = '' WHERE id = ?", (batch_id,))
                db.execute("DELETE FROM batch_images WHERE batch_id = ?", (batch_id,))

    def fail(self, batch_id: int, error: str) -> None:
        """Mark a batch that cannot be processed (kept, with the reason, for an operator)."""
        with self._transaction() as db:
            db.execute("UPDATE batches SET state = 'failed', error = ? WHERE id = ?", (error, batch_id))

    # ------------------------------------------------------------------------------------- tracks
    def track_row_id(self, camera_id: str, track_id: int) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM tracks WHERE camera_id = ? AND track_id = ?", (camera_id, track_id)
            ).fetchone()
        return None if row is None else int(row[0])

    def set_global_ids(self, assignments: Sequence[tuple[int, int]]) -> None:
        """``(track row id, global id)`` pairs."""
        with self._transaction() as db:
            db.executemany("UPDATE tracks SET global_id = ? WHERE id = ?", [(g, i) for i, g in assignments])

    def max_global_id(self) -> int:
        """The largest global id given so far (-1 when none)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(global_id) FROM tracks").fetchone()
        return -1 if row[0] is None else int(row[0])

    def global_tracks(
        self,
        *,
        camera_id: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 100,
        after_id: int = -1,
    ) -> list[tuple[int, list[TrackRow]]]:
        """Global identities (with all their member tracks) seen in ``[start, end]`` (by ``camera_id``
        when given), in global id order."""
        clauses, values = _track_filter("global_id > ?", after_id, camera_id, start, end)
        with self._lock:
            rows = self._db.execute(
                f"SELECT DISTINCT global_id FROM tracks WHERE {' AND '.join(clauses)} "
                "ORDER BY global_id LIMIT ?",
                (*values, limit),
            ).fetchall()
        wanted = [int(r[0]) for r in rows]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        members = self._tracks(f"WHERE global_id IN ({marks}) ORDER BY t_start, id", wanted)
        grouped: dict[int, list[TrackRow]] = {g: [] for g in wanted}
        for track in members:
            grouped[track.global_id].append(track)
        return list(grouped.items())

    def mark_indexed(self, ids: Sequence[int]) -> None:
        with self._transaction() as db:
            db.executemany("UPDATE tracks SET indexed = 1 WHERE id = ?", [(i,) for i in ids])

    def unindexed_ended(self, before: dict[str, float]) -> list[TrackRow]:
        """Tracks of each camera that ended before its given time and are not searchable yet."""
        found: list[TrackRow] = []
        for camera_id, time_limit in before.items():
            found.extend(
                self._tracks(
                    "WHERE camera_id = ? AND indexed = 0 AND t_end < ? ORDER BY id", (camera_id, time_limit)
                )
            )
        return found

    def tracks(
        self,
        *,
        camera_id: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[TrackRow]:
        """Tracks by camera and time overlap with ``[start, end]``, in id order (page by ``after_id``)."""
        clauses, values = _track_filter("id > ?", after_id, camera_id, start, end)
        return self._tracks(f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?", (*values, limit))

    def track(self, row_id: int) -> TrackRow | None:
        found = self._tracks("WHERE id = ?", (row_id,))
        return found[0] if found else None

    def detections_of(self, camera_id: str, track_id: int, limit: int = 10_000) -> list[DetectionRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT camera_id, frame_index, timestamp, track_id, x1, y1, x2, y2, confidence, class_id "
                "FROM detections WHERE camera_id = ? AND track_id = ? ORDER BY timestamp LIMIT ?",
                (camera_id, track_id, limit),
            ).fetchall()
        return [
            DetectionRow(
                str(r[0]), int(r[1]), float(r[2]), int(r[3]), (r[4], r[5], r[6], r[7]), r[8], int(r[9])
            )
            for r in rows
        ]

    def track_embedding(self, camera_id: str, track_id: int) -> NDArray[np.float32] | None:
        """A track's appearance: the confidence-weighted mean of its detections' embeddings, unit
        length (None when it has none)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT confidence, embedding FROM detections WHERE camera_id = ? AND track_id = ? "
                "AND embedding IS NOT NULL",
                (camera_id, track_id),
            ).fetchall()
        if not rows:
            return None
        weights = np.array([max(float(c), 1e-3) for c, _ in rows])
        vectors = np.stack([np.frombuffer(blob, np.float32) for _, blob in rows])
        mean = weights @ vectors
        norm = float(np.linalg.norm(mean))
        return None if norm == 0 else (mean / norm).astype(np.float32)

    def counts(self) -> dict[str, int]:
        """Batches by state, detections and tracks stored."""
        with self._lock:
            states = dict(self._db.execute("SELECT state, COUNT(*) FROM batches GROUP BY state").fetchall())
            detections = self._db.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
            tracks = self._db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
        return {
            "batches_queued": int(states.get("queued", 0)),
            "batches_done": int(states.get("done", 0)),
            "batches_failed": int(states.get("failed", 0)),
            "detections": int(detections),
            "tracks": int(tracks),
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------------------------- internals
    def _tracks(self, where: str, values: Sequence[Any]) -> list[TrackRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, camera_id, track_id, class_id, t_start, t_end, detections, global_id, indexed "
                f"FROM tracks {where}",
                tuple(values),
            ).fetchall()
        return [
            TrackRow(
                int(r[0]),
                str(r[1]),
                int(r[2]),
                int(r[3]),
                float(r[4]),
                float(r[5]),
                int(r[6]),
                int(r[7]),
                bool(r[8]),
            )
            for r in rows
        ]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _track_filter(
    page: str, after: int, camera_id: str | None, start: float | None, end: float | None
) -> tuple[list[str], list[Any]]:
    """SQL conditions on tracks: the page clause, the camera, and time overlap with ``[start, end]``."""
    clauses: list[str] = [page]
    values: list[Any] = [after]
    for clause, value in (("camera_id = ?", camera_id), ("t_end >= ?", start), ("t_start <= ?", end)):
        if value is not None:
            clauses.append(clause)
            values.append(value)
    return clauses, values
