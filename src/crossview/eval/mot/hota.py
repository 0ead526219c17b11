"""HOTA (Luiten et al., IJCV 2021): detection, association and localisation over 19 IoU thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from crossview.eval.mot.assignment import forced_frames
from crossview.eval.mot.prepare import EPS, FloatArray, PreparedSequence

ALPHAS: FloatArray = np.arange(0.05, 0.99, 0.05)
"""The 19 localisation thresholds 0.05, 0.10, ..., 0.95 (as TrackEval builds them)."""


@dataclass(frozen=True, eq=False, slots=True)
class HotaResult:
    """Per-threshold HOTA components; every array has one entry per value of ``ALPHAS``.

    Counts (``tp``, ``fn``, ``fp``) and association/localisation accuracies are stored;
    detection scores and HOTA itself are derived, so combining sequences stays exact.
    """

    tp: FloatArray
    fn: FloatArray
    fp: FloatArray
    ass_a: FloatArray
    ass_re: FloatArray
    ass_pr: FloatArray
    loc_a: FloatArray

    @property
    def det_re(self) -> FloatArray:
        return self.tp / np.maximum(1, self.tp + self.fn)

    @property
    def det_pr(self) -> FloatArray:
        return self.tp / np.maximum(1, self.tp + self.fp)

    @property
    def det_a(self) -> FloatArray:
        return self.tp / np.maximum(1, self.tp + self.fn + self.fp)

    @property
    def hota(self) -> FloatArray:
        return np.sqrt(self.det_a * self.ass_a)

    @property
    def owta(self) -> FloatArray:
        return np.sqrt(self.det_re * self.ass_a)

    def summary(self) -> dict[str, float]:
        """Threshold-averaged scores plus the alpha = 0.05 figures, TrackEval's field names."""
        arrays = {
            "HOTA": self.hota,
            "DetA": self.det_a,
            "AssA": self.ass_a,
            "DetRe": self.det_re,
            "DetPr": self.det_pr,
            "AssRe": self.ass_re,
            "AssPr": self.ass_pr,
            "LocA": self.loc_a,
            "OWTA": self.owta,
        }
        out = {name: float(np.mean(values)) for name, values in arrays.items()}
        out["HOTA(0)"] = float(self.hota[0])
        out["LocA(0)"] = float(self.loc_a[0])
        out["HOTALocA(0)"] = out["HOTA(0)"] * out["LocA(0)"]
        return out

    @classmethod
    def combine(cls, parts: Sequence[HotaResult]) -> HotaResult:
        """Several sequences as one: counts summed, accuracies weighted by true positives."""
        tp = np.sum([p.tp for p in parts], axis=0)

        def weighted(field: str) -> FloatArray:
            total: FloatArray = np.sum([getattr(p, field) * p.tp for p in parts], axis=0) / np.maximum(
                1.0, tp
            )
            return total

        loc = np.sum([p.loc_a * p.tp for p in parts], axis=0)
        return cls(
            tp=tp,
            fn=np.sum([p.fn for p in parts], axis=0),
            fp=np.sum([p.fp for p in parts], axis=0),
            ass_a=weighted("ass_a"),
            ass_re=weighted("ass_re"),
            ass_pr=weighted("ass_pr"),
            loc_a=np.maximum(1e-10, loc) / np.maximum(1e-10, tp),
        )


def hota(sequence: PreparedSequence) -> HotaResult:
    """HOTA of one prepared sequence.

    Matching per frame maximises IoU weighted by the global alignment score of each
    (gt id, predicted id) pair, then each threshold keeps matches with IoU >= alpha.
    """
    size = len(ALPHAS)
    zeros = np.zeros(size)
    if sequence.num_pred_dets == 0 or sequence.num_gt_dets == 0:
        return HotaResult(
            tp=zeros,
            fn=np.full(size, float(sequence.num_gt_dets)),
            fp=np.full(size, float(sequence.num_pred_dets)),
            ass_a=zeros,
            ass_re=zeros,
            ass_pr=zeros,
            loc_a=np.ones(size),
        )
    grid = sequence.grid
    similarity = grid.similarity
    num_pred_ids = sequence.num_pred_ids
    row_sum = np.bincount(grid.pair_gt, weights=similarity, minlength=sequence.num_gt_dets)
    col_sum = np.bincount(grid.pair_pred, weights=similarity, minlength=sequence.num_pred_dets)
    denominator = col_sum[grid.pair_pred] + row_sum[grid.pair_gt] - similarity
    positive = denominator > EPS
    soft_iou = np.zeros_like(similarity)
    soft_iou[positive] = similarity[positive] / denominator[positive]

    pair_gt_id, pair_pred_id = sequence.pair_gt_id, sequence.pair_pred_id
    id_pairs, id_pair_of = np.unique(pair_gt_id * num_pred_ids + pair_pred_id, return_inverse=True)
    potential = np.bincount(id_pair_of, weights=soft_iou)
    gt_count = np.bincount(sequence.gt_id, minlength=sequence.num_gt_ids).astype(np.float64)
    pred_count = np.bincount(sequence.pred_id, minlength=num_pred_ids).astype(np.float64)
    id_gt, id_pred = id_pairs // num_pred_ids, id_pairs % num_pred_ids
    alignment = potential / (gt_count[id_gt] + pred_count[id_pred] - potential)
    score = alignment[id_pair_of] * similarity

    candidate = score > 0
    forced = forced_frames(grid, candidate)
    matched = candidate & forced[grid.frame_of_pairs()]
    pair_index = [np.flatnonzero(matched)]
    crowded = np.flatnonzero(~forced)
    for frame in crowded.tolist():
        index = grid.pair_index_block(frame)
        rows, cols = linear_sum_assignment(-np.where(index >= 0, score[index], 0.0))
        pair_index.append(index[rows, cols])
    matches = np.concatenate(pair_index)
    matches = matches[matches >= 0]
    match_similarity = similarity[matches]
    keep = match_similarity >= ALPHAS[0] - EPS
    matches, match_similarity = matches[keep], match_similarity[keep]
    match_pair_of = id_pair_of[matches]
    match_gt_count = gt_count[id_gt]
    match_pred_count = pred_count[id_pred]

    tp, loc, ass_a, ass_re, ass_pr = (np.zeros(size) for _ in range(5))
    for a, alpha in enumerate(ALPHAS):
        at_alpha = match_similarity >= alpha - EPS
        tp[a] = np.count_nonzero(at_alpha)
        loc[a] = match_similarity[at_alpha].sum()
        count = np.bincount(match_pair_of[at_alpha], minlength=len(id_pairs)).astype(np.float64)
        weight = np.maximum(1, tp[a])
        ass_a[a] = np.sum(count * (count / np.maximum(1, match_gt_count + match_pred_count - count))) / weight
        ass_re[a] = np.sum(count * (count / np.maximum(1, match_gt_count))) / weight
        ass_pr[a] = np.sum(count * (count / np.maximum(1, match_pred_count))) / weight
    return HotaResult(
        tp=tp,
        fn=sequence.num_gt_dets - tp,
        fp=sequence.num_pred_dets - tp,
        ass_a=ass_a,
        ass_re=ass_re,
        ass_pr=ass_pr,
        loc_a=np.maximum(1e-10, loc) / np.maximum(1e-10, tp),
    )
