"""Identity metrics (Ristani et al., 2016): IDF1, IDP, IDR from one global id-to-id matching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from crossview.eval.mot.prepare import PreparedSequence

_FORBIDDEN = 1e10


@dataclass(frozen=True, slots=True)
class IdentityResult:
    """Identity true positives, false negatives and false positives; scores derived."""

    idtp: int
    idfn: int
    idfp: int

    def summary(self) -> dict[str, float | int]:
        return {
            "IDF1": self.idtp / max(1.0, self.idtp + 0.5 * self.idfp + 0.5 * self.idfn),
            "IDR": self.idtp / max(1.0, self.idtp + self.idfn),
            "IDP": self.idtp / max(1.0, self.idtp + self.idfp),
            "IDTP": self.idtp,
            "IDFN": self.idfn,
            "IDFP": self.idfp,
        }

    @classmethod
    def combine(cls, parts: Sequence[IdentityResult]) -> IdentityResult:
        return cls(
            idtp=sum(p.idtp for p in parts), idfn=sum(p.idfn for p in parts), idfp=sum(p.idfp for p in parts)
        )


def identity(sequence: PreparedSequence, threshold: float = 0.5) -> IdentityResult:
    """Best one-to-one matching between ground-truth and predicted trajectories.

    Each id may also stay unmatched (a dummy partner), so the assignment minimises identity
    false negatives plus false positives over the whole sequence.
    """
    if sequence.num_pred_dets == 0:
        return IdentityResult(0, sequence.num_gt_dets, 0)
    if sequence.num_gt_dets == 0:
        return IdentityResult(0, 0, sequence.num_pred_dets)
    num_gt, num_pred = sequence.num_gt_ids, sequence.num_pred_ids
    overlap = sequence.grid.similarity >= threshold
    potential = np.zeros((num_gt, num_pred))
    np.add.at(potential, (sequence.pair_gt_id[overlap], sequence.pair_pred_id[overlap]), 1.0)
    gt_count = np.bincount(sequence.gt_id, minlength=num_gt).astype(np.float64)
    pred_count = np.bincount(sequence.pred_id, minlength=num_pred).astype(np.float64)

    size = num_gt + num_pred
    fn_cost = np.zeros((size, size))
    fp_cost = np.zeros((size, size))
    fp_cost[num_gt:, :num_pred] = _FORBIDDEN
    fn_cost[:num_gt, num_pred:] = _FORBIDDEN
    fn_cost[:num_gt, :num_pred] = gt_count[:, None] - potential
    fn_cost[np.arange(num_gt), num_pred + np.arange(num_gt)] = gt_count
    fp_cost[:num_gt, :num_pred] = pred_count[None, :] - potential
    fp_cost[num_gt + np.arange(num_pred), np.arange(num_pred)] = pred_count
    rows, cols = linear_sum_assignment(fn_cost + fp_cost)
    idfn = int(fn_cost[rows, cols].sum())
    idfp = int(fp_cost[rows, cols].sum())
    return IdentityResult(idtp=int(gt_count.sum()) - idfn, idfn=idfn, idfp=idfp)
