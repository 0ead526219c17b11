"""Per-frame optimal assignment, skipping the solver where the answer is forced."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from crossview.eval.mot.prepare import PairGrid


def forced_frames(grid: PairGrid, candidate: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Frames where every gt and prediction row is in at most one candidate pair.

    There, the candidate pairs form a partial permutation, so any optimal assignment of a
    score that is positive exactly on candidates takes all of them: no solver needed.
    """
    num_gt = int(grid.gt_offsets[-1])
    num_pred = int(grid.pred_offsets[-1])
    per_gt = np.bincount(grid.pair_gt[candidate], minlength=num_gt)
    per_pred = np.bincount(grid.pair_pred[candidate], minlength=num_pred)
    gt_frame = np.repeat(np.arange(grid.num_frames), np.diff(grid.gt_offsets))
    pred_frame = np.repeat(np.arange(grid.num_frames), np.diff(grid.pred_offsets))
    crowded = np.zeros(grid.num_frames, bool)
    crowded[gt_frame[per_gt > 1]] = True
    crowded[pred_frame[per_pred > 1]] = True
    return ~crowded
