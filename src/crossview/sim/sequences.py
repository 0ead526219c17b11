"""Synthetic single-camera sequences in MOTChallenge layout, with a tracker's imperfect output.

Useful to try the evaluation tools without any data set, and as a source of varied test cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crossview.io.formats.mot import MotTable, SequenceInfo, write_mot, write_seqinfo


class SequenceSpec(BaseModel):
    """What a generated sequence looks like, and how wrong its simulated tracker is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_frames: int = Field(default=300, gt=0)
    num_objects: int = Field(default=20, gt=0)
    width: int = Field(default=1280, gt=0)
    height: int = Field(default=720, gt=0)
    frame_rate: float = Field(default=25.0, gt=0)
    detection_rate: float = Field(default=0.85, ge=0, le=1, description="chance a visible object is reported")
    switch_rate: float = Field(
        default=0.01, ge=0, le=1, description="chance per frame an object gets a new id"
    )
    false_positives_per_frame: float = Field(default=0.5, ge=0)
    box_noise: float = Field(default=0.05, ge=0, description="box jitter as a fraction of its size")


@dataclass(frozen=True, slots=True)
class GeneratedSequence:
    name: str
    info: SequenceInfo
    gt: MotTable
    pred: MotTable


def generate_sequence(spec: SequenceSpec, *, seed: int, name: str = "SYN-01") -> GeneratedSequence:
    """Pedestrians walking across a frame, each visible for a random stretch, and a noisy tracker."""
    rng = np.random.default_rng(seed)
    gt_rows: list[list[float]] = []
    pred_rows: list[list[float]] = []
    next_id = 1
    for obj in range(1, spec.num_objects + 1):
        start = int(rng.integers(1, spec.num_frames + 1))
        length = int(rng.integers(spec.num_frames // 10 + 1, spec.num_frames + 1))
        frames = np.arange(start, min(spec.num_frames, start + length) + 1)
        height = rng.uniform(0.15, 0.45) * spec.height
        size = np.array([height * 0.4, height])
        origin = rng.uniform([0, 0], [spec.width - size[0], spec.height - size[1]])
        velocity = rng.normal(0, 3, size=2) * [1.0, 0.3]
        steps = np.cumsum(rng.normal(0, 0.7, size=(len(frames), 2)), axis=0) + np.outer(
            frames - start, velocity
        )
        xy = origin + steps
        inside = (xy[:, 0] > -size[0] / 2) & (xy[:, 0] < spec.width - size[0] / 2)
        inside &= (xy[:, 1] > -size[1] / 2) & (xy[:, 1] < spec.height - size[1] / 2)
        frames, xy = frames[inside], xy[inside]
        visibility = np.clip(rng.normal(0.8, 0.2, size=len(frames)), 0.05, 1.0)
        for frame, (x, y), seen in zip(frames, xy, visibility, strict=True):
            gt_rows.append([frame, obj, x, y, *size, 1, 1, seen])
        track_id = next_id
        next_id += 1
        for frame, (x, y), seen in zip(frames, xy, visibility, strict=True):
            if rng.random() < spec.switch_rate:
                track_id = next_id
                next_id += 1
            if rng.random() < spec.detection_rate * (0.5 + 0.5 * seen):
                box = np.r_[x, y, size] + rng.normal(0, spec.box_noise, 4) * np.r_[size, size]
                pred_rows.append([frame, track_id, *box[:2], *np.maximum(box[2:], 1), 1, -1, -1, -1])
    count = rng.poisson(spec.false_positives_per_frame * spec.num_frames)
    for frame in rng.integers(1, spec.num_frames + 1, size=count):
        size = rng.uniform([20, 50], [120, 300])
        xy = rng.uniform([0, 0], [spec.width - size[0], spec.height - size[1]])
        pred_rows.append([frame, next_id, *xy, *size, rng.uniform(0.3, 0.9), -1, -1, -1])
        next_id += 1
    info = SequenceInfo(
        name=name, length=spec.num_frames, frame_rate=spec.frame_rate, width=spec.width, height=spec.height
    )
    return GeneratedSequence(
        name=name,
        info=info,
        gt=MotTable.from_array(np.array(gt_rows).reshape(-1, 9)),
        pred=MotTable.from_array(np.array(pred_rows).reshape(-1, 10)),
    )


def write_mot_sample(
    root: str | Path, *, sequences: int = 3, spec: SequenceSpec | None = None, seed: int = 0
) -> list[GeneratedSequence]:
    """Write ``root/gt/<seq>/{gt/gt.txt,seqinfo.ini}`` and ``root/pred/<seq>.txt``.

    The layout ``crossview eval mot --gt root/gt --pred root/pred`` reads.
    """
    root = Path(root)
    spec = spec or SequenceSpec()
    generated = []
    for index in range(sequences):
        sequence = generate_sequence(spec, seed=seed + index, name=f"SYN-{index + 1:02d}")
        write_mot(root / "gt" / sequence.name / "gt" / "gt.txt", sequence.gt, columns=9)
        write_seqinfo(root / "gt" / sequence.name / "seqinfo.ini", sequence.info)
        write_mot(root / "pred" / f"{sequence.name}.txt", sequence.pred)
        generated.append(sequence)
    return generated
