"""From two MOTChallenge tables to the matched-pair arrays every tracking metric reads.

Every overlapping gt-by-prediction box pair of every frame is found at once and kept in flat
arrays; metrics reduce over those arrays with ``bincount`` and call the assignment solver only
on frames where the answer is not forced, on the same dense matrices TrackEval builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from crossview.eval.boxes import iou_xywh_pairs, overlapping_pairs
from crossview.eval.mot.protocol import MotProtocol
from crossview.io.formats.mot import MotTable

EPS = float(np.finfo(np.float64).eps)
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


class SequenceError(ValueError):
    """Ground truth or predictions that cannot be scored (duplicate ids, frames out of range)."""


@dataclass(frozen=True, eq=False, slots=True)
class PairGrid:
    """The overlapping gt x prediction box pairs of every frame, with their IoU.

    Only pairs with positive IoU are stored (a zero contributes nothing to any metric);
    ``block`` rebuilds a frame's dense ``(n_gt, n_pred)`` matrix, rows and columns in file
    order, exactly the matrix TrackEval builds for that frame. ``*_offsets`` have
    ``num_frames + 1`` entries: frame ``t`` owns rows ``gt_offsets[t]:gt_offsets[t+1]``.
    Pairs are ordered by ground-truth row, hence by frame.
    """

    num_frames: int
    gt_offsets: IntArray
    pred_offsets: IntArray
    pair_gt: IntArray
    pair_pred: IntArray
    similarity: FloatArray

    @classmethod
    def build(
        cls,
        gt_boxes: FloatArray,
        gt_frame: IntArray,
        pred_boxes: FloatArray,
        pred_frame: IntArray,
        num_frames: int,
    ) -> PairGrid:
        """``*_frame`` are 0-based and sorted ascending; boxes are ``(x, y, w, h)``."""
        pair_gt, pair_pred = overlapping_pairs(gt_frame, gt_boxes, pred_frame, pred_boxes)
        similarity = iou_xywh_pairs(gt_boxes[pair_gt], pred_boxes[pair_pred])
        positive = similarity > 0
        return cls(
            num_frames=num_frames,
            gt_offsets=_offsets(gt_frame, num_frames),
            pred_offsets=_offsets(pred_frame, num_frames),
            pair_gt=pair_gt[positive],
            pair_pred=pair_pred[positive],
            similarity=similarity[positive],
        )

    @property
    def gt_frame(self) -> IntArray:
        return np.repeat(np.arange(self.num_frames, dtype=np.int64), np.diff(self.gt_offsets))

    @property
    def pred_frame(self) -> IntArray:
        return np.repeat(np.arange(self.num_frames, dtype=np.int64), np.diff(self.pred_offsets))

    def frame_of_pairs(self) -> IntArray:
        return self.gt_frame[self.pair_gt]

    def frame_pairs(self, frame: int) -> slice:
        """The slice of pairs that belong to ``frame``."""
        start, end = np.searchsorted(self.pair_gt, self.gt_offsets[frame : frame + 2], side="left")
        return slice(int(start), int(end))

    def block(self, frame: int, values: FloatArray | None = None) -> FloatArray:
        """Frame ``frame``'s dense ``(n_gt, n_pred)`` matrix of ``values`` (default: IoU), 0 elsewhere."""
        source = self.similarity if values is None else values
        gt_start, pred_start = self.gt_offsets[frame], self.pred_offsets[frame]
        dense = np.zeros((self.gt_offsets[frame + 1] - gt_start, self.pred_offsets[frame + 1] - pred_start))
        pairs = self.frame_pairs(frame)
        dense[self.pair_gt[pairs] - gt_start, self.pair_pred[pairs] - pred_start] = source[pairs]
        return dense

    def pair_index_block(self, frame: int) -> IntArray:
        """Frame ``frame``'s ``(n_gt, n_pred)`` matrix of pair indices, -1 where boxes do not overlap."""
        gt_start, pred_start = self.gt_offsets[frame], self.pred_offsets[frame]
        dense = np.full(
            (self.gt_offsets[frame + 1] - gt_start, self.pred_offsets[frame + 1] - pred_start), -1
        )
        pairs = self.frame_pairs(frame)
        dense[self.pair_gt[pairs] - gt_start, self.pair_pred[pairs] - pred_start] = np.arange(
            pairs.start, pairs.stop
        )
        return dense

    def select(self, keep_gt: NDArray[np.bool_], keep_pred: NDArray[np.bool_]) -> PairGrid:
        """The grid restricted to kept rows, renumbered."""
        new_gt = np.cumsum(keep_gt) - 1
        new_pred = np.cumsum(keep_pred) - 1
        keep_pair = keep_gt[self.pair_gt] & keep_pred[self.pair_pred]
        return PairGrid(
            num_frames=self.num_frames,
            gt_offsets=_offsets(self.gt_frame[keep_gt], self.num_frames),
            pred_offsets=_offsets(self.pred_frame[keep_pred], self.num_frames),
            pair_gt=new_gt[self.pair_gt[keep_pair]],
            pair_pred=new_pred[self.pair_pred[keep_pair]],
            similarity=self.similarity[keep_pair],
        )


