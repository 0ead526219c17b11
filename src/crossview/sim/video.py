"""A synthetic fixed-camera video with ground truth: people-like figures walking over a textured scene.

Enough to run the whole perception path (motion detection, tracking, evaluation) on a fresh
install with no data set or weights. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.io.formats.mot import MotTable, SequenceInfo, write_mot, write_seqinfo
from crossview.io.sinks import VideoWriter


class SceneSpec(BaseModel):
    """Size, length and population of the synthetic scene."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(default=640, ge=64)
    height: int = Field(default=360, ge=64)
    fps: float = Field(default=10.0, gt=0)
    num_frames: int = Field(default=200, gt=0)
    num_people: int = Field(default=6, ge=1)
    noise: float = Field(default=3.0, ge=0, description="pixel noise (sensor) per frame")


@dataclass(frozen=True, slots=True)
class SyntheticVideo:
    video: Path
    gt: MotTable
    info: SequenceInfo


def _background(spec: SceneSpec, rng: np.random.Generator) -> NDArray[np.uint8]:
    ramp = np.linspace(70, 140, spec.height)[:, None, None] * np.ones((1, spec.width, 3))
    texture = cv2.GaussianBlur(rng.normal(0, 18, (spec.height, spec.width, 3)), (0, 0), 3)
    image: NDArray[np.uint8] = np.clip(
        ramp + np.asarray(texture) + np.array([10.0, 25.0, 0.0]), 0, 255
    ).astype(np.uint8)
    for _ in range(6):  # static furniture: edges the background model must learn, not report
        x, y = int(rng.integers(0, spec.width - 60)), int(rng.integers(0, spec.height - 40))
        colour = tuple(int(c) for c in rng.integers(30, 200, 3))
        cv2.rectangle(
            image, (x, y), (x + int(rng.integers(20, 60)), y + int(rng.integers(10, 40))), colour, -1
        )
    return image


def render_scene(
    root: str | Path, spec: SceneSpec | None = None, *, seed: int = 0, name: str = "SIM-01"
) -> SyntheticVideo:
    """Write ``root/<name>.mp4`` and its ground truth ``root/gt/<name>/{gt/gt.txt,seqinfo.ini}``.

    Each person walks a straight line across the scene at their own speed and size (nearer
    people lower in the frame are larger); later-drawn people occlude earlier ones. Ground-truth
    boxes cover the whole figure (MOTChallenge convention), with visibility from occlusion.
    """
    spec = spec or SceneSpec()
    rng = np.random.default_rng(seed)
    root = Path(root)
    background = _background(spec, rng)
    people = []
    for _ in range(spec.num_people):
        y_foot = rng.uniform(0.45, 0.95) * spec.height
        height = (0.18 + 0.3 * y_foot / spec.height) * spec.height
        width = 0.38 * height
        direction = rng.choice([-1.0, 1.0])
        speed = rng.uniform(1.0, 4.0) * direction * spec.width / 640
        start = rng.uniform(-width, spec.width) if direction > 0 else rng.uniform(0, spec.width + width)
        offset = int(rng.integers(0, spec.num_frames // 2))
        torso = tuple(int(c) for c in rng.integers(0, 255, 3))
        legs = tuple(int(c) for c in rng.integers(0, 120, 3))
        people.append((y_foot, height, width, speed, start, offset, torso, legs))
    order = np.argsort([p[0] for p in people])  # farther (higher) people are drawn first
    rows: list[list[float]] = []
    video = root / f"{name}.mp4"
    with VideoWriter(video, spec.fps) as writer:
        for frame in range(spec.num_frames):
            image = background.copy()
            masks = []
            for index in order.tolist():
                y_foot, height, width, speed, start, offset, torso, legs = people[index]
                if frame < offset:
                    continue
                x = start + speed * (frame - offset)
                x1, y1 = x - width / 2, y_foot - height
                if x1 + width < 0 or x1 > spec.width:
                    continue
                mask = np.zeros(image.shape[:2], np.uint8)
                head = int(height * 0.12)
                sway = int(2 * np.sin(frame * 0.6 + index))
                cv2.circle(mask, (int(x), int(y1 + head)), head, 255, -1)
                cv2.rectangle(
                    mask,
                    (int(x1 + width * 0.1), int(y1 + 2 * head)),
                    (int(x1 + width * 0.9), int(y1 + height * 0.6)),
                    255,
                    -1,
                )
                cv2.rectangle(
                    mask,
                    (int(x1 + width * 0.2) + sway, int(y1 + height * 0.6)),
                    (int(x1 + width * 0.8) - sway, int(y_foot)),
                    128,
                    -1,
                )
                image[mask == 255] = torso
                image[mask == 128] = legs
                masks.append((index, mask > 0, (x1, y1, width, height)))
            covered = np.zeros(image.shape[:2], bool)
            for index, mask, box in reversed(masks):  # front to back: visibility after occluders
                area = mask.sum()
                visible = (mask & ~covered).sum() / max(area, 1)
                covered |= mask
                rows.append([frame + 1, index + 1, *box, 1, 1, visible])
            noisy = image.astype(np.int16) + rng.normal(0, spec.noise, image.shape).astype(np.int16)
            writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    gt = MotTable.from_array(np.array(rows).reshape(-1, 9))
    info = SequenceInfo(
        name=name, length=spec.num_frames, frame_rate=spec.fps, width=spec.width, height=spec.height
    )
    write_mot(root / "gt" / name / "gt" / "gt.txt", gt, columns=9)
    write_seqinfo(root / "gt" / name / "seqinfo.ini", info)
    return SyntheticVideo(video=video, gt=gt, info=info)
