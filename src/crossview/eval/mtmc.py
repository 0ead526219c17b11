"""Multi-camera (MTMC) tracking metrics: one identity matching across every camera.

Single-camera metrics forgive a tracker that gives one person a different id in each camera;
multi-camera ones do not. ``evaluate_mtmc`` puts the cameras one after the other on a
single timeline (each camera's frames shifted past the previous camera's last frame, so no
two cameras share a time step) and scores that as one sequence with the MOT metrics. Every
global ground-truth id is then matched to at most one global predicted id over all cameras
together, which is the MTMC IDF1 of the AI City Challenge and of Ristani et al. (2016).

>>> import numpy as np
>>> from crossview.io.formats.mtmc import MtmcTable
>>> gt = MtmcTable.from_rows(["c1", "c2"], [[1, 1, 0, 0, 10, 10, -1, -1], [1, 1, 0, 0, 10, 10, -1, -1]])
>>> pred = MtmcTable.from_rows(["c1", "c2"], [[5, 1, 0, 0, 10, 10, -1, -1], [6, 1, 0, 0, 10, 10, -1, -1]])
>>> result = evaluate_mtmc(gt, pred)
>>> result.per_camera["c1"].summary()["IDF1"], result.to_dict()["mtmc_idf1"]
(1.0, 0.5)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from crossview.eval.mot.assignment import forced_frames
from crossview.eval.mot.evaluate import MotScores, evaluate_sequence
from crossview.eval.mot.prepare import EPS, PairGrid
from crossview.eval.mot.protocol import MotProtocol
from crossview.io.formats.mot import MotTable
from crossview.io.formats.mtmc import CameraTables, MtmcTable, camera_name, sorted_cameras

MtmcInput = MtmcTable | CameraTables

# Headline keys of ``MtmcScores.to_dict`` and the TrackEval field each one reads.
HEADLINE_FIELDS: dict[str, str] = {
    "mtmc_idf1": "IDF1",
    "mtmc_idp": "IDP",
    "mtmc_idr": "IDR",
    "mtmc_hota": "HOTA",
    "mtmc_deta": "DetA",
    "mtmc_assa": "AssA",
    "mtmc_mota": "MOTA",
    "mtmc_idtp": "IDTP",
    "mtmc_idfn": "IDFN",
    "mtmc_idfp": "IDFP",
}


class UnexpectedCameraError(ValueError):
    """Predictions for cameras the ground truth does not name."""

    def __init__(self, names: tuple[str, ...], known: tuple[str, ...]) -> None:
        self.names = names
        super().__init__(
            f"predictions for {len(names)} camera(s) with no ground truth: {', '.join(names)} "
            f"(ground-truth cameras: {', '.join(known)}); check camera naming, or pass unexpected='warn' "
            "to leave them out of the score"
        )


@dataclass(frozen=True, slots=True)
class MtmcScores:
    """Multi-camera scores, per-camera scores and the per-camera scores pooled.

    ``overall``: one global identity matching over all cameras (MTMC IDF1, HOTA, ...).
    ``per_camera``: each camera scored alone, ids matched within the camera.
    ``combined``: the per-camera results pooled as one data set (TrackEval's ``COMBINED_SEQ``),
    so ``combined.IDF1 - overall.IDF1`` is what cross-camera identity errors cost.
    ``frame_offsets`` is where each camera starts on the joined timeline (0-based).
    """

    overall: MotScores
    per_camera: dict[str, MotScores]
    combined: MotScores
    cameras: tuple[str, ...]
    frame_offsets: dict[str, int]
    missing_cameras: tuple[str, ...] = ()
    unexpected_cameras: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Headline ``mtmc_*`` figures, then every figure overall, per camera and combined."""
        overall = self.overall.summary()
        out: dict[str, object] = {key: overall[field] for key, field in HEADLINE_FIELDS.items()}
        out["overall"] = overall
        out["per_camera"] = {name: scores.summary() for name, scores in self.per_camera.items()}
        out["combined"] = self.combined.summary()
        out["missing_cameras"] = list(self.missing_cameras)
        out["unexpected_cameras"] = list(self.unexpected_cameras)
        return out


def _as_tables(data: MtmcInput) -> dict[str, MotTable]:
    if isinstance(data, MtmcTable):
        return data.to_mot_tables()
    tables: dict[str, MotTable] = {}
    for key, table in data.items():
        name = camera_name(key)
        if name in tables:
            raise ValueError(f"camera {name!r} given twice (keys {list(data)})")
        tables[name] = table
    return tables


def _concatenate(tables: list[MotTable], offsets: list[int]) -> MotTable:
    """Tables one after the other, frames shifted by ``offsets``; ``extra`` padded with ``-1``."""
    width = max((table.extra.shape[1] for table in tables), default=3)
    extras = [
        np.hstack([table.extra, np.full((len(table), width - table.extra.shape[1]), -1.0)])
        for table in tables
    ]
    return MotTable(
        frame=np.concatenate(
            [np.zeros(0, np.int64), *(t.frame + o for t, o in zip(tables, offsets, strict=True))]
        ),
        track_id=np.concatenate([np.zeros(0, np.int64), *(t.track_id for t in tables)]),
        xywh=np.concatenate([np.zeros((0, 4)), *(t.xywh for t in tables)]),
        score=np.concatenate([np.zeros(0), *(t.score for t in tables)]),
        extra=np.concatenate([np.zeros((0, width)), *extras]),
    )


def evaluate_mtmc(
    gt: MtmcInput,
    pred: MtmcInput,
    *,
    protocol: MotProtocol | None = None,
    num_frames: Mapping[str, int] | Mapping[int, int] | None = None,
    unexpected: Literal["error", "warn"] = "error",
) -> MtmcScores:
    """Score multi-camera tracking: global ids matched over all cameras, and each camera alone.

    ``gt`` and ``pred`` are ``MtmcTable``s or ``{camera: MotTable}`` with the global id in
    ``track_id``. The protocol defaults to ``MotProtocol.mot15()`` (no class filter, nothing
    removed). ``num_frames`` gives camera lengths; by default a camera's last frame in
    either input. The cameras are those the ground truth names: one with no predictions
    (absent, or present with no rows) is scored as all misses and listed in
    ``missing_cameras``. Predictions for a camera the ground truth does not name raise
    ``UnexpectedCameraError`` (usually a naming mismatch, ``"c001"`` against ``"1"``, that
    would otherwise pass silently as a bad score), or with ``unexpected="warn"`` are warned
    about, listed in ``unexpected_cameras`` and not scored.

    Identity (IDF1/IDP/IDR) and HOTA over the joined timeline do not depend on the camera
    order. CLEAR's ``IDSW`` and ``Frag`` do: an object matched to one predicted id in one
    camera and another id in the next counts a switch there, in camera name order.
    """
    protocol = protocol or MotProtocol.mot15()
    gt_tables, pred_tables = _as_tables(gt), _as_tables(pred)
    cameras = sorted_cameras(gt_tables)
    if not cameras:
        raise ValueError("nothing to score: the ground truth names no camera")
    extra_names = tuple(name for name in pred_tables if name not in gt_tables)
    if extra_names and unexpected == "error":
        raise UnexpectedCameraError(extra_names, cameras)
    if extra_names:
        warnings.warn(
            f"predictions for cameras with no ground truth, not scored: {', '.join(extra_names)}",
            stacklevel=2,
        )
    missing = tuple(name for name in cameras if len(pred_tables.get(name, ())) == 0)
    lengths_given = {camera_name(key): value for key, value in (num_frames or {}).items()}

    per_camera: dict[str, MotScores] = {}
    offsets: dict[str, int] = {}
    gt_parts: list[MotTable] = []
    pred_parts: list[MotTable] = []
    start = 0
    for name in cameras:
        gt_camera = gt_tables[name]
        pred_camera = pred_tables.get(name, MotTable.empty())
        length = lengths_given.get(
            name, int(max(gt_camera.frame.max(initial=0), pred_camera.frame.max(initial=0), 1))
        )
        per_camera[name] = evaluate_sequence(
            gt_camera, pred_camera, protocol=protocol, num_frames=length, name=name
        )
        offsets[name] = start
        gt_parts.append(gt_camera)
        pred_parts.append(pred_camera)
        start += length
    frame_shift = list(offsets.values())
    overall = evaluate_sequence(
        _concatenate(gt_parts, frame_shift),
        _concatenate(pred_parts, frame_shift),
        protocol=protocol,
        num_frames=start,
        name="mtmc",
    )
    return MtmcScores(
        overall=overall,
        per_camera=per_camera,
        combined=MotScores.combine(list(per_camera.values())),
        cameras=cameras,
        frame_offsets=offsets,
        missing_cameras=missing,
        unexpected_cameras=extra_names,
    )


# ------------------------------------------------------------------------------ localisation
@dataclass(frozen=True, slots=True)
class LocalisationError:
    """Ground-plane distance between matched ground-truth and predicted positions.

    ``errors`` holds one distance per matched pair with both positions known (metres when
    the world coordinates are); the statistics are ``NaN`` when there is none.
    ``matched`` counts all box matches, ``compared`` those with both positions known.
    """

    errors: NDArray[np.float64]
    matched: int

    @property
    def compared(self) -> int:
        return int(self.errors.shape[0])

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.compared else float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.errors)) if self.compared else float("nan")

    @property
    def p90(self) -> float:
        return float(np.percentile(self.errors, 90)) if self.compared else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {
            "loc_mean": self.mean,
            "loc_median": self.median,
            "loc_p90": self.p90,
            "loc_matched": self.matched,
            "loc_compared": self.compared,
        }


