"""Score tracker output against ground truth: one sequence, many, or MOTChallenge folders."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from crossview.eval.mot.clear import ClearResult, clear
from crossview.eval.mot.hota import HotaResult, hota
from crossview.eval.mot.identity import IdentityResult, identity
from crossview.eval.mot.prepare import prepare_sequence
from crossview.eval.mot.protocol import MotProtocol
from crossview.io.formats.mot import MotTable, read_mot, read_seqinfo

COUNT_FIELDS = frozenset(
    {"CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "CLR_Frames", "IDTP", "IDFN", "IDFP"}
)


@dataclass(frozen=True, slots=True)
class MotScores:
    """HOTA, CLEAR and Identity results for one sequence or a combination of sequences."""

    hota: HotaResult
    clear: ClearResult
    identity: IdentityResult

    def summary(self) -> dict[str, float | int]:
        """Every figure by TrackEval's name: scores as fractions, counts as integers."""
        return {**self.hota.summary(), **self.clear.summary(), **self.identity.summary()}

    @classmethod
    def combine(cls, parts: Sequence[MotScores]) -> MotScores:
        """All sequences as one data set, exactly as TrackEval's ``COMBINED_SEQ``."""
        if not parts:
            raise ValueError("nothing to combine: no sequences")
        return cls(
            hota=HotaResult.combine([p.hota for p in parts]),
            clear=ClearResult.combine([p.clear for p in parts]),
            identity=IdentityResult.combine([p.identity for p in parts]),
        )


@dataclass(frozen=True, slots=True)
class MotEvaluation:
    """Scores per sequence and combined, plus what was missing or extra."""

    sequences: dict[str, MotScores]
    combined: MotScores
    missing_predictions: tuple[str, ...] = ()
    unexpected_predictions: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "sequences": {name: scores.summary() for name, scores in self.sequences.items()},
            "combined": self.combined.summary(),
            "missing_predictions": list(self.missing_predictions),
            "unexpected_predictions": list(self.unexpected_predictions),
        }


def evaluate_sequence(
    gt: MotTable,
    pred: MotTable,
    *,
    protocol: MotProtocol | None = None,
    num_frames: int | None = None,
    name: str = "sequence",
) -> MotScores:
    """HOTA, CLEAR and Identity of one sequence.

    >>> import numpy as np
    >>> rows = np.array([[1, 1, 0, 0, 10, 10, 1, 1, 1], [2, 1, 1, 0, 10, 10, 1, 1, 1]])
    >>> gt = MotTable.from_array(rows)
    >>> evaluate_sequence(gt, gt).summary()["IDF1"]
    1.0
    """
    protocol = protocol or MotProtocol()
    prepared = prepare_sequence(gt, pred, protocol=protocol, num_frames=num_frames, name=name)
    return MotScores(
        hota=hota(prepared),
        clear=clear(prepared, protocol.match_threshold),
        identity=identity(prepared, protocol.match_threshold),
    )


class MissingSequenceError(ValueError):
    """Ground-truth sequences with no prediction file."""

    def __init__(self, names: Sequence[str], pred_dir: Path) -> None:
        self.names = tuple(names)
        super().__init__(
            f"no predictions in {pred_dir} for {len(names)} sequence(s): {', '.join(names)} "
            "(expected <seq>.txt; score them as all misses with missing='empty', or --missing empty)"
        )


def find_sequences(gt_dir: str | Path) -> list[str]:
    """Sequence names under ``gt_dir``: folders holding ``gt/gt.txt``, sorted."""
    root = Path(gt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {root}")
    names = sorted(p.parent.parent.name for p in root.glob("*/gt/gt.txt"))
    if not names:
        raise FileNotFoundError(f"no sequences in {root} (expected {root}/<seq>/gt/gt.txt)")
    return names


def evaluate_mot_dirs(
    gt_dir: str | Path,
    pred_dir: str | Path,
    *,
    protocol: MotProtocol | None = None,
    sequences: Sequence[str] | None = None,
    missing: Literal["error", "empty"] = "error",
    pred_names: Mapping[str, str] | None = None,
) -> MotEvaluation:
    """Evaluate ``pred_dir/<seq>.txt`` against ``gt_dir/<seq>/gt/gt.txt`` (+ ``seqinfo.ini``).

    A sequence without predictions raises ``MissingSequenceError`` naming it, or with
    ``missing="empty"`` is scored as all misses and listed in ``missing_predictions``.
    Prediction files with no ground truth are listed in ``unexpected_predictions`` and warned
    about. ``pred_names`` maps a sequence to a different prediction file stem.
    """
    gt_root, pred_root = Path(gt_dir), Path(pred_dir)
    if not pred_root.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_root}")
    names = list(sequences) if sequences is not None else find_sequences(gt_root)
    pred_names = dict(pred_names or {})
    pred_files = {name: pred_root / f"{pred_names.get(name, name)}.txt" for name in names}
    missing_names = [name for name, path in pred_files.items() if not path.is_file()]
    if missing_names and missing == "error":
        raise MissingSequenceError(missing_names, pred_root)
    expected_stems = {path.stem for path in pred_files.values()}
    unexpected = sorted(p.stem for p in pred_root.glob("*.txt") if p.stem not in expected_stems)
    if unexpected:
        warnings.warn(f"predictions with no ground truth, not scored: {', '.join(unexpected)}", stacklevel=2)
    protocol = protocol or MotProtocol()
    results: dict[str, MotScores] = {}
    for name in names:
        sequence_dir = gt_root / name
        info_path = sequence_dir / "seqinfo.ini"
        num_frames = read_seqinfo(info_path).length if info_path.is_file() else None
        gt = read_mot(sequence_dir / "gt" / "gt.txt")
        pred = MotTable.empty() if name in missing_names else read_mot(pred_files[name])
        results[name] = evaluate_sequence(gt, pred, protocol=protocol, num_frames=num_frames, name=name)
    return MotEvaluation(
        sequences=results,
        combined=MotScores.combine(list(results.values())),
        missing_predictions=tuple(missing_names),
        unexpected_predictions=tuple(unexpected),
    )
