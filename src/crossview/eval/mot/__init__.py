"""Multi-object tracking metrics: HOTA, CLEAR MOT and Identity, equal to TrackEval's.

>>> from crossview.eval.mot import MotProtocol, evaluate_sequence
"""

from crossview.eval.mot.clear import ClearResult, clear
from crossview.eval.mot.evaluate import (
    COUNT_FIELDS,
    MissingSequenceError,
    MotEvaluation,
    MotScores,
    evaluate_mot_dirs,
    evaluate_sequence,
    find_sequences,
)
from crossview.eval.mot.hota import ALPHAS, HotaResult, hota
from crossview.eval.mot.identity import IdentityResult, identity
from crossview.eval.mot.prepare import PreparedSequence, SequenceError, prepare_sequence
from crossview.eval.mot.protocol import MotProtocol

__all__ = [
    "ALPHAS",
    "COUNT_FIELDS",
    "ClearResult",
    "HotaResult",
    "IdentityResult",
    "MissingSequenceError",
    "MotEvaluation",
    "MotProtocol",
    "MotScores",
    "PreparedSequence",
    "SequenceError",
    "clear",
    "evaluate_mot_dirs",
    "evaluate_sequence",
    "find_sequences",
    "hota",
    "identity",
    "prepare_sequence",
]