def localisation_error(gt: MtmcTable, pred: MtmcTable, *, threshold: float = 0.5) -> LocalisationError:
    """Ground-plane error of predictions matched to ground truth by their boxes.

    Within each camera and frame, boxes are paired by the optimal IoU assignment over pairs
    with IoU >= ``threshold`` (CLEAR's matching without its continuity bonus, so the pairing
    does not depend on ids). Each pair with both world positions known contributes the
    Euclidean distance between them; ids play no part, so a position error is not mixed up
    with an identity error (those are IDF1's business).
    """
    distances: list[NDArray[np.float64]] = []
    matched = 0
    for name in gt.cameras():
        if name not in pred.cameras():
            continue
        gt_rows, pred_rows = np.flatnonzero(gt.rows_of(name)), np.flatnonzero(pred.rows_of(name))
        gt_pair, pred_pair = _match_boxes(gt, gt_rows, pred, pred_rows, threshold)
        matched += len(gt_pair)
        a, b = gt.world_xy[gt_pair], pred.world_xy[pred_pair]
        known = np.asarray(np.isfinite(np.hstack([a, b])).all(axis=1), dtype=np.bool_)
        distances.append(np.linalg.norm(a[known] - b[known], axis=1))
    return LocalisationError(errors=np.concatenate([np.zeros(0), *distances]), matched=matched)


