"""Which ground truth counts and which predictions are forgiven: the evaluation protocol."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MOT_PEDESTRIAN = 1
MOT17_DISTRACTORS = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection
MOT20_DISTRACTORS = (*MOT17_DISTRACTORS, 6)  # ... and non-MOT vehicle


class MotProtocol(BaseModel):
    """How ground truth and predictions are filtered before matching.

    The default is the MOTChallenge 2D-box protocol (MOT16/17): only ``eval_classes``
    ground truth is scored; a prediction matched (IoU >= 0.5, optimal assignment per frame)
    to a ground-truth box of a ``distractor_classes`` class is removed rather than counted
    as a false positive; ground truth whose "consider" flag (column 7) is 0 is ignored.
    ``MotProtocol.mot15()`` is the plain protocol used for MOT15-style files with no class
    column: every non-zero-flagged box counts and nothing is removed.

    >>> MotProtocol().distractor_classes
    (2, 7, 8, 12)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    eval_classes: tuple[int, ...] | None = Field(
        default=(MOT_PEDESTRIAN,), description="ground-truth classes scored; None scores every class"
    )
    distractor_classes: tuple[int, ...] = Field(
        default=MOT17_DISTRACTORS, description="ground-truth classes whose matched predictions are removed"
    )
    ignore_zero_marked: bool = Field(default=True, description="drop ground truth with flag 0 (column 7)")
    match_threshold: float = Field(
        default=0.5, gt=0, le=1, description="IoU needed for a CLEAR/Identity match"
    )

    @classmethod
    def mot17(cls) -> MotProtocol:
        return cls()

    @classmethod
    def mot20(cls) -> MotProtocol:
        return cls(distractor_classes=MOT20_DISTRACTORS)

    @classmethod
    def mot15(cls) -> MotProtocol:
        """No class filter and no distractor removal (MOT15, TUD, ETH, any file without classes)."""
        return cls(eval_classes=None, distractor_classes=())

    @property
    def removes_distractors(self) -> bool:
        return bool(self.distractor_classes)
