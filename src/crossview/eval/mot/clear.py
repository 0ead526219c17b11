"""CLEAR MOT (Bernardin and Stiefelhagen, 2008): MOTA, MOTP, switches, fragmentations, MT/PT/ML."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from crossview.eval.mot.assignment import forced_frames
from crossview.eval.mot.prepare import EPS, IntArray, PreparedSequence

_CONTINUITY_BONUS = 1000.0  # keeps last frame's pairs matched whenever they still overlap enough


@dataclass(frozen=True, slots=True)
class ClearResult:
    """CLEAR counts of one or more sequences; ratios are derived.

    ``degenerate`` marks a single sequence with no predictions or no ground truth, for which
    the per-sequence ratios follow TrackEval's convention (0, with MLR = 1); combining
    always recomputes from the counts.
    """

    tp: int
    fn: int
    fp: int
    idsw: int
    mt: int
    pt: int
    ml: int
    frag: int
    frames: int
    motp_sum: float
    degenerate: bool = False

    def summary(self) -> dict[str, float | int]:
        counts: dict[str, float | int] = {
            "CLR_TP": self.tp,
            "CLR_FN": self.fn,
            "CLR_FP": self.fp,
            "IDSW": self.idsw,
            "MT": self.mt,
            "PT": self.pt,
            "ML": self.ml,
            "Frag": self.frag,
            "CLR_Frames": self.frames,
        }
        names = (
            "MOTA",
            "MOTP",
            "MODA",
            "CLR_Re",
            "CLR_Pr",
            "MTR",
            "PTR",
            "MLR",
            "sMOTA",
            "CLR_F1",
            "FP_per_frame",
            "MOTAL",
        )
        if self.degenerate:
            return {**dict.fromkeys(names, 0.0), "MLR": 1.0, **counts}
        tp, fn, fp, idsw = self.tp, self.fn, self.fp, self.idsw
        gt_total = max(1.0, tp + fn)
        num_ids = max(1.0, self.mt + self.pt + self.ml)
        log_idsw = float(np.log10(idsw)) if idsw > 0 else 0.0
        ratios: dict[str, float] = {
            "MOTA": (tp - fp - idsw) / gt_total,
            "MOTP": self.motp_sum / max(1.0, tp),
            "MODA": (tp - fp) / gt_total,
            "CLR_Re": tp / gt_total,
            "CLR_Pr": tp / max(1.0, tp + fp),
            "MTR": self.mt / num_ids,
            "PTR": self.pt / num_ids,
            "MLR": self.ml / num_ids,
            "sMOTA": (self.motp_sum - fp - idsw) / gt_total,
            "CLR_F1": tp / max(1.0, tp + 0.5 * fn + 0.5 * fp),
            "FP_per_frame": fp / max(1.0, self.frames),
            "MOTAL": (tp - fp - log_idsw) / gt_total,
        }
        return {**ratios, **counts}

    @classmethod
    def combine(cls, parts: Sequence[ClearResult]) -> ClearResult:
        def total(name: str) -> int:
            return int(sum(getattr(p, name) for p in parts))

        return cls(
            tp=total("tp"),
            fn=total("fn"),
            fp=total("fp"),
            idsw=total("idsw"),
            mt=total("mt"),
            pt=total("pt"),
            ml=total("ml"),
            frag=total("frag"),
            frames=total("frames"),
            motp_sum=float(sum(p.motp_sum for p in parts)),
        )


def clear(sequence: PreparedSequence, threshold: float = 0.5) -> ClearResult:
    """CLEAR metrics of one prepared sequence (IoU >= ``threshold`` is a match).

    Matching is optimal per frame with a bonus that keeps a ground-truth object on the
    prediction it was matched to in the previous scored frame, as MOTChallenge specifies.
    Frames where the IoU >= threshold pairs are unambiguous need no solver; the rest run
    in order, since the bonus depends on the frame before.
    """
    num_gt, num_pred = sequence.num_gt_dets, sequence.num_pred_dets
    if num_pred == 0 or num_gt == 0:
        return ClearResult(
            tp=0,
            fn=num_gt,
            fp=num_pred,
            idsw=0,
            mt=0,
            pt=0,
            ml=sequence.num_gt_ids if num_pred == 0 else 0,
            frag=0,
            frames=0,
            motp_sum=0.0,
            degenerate=True,
        )
    grid = sequence.grid
    gt_id, pred_id = sequence.gt_id, sequence.pred_id
    similarity = grid.similarity
    candidate = similarity >= threshold - EPS
    forced = forced_frames(grid, candidate)
    match_of_gt = np.full(num_gt, -1, np.int64)
    match_similarity = np.zeros(num_gt)
    direct = candidate & forced[grid.frame_of_pairs()]
    match_of_gt[grid.pair_gt[direct]] = grid.pair_pred[direct]
    match_similarity[grid.pair_gt[direct]] = similarity[direct]

    gt_counts = np.diff(grid.gt_offsets)
    scored = (gt_counts > 0) & (np.diff(grid.pred_offsets) > 0)
    scored_frames = np.flatnonzero(scored)
    previous_scored = np.full(grid.num_frames, -1, np.int64)
    previous_scored[scored_frames[1:]] = scored_frames[:-1]
    previous_pred_of = np.full(sequence.num_gt_ids, -1, np.int64)
    for frame in np.flatnonzero(~forced & scored).tolist():
        before = int(previous_scored[frame])
        rows_before = (
            np.arange(grid.gt_offsets[before], grid.gt_offsets[before + 1]) if before >= 0 else np.arange(0)
        )
        was = match_of_gt[rows_before]
        hit = was >= 0
        previous_pred_of[gt_id[rows_before][hit]] = pred_id[was[hit]]
        gt_rows = slice(grid.gt_offsets[frame], grid.gt_offsets[frame + 1])
        pred_rows = slice(grid.pred_offsets[frame], grid.pred_offsets[frame + 1])
        block = grid.block(frame)
        continuing = pred_id[pred_rows][None, :] == previous_pred_of[gt_id[gt_rows]][:, None]
        score = _CONTINUITY_BONUS * continuing + block
        score[block < threshold - EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > EPS
        match_of_gt[grid.gt_offsets[frame] + rows[ok]] = grid.pred_offsets[frame] + cols[ok]
        match_similarity[grid.gt_offsets[frame] + rows[ok]] = block[rows[ok], cols[ok]]
        previous_pred_of[gt_id[rows_before][hit]] = -1

    matched_rows = np.flatnonzero(match_of_gt >= 0)
    match_frame = grid.gt_frame[matched_rows]
    match_gt = gt_id[matched_rows]
    match_pred = pred_id[match_of_gt[matched_rows]]
    motp_sum = float(match_similarity[matched_rows].sum())

    tp = len(matched_rows)
    gt_occurrences = np.bincount(gt_id, minlength=sequence.num_gt_ids)
    matched_count = np.bincount(match_gt, minlength=sequence.num_gt_ids)
    present = gt_occurrences > 0
    tracked_ratio = matched_count[present] / gt_occurrences[present]
    mt = int(np.count_nonzero(tracked_ratio > 0.8))
    pt = int(np.count_nonzero(tracked_ratio >= 0.2)) - mt
    return ClearResult(
        tp=tp,
        fn=num_gt - tp,
        fp=num_pred - tp,
        idsw=_switches(match_gt, match_frame, match_pred),
        mt=mt,
        pt=pt,
        ml=sequence.num_gt_ids - mt - pt,
        frag=_fragmentations(match_gt, match_frame, scored, sequence.num_gt_ids),
        frames=grid.num_frames,
        motp_sum=motp_sum,
    )


def _switches(match_gt: IntArray, match_frame: IntArray, match_pred: IntArray) -> int:
    """Matches whose prediction differs from the one the same object last matched."""
    order = np.lexsort((match_frame, match_gt))
    gt, pred = match_gt[order], match_pred[order]
    return int(np.count_nonzero((gt[1:] == gt[:-1]) & (pred[1:] != pred[:-1])))


def _fragmentations(match_gt: IntArray, match_frame: IntArray, scored: np.ndarray, num_gt_ids: int) -> int:
    """Times an object becomes tracked again after being untracked, summed over objects.

    "Untracked" is judged at the previous frame that had both ground truth and predictions,
    as in the reference implementation; an object's first tracked run is not a fragmentation.
    """
    scored_rank = np.cumsum(scored) - 1
    keys = scored_rank[match_frame] * num_gt_ids + match_gt
    previous = (scored_rank[match_frame] - 1) * num_gt_ids + match_gt
    starts = ~np.isin(previous, keys)
    runs = np.bincount(match_gt[starts], minlength=num_gt_ids)
    return int(np.sum(runs[runs > 0] - 1))