def _match_boxes(
    gt: MtmcTable, gt_rows: NDArray[np.int64], pred: MtmcTable, pred_rows: NDArray[np.int64], threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row indices (into ``gt`` and ``pred``) of the per-frame IoU matches of one camera."""
    if len(gt_rows) == 0 or len(pred_rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    gt_rows = gt_rows[np.argsort(gt.frame[gt_rows], kind="stable")]
    pred_rows = pred_rows[np.argsort(pred.frame[pred_rows], kind="stable")]
    first = int(min(gt.frame[gt_rows].min(), pred.frame[pred_rows].min()))
    last = int(max(gt.frame[gt_rows].max(), pred.frame[pred_rows].max()))
    grid = PairGrid.build(
        gt.xywh[gt_rows],
        gt.frame[gt_rows] - first,
        pred.xywh[pred_rows],
        pred.frame[pred_rows] - first,
        last - first + 1,
    )
    candidate = grid.similarity >= threshold - EPS
    forced = forced_frames(grid, candidate)
    direct = candidate & forced[grid.frame_of_pairs()]
    gt_pick = [grid.pair_gt[direct]]
    pred_pick = [grid.pair_pred[direct]]
    for frame in np.unique(grid.frame_of_pairs()[candidate & ~direct]).tolist():
        block = grid.block(frame)
        block[block < threshold - EPS] = 0
        rows, cols = linear_sum_assignment(-block)
        ok = block[rows, cols] > EPS
        gt_pick.append(grid.gt_offsets[frame] + rows[ok])
        pred_pick.append(grid.pred_offsets[frame] + cols[ok])
    return (
        gt_rows[np.concatenate(gt_pick).astype(np.int64)],
        pred_rows[np.concatenate(pred_pick).astype(np.int64)],
    )