def _offsets(sorted_frames: IntArray, num_frames: int) -> IntArray:
    counts = np.bincount(sorted_frames, minlength=num_frames)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


@dataclass(frozen=True, eq=False, slots=True)
class PreparedSequence:
    """One sequence after the protocol's filtering, ready for any metric.

    ``gt_id``/``pred_id`` are contiguous (``0..num_*_ids-1``, in ascending order of the
    original ids), one per kept row; rows are grouped by frame as in ``grid``.
    """

    name: str
    grid: PairGrid
    gt_id: IntArray
    pred_id: IntArray
    num_gt_ids: int
    num_pred_ids: int

    @property
    def num_frames(self) -> int:
        return self.grid.num_frames

    @property
    def num_gt_dets(self) -> int:
        return int(self.gt_id.shape[0])

    @property
    def num_pred_dets(self) -> int:
        return int(self.pred_id.shape[0])

    @property
    def pair_gt_id(self) -> IntArray:
        return self.gt_id[self.grid.pair_gt]

    @property
    def pair_pred_id(self) -> IntArray:
        return self.pred_id[self.grid.pair_pred]


def prepare_sequence(
    gt: MotTable,
    pred: MotTable,
    *,
    protocol: MotProtocol,
    num_frames: int | None = None,
    name: str = "sequence",
) -> PreparedSequence:
    """Filter by the protocol, pair up boxes per frame and relabel ids.

    ``num_frames`` is the sequence length (``seqLength``); rows outside ``1..num_frames``
    are an error. Without it, the last frame present in either table is the length.
    """
    if num_frames is None:
        num_frames = int(max(gt.frame.max(initial=0), pred.frame.max(initial=0)))
    for table, what in ((gt, "ground truth"), (pred, "predictions")):
        outside = (table.frame < 1) | (table.frame > num_frames)
        if outside.any():
            frames = np.unique(table.frame[outside])
            raise SequenceError(f"{name}: {what} has frames outside 1..{num_frames}: {frames[:10].tolist()}")
        _check_unique_ids(table, what, name)
    gt_order = np.argsort(gt.frame, kind="stable")
    pred_order = np.argsort(pred.frame, kind="stable")
    gt, pred = gt[gt_order], pred[pred_order]
    grid = PairGrid.build(gt.xywh, gt.frame - 1, pred.xywh, pred.frame - 1, num_frames)

    keep_pred = np.ones(len(pred), bool)
    gt_class = gt.class_id
    if (protocol.eval_classes is not None or protocol.removes_distractors) and (gt_class < 0).any():
        raise SequenceError(
            f"{name}: ground truth has no class column (class -1); the MOTChallenge protocol needs one. "
            "Evaluate MOT15-style files with the mot15 protocol (no class filter, no distractors)."
        )
    if protocol.removes_distractors:
        keep_pred &= ~_matched_to_distractor(grid, np.isin(gt_class, protocol.distractor_classes))
    keep_gt = np.ones(len(gt), bool)
    if protocol.ignore_zero_marked:
        keep_gt &= gt.score.astype(np.int64) != 0
    if protocol.eval_classes is not None:
        keep_gt &= np.isin(gt_class, protocol.eval_classes)
    grid = grid.select(keep_gt, keep_pred)

    gt_ids, gt_id = np.unique(gt.track_id[keep_gt], return_inverse=True)
    pred_ids, pred_id = np.unique(pred.track_id[keep_pred], return_inverse=True)
    return PreparedSequence(
        name, grid, gt_id.astype(np.int64), pred_id.astype(np.int64), len(gt_ids), len(pred_ids)
    )


def _check_unique_ids(table: MotTable, what: str, name: str) -> None:
    if len(table) == 0:
        return
    keys = table.frame * (int(table.track_id.max()) - int(table.track_id.min()) + 1) + (
        table.track_id - table.track_id.min()
    )
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        first = np.flatnonzero(np.isin(keys, unique[counts > 1]))[0]
        raise SequenceError(
            f"{name}: {what} has id {table.track_id[first]} more than once in frame {table.frame[first]}"
        )


def _matched_to_distractor(grid: PairGrid, gt_is_distractor: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Predictions that the per-frame optimal IoU >= 0.5 matching pairs with a distractor.

    The matching is over all ground truth (every class), as MOTChallenge does, and only runs
    in frames where some distractor overlaps some prediction enough to be matched.
    """
    removed = np.zeros(int(grid.pred_offsets[-1]), bool)
    candidate = gt_is_distractor[grid.pair_gt] & (grid.similarity >= 0.5 - EPS)
    frames = np.unique(grid.frame_of_pairs()[candidate])
    for frame in frames.tolist():
        scores = grid.block(frame).copy()
        scores[scores < 0.5 - EPS] = 0
        rows, cols = linear_sum_assignment(-scores)
        matched = scores[rows, cols] > EPS
        rows, cols = rows[matched], cols[matched]
        gt_rows = grid.gt_offsets[frame] + rows
        pred_rows = grid.pred_offsets[frame] + cols
        removed[pred_rows[gt_is_distractor[gt_rows]]] = True
    return removed
