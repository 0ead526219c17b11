"""Detection-level fusion of overlapping views (``crossview.multicam.fusion``).

The scenes are made here: people (upright cylinders) walk on a square watched by cameras placed
around it with ``look_at_camera``, and each camera's boxes are the image bounds of the cylinders
(``world_to_image``). ``benchmarks/bench_fusion.py`` uses the same generator at larger sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.eval.mtmc import evaluate_mtmc
from crossview.io.formats.mtmc import MtmcTable
from crossview.multicam.fusion import (
    ClassModel,
    FusedInstant,
    FusionConfig,
    GroundFusion,
    cluster_views,
    gated_assignment,
)
from crossview.multicam.geometry import camera_centre, look_at_camera, pinhole_matrices, world_to_image

FloatArray = NDArray[np.float64]
CIRCLE = 12  # points on each rim of a cylinder


# ------------------------------------------------------------------------------------ the scene
@dataclass(frozen=True)
class Crowd:
    """People on a square over time: ``positions (T, P, 2)``, ``identity (T, P)`` (the person a slot
    holds at each instant; a slot is refilled by a new person when ``turnover_s`` is set)."""

    cameras: tuple[Camera, ...]
    times: FloatArray
    positions: FloatArray
    identity: NDArray[np.int64]
    heights: NDArray[np.float64]  # (T, P): the slot's person's height
    radius: float = 0.25


def ring_cameras(
    count: int, seed: int, *, side: float = 12.0, width: int = 1920, height: int = 1080
) -> tuple[Camera, ...]:
    """``count`` cameras on a ring around a ``side`` x ``side`` square, 2.5-5 m up, aimed near its centre."""
    rng = np.random.default_rng([seed, 1])
    angles = np.arange(count) * 2 * np.pi / count + rng.uniform(-0.2, 0.2, count)
    cameras = []
    for number, angle in enumerate(angles):
        distance = side * rng.uniform(0.75, 0.95)
        position = (distance * math.cos(angle), distance * math.sin(angle), rng.uniform(2.5, 5.0))
        target = (*rng.uniform(-side / 8, side / 8, 2), 0.0)
        fov = rng.uniform(60.0, 75.0)
        cameras.append(look_at_camera(f"c{number + 1}", width, height, fov, position, target))
    return tuple(cameras)


def spread(count: int, half: float, rng: np.random.Generator) -> FloatArray:
    """``count`` places on the square at least a step apart: cells of a grid, jittered."""
    cells = math.ceil(math.sqrt(count * 1.3))
    pitch = 2 * (half - 0.5) / cells
    chosen = rng.choice(cells * cells, count, replace=False)
    grid = np.column_stack([chosen % cells, chosen // cells]) * pitch - (half - 0.5) + pitch / 2
    return np.asarray(grid + rng.uniform(-0.25, 0.25, (count, 2)) * pitch, np.float64)


def walk(
    people: int,
    seconds: float,
    fps: float,
    seed: int,
    *,
    side: float = 12.0,
    cameras: int = 6,
    turnover_s: float | None = None,
) -> Crowd:
    """People on the square, simulated at 10 Hz with a social force model and sampled at ``fps``.

    Each walks towards a slowly wandering heading at a preferred speed (a fifth of them stand),
    and is pushed away from others (exponentially within a few tenths of a metre of contact) and
    turned back at the edges, so that paths are smooth and bodies do not overlap.
    """
    rng = np.random.default_rng([seed, 2])
    step = 0.1
    substeps = max(1, round(1 / (fps * step)))
    count = round(seconds * fps)
    half = side / 2
    position = spread(people, half, rng)
    speed = np.where(rng.random(people) < 0.2, 0.0, rng.uniform(0.6, 1.5, people))
    heading = rng.uniform(0, 2 * np.pi, people)
    velocity = np.zeros((people, 2))
    height = rng.normal(1.72, 0.08, people)
    identity = np.arange(people, dtype=np.int64)
    born = np.zeros(people)
    life = rng.uniform(0.5, 1.5, people) * (turnover_s or math.inf)
    positions, identities, heights = [], [], []
    for instant in range(count):
        now = instant / fps
        if turnover_s is not None:
            renew = now - born >= life
            fresh = int(renew.sum())
            position[renew] = rng.uniform(-half + 0.5, half - 0.5, (fresh, 2))
            velocity[renew] = 0.0
            identity[renew] = identity.max() + 1 + np.arange(fresh)
            height[renew] = rng.normal(1.72, 0.08, fresh)
            born[renew] = now
            life[renew] = rng.uniform(0.5, 1.5, fresh) * turnover_s
        positions.append(position.copy())
        identities.append(identity.copy())
        heights.append(height.copy())
        for _ in range(substeps):
            heading += rng.normal(0, 0.3 * math.sqrt(step), people)
            outward = np.abs(position) > half - 1.0  # head back inside near the edges
            inward = np.arctan2(-position[:, 1], -position[:, 0])
            heading = np.where(outward.any(axis=1), inward + rng.normal(0, 0.5, people), heading)
            wanted = speed[:, None] * np.column_stack([np.cos(heading), np.sin(heading)])
            gap = position[:, None] - position[None]
            distance = np.linalg.norm(gap, axis=2) + np.eye(people) * 1e9
            away = gap / distance[:, :, None]
            # pushed apart, and aside (passing on the right), from a metre or so before contact
            aside = np.stack([away[..., 1], -away[..., 0]], axis=2)
            strength = 2.0 * np.exp((0.6 - distance) / 0.4)[:, :, None]
            repulsion = strength * (away + 0.5 * aside)
            velocity += ((wanted - velocity) / 0.5 + repulsion.sum(axis=1)) * step
            position = np.clip(position + velocity * step, -half + 0.3, half - 0.3)
    return Crowd(
        cameras=ring_cameras(cameras, seed, side=side),
        times=np.arange(count) / fps,
        positions=np.array(positions),
        identity=np.array(identities),
        heights=np.array(heights),
    )


def cylinder_boxes(
    camera: Camera, ground: FloatArray, heights: FloatArray, radius: float
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Image boxes ``(P, 4)`` of upright cylinders, clipped to the image, and which are seen.

    Seen: wholly in front of the camera, at least half of the box inside the image, 10 px tall.
    """
    angles = np.linspace(0, 2 * np.pi, CIRCLE, endpoint=False)
    rim = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    people = len(ground)
    xy = (ground[:, None, :] + rim[None]).reshape(-1, 2)
    bottom = np.column_stack([xy, np.zeros(len(xy))])
    top = np.column_stack([xy, np.repeat(heights, CIRCLE)])
    pixels = world_to_image(camera, np.vstack([bottom, top])).reshape(2, people, CIRCLE, 2)
    pixels = pixels.transpose(1, 0, 2, 3).reshape(people, 2 * CIRCLE, 2)
    in_front = np.all(np.isfinite(pixels), axis=(1, 2))
    pixels = np.where(in_front[:, None, None], pixels, 0.0)
    full = np.column_stack([pixels.min(axis=1), pixels.max(axis=1)])
    limits = np.array([camera.width, camera.height, camera.width, camera.height], np.float64)
    clipped = np.clip(full, 0, limits)
    area = np.prod(full[:, 2:] - full[:, :2], axis=1)
    inside = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1)
    seen = in_front & (inside >= 0.5 * np.maximum(area, 1e-9)) & (clipped[:, 3] - clipped[:, 1] >= 10)
    return clipped, seen


def perturbed(camera: Camera, rng: np.random.Generator, position_m: float, angle_deg: float) -> Camera:
    """The camera as a fair calibration knows it: moved by ``position_m`` and turned by ``angle_deg`` (sd)."""
    _, rotation, _ = pinhole_matrices(camera)
    turn = Rotation.from_rotvec(np.radians(rng.normal(0, angle_deg, 3))).as_matrix()
    rotation = turn @ rotation
    centre = camera_centre(camera) + rng.normal(0, position_m, 3)
    return camera.model_copy(
        update={"rotation": rotation.tolist(), "translation": (-rotation @ centre).tolist()}
    )


@dataclass(frozen=True)
class Noise:
    """What a detector does to perfect boxes: edge jitter (sd, fraction of box height), misses
    (probability), false positives (mean per camera and instant) and calibration error."""

    jitter: float = 0.0
    miss: float = 0.0
    false_positives: float = 0.0
    calibration_m: float = 0.0
    calibration_deg: float = 0.0


def observe(
    crowd: Crowd, noise: Noise = Noise(), seed: int = 0
) -> tuple[list[dict[str, Detections]], MtmcTable, tuple[Camera, ...]]:
    """Per instant, every camera's detections; the ground truth; the cameras as calibrated."""
    rng = np.random.default_rng([seed, 3])
    truth_cameras: list[str] = []
    truth_rows: list[list[float]] = []
    instants: list[dict[str, Detections]] = []
    for index in range(len(crowd.times)):
        views: dict[str, Detections] = {}
        for camera in crowd.cameras:
            boxes, seen = cylinder_boxes(camera, crowd.positions[index], crowd.heights[index], crowd.radius)
            ids = crowd.identity[index][seen]
            boxes = boxes[seen]
            for person, box in zip(ids.tolist(), boxes.tolist(), strict=True):
                truth_cameras.append(camera.id)
                truth_rows.append(
                    [person + 1, index + 1, box[0], box[1], box[2] - box[0], box[3] - box[1], -1, -1]
                )
            kept = rng.random(len(boxes)) >= noise.miss
            boxes, ids = boxes[kept], ids[kept]
            if noise.jitter > 0 and len(boxes):
                size = (boxes[:, 3] - boxes[:, 1])[:, None]
                boxes = boxes + rng.normal(0, noise.jitter, boxes.shape) * size
                boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 2)
            extra = rng.poisson(noise.false_positives)
            if extra:
                spots = rng.uniform(-6, 6, (extra, 2))
                fake, fake_seen = cylinder_boxes(camera, spots, np.full(extra, 1.7), crowd.radius)
                boxes = np.vstack([boxes, fake[fake_seen]])
                ids = np.concatenate([ids, np.full(int(fake_seen.sum()), -1)])
            views[camera.id] = Detections(
                xyxy=boxes,
                class_id=np.zeros(len(boxes), np.int64),
                data={"person": ids},  # the truth, for the tests' own checks
                camera_id=camera.id,
                frame_index=index,
            )
        instants.append(views)
    truth = MtmcTable.from_rows(truth_cameras, np.array(truth_rows).reshape(-1, 8))
    calibrated = crowd.cameras
    if noise.calibration_m or noise.calibration_deg:
        calibrated = tuple(
            perturbed(camera, rng, noise.calibration_m, noise.calibration_deg) for camera in crowd.cameras
        )
    return instants, truth, calibrated


def fused_table(
    times: Sequence[float], instants: Sequence[dict[str, Detections]], fusion: GroundFusion
) -> tuple[MtmcTable, list[FusedInstant]]:
    """Run fusion over the instants; the rows it labels, as an MTMC table (ids and frames from 1)."""
    cameras: list[str] = []
    rows: list[FloatArray] = []
    results = []
    for index, (time, views) in enumerate(zip(times, instants, strict=True)):
        fused = fusion.update(float(time), views)
        results.append(fused)
        for name, detections in views.items():
            ids = fused.global_ids[name]
            labelled = ids >= 0
            boxes = detections.xyxy[labelled].astype(np.float64)
            cameras += [name] * int(labelled.sum())
            rows.append(
                np.column_stack(
                    [
                        ids[labelled] + 1,
                        np.full(int(labelled.sum()), index + 1),
                        boxes[:, :2],
                        boxes[:, 2:] - boxes[:, :2],
                        np.full((int(labelled.sum()), 2), -1.0),
                    ]
                )
            )
    return MtmcTable.from_rows(cameras, np.concatenate([np.zeros((0, 8)), *rows])), results


def idf1(truth: MtmcTable, predicted: MtmcTable) -> float:
    return float(evaluate_mtmc(truth, predicted, unexpected="warn").overall.summary()["IDF1"])


# ------------------------------------------------------------------------------------------ tests
def test_perfect_boxes_give_one_id_per_person_across_views() -> None:
    crowd = walk(20, 30.0, 2.0, seed=0, cameras=5)
    instants, truth, cameras = observe(crowd)
    predicted, results = fused_table(crowd.times, instants, GroundFusion(cameras))
    assert idf1(truth, predicted) >= 0.97
    # one person, one id in every view that sees her at one instant
    agree = total = 0
    for views, fused in zip(instants, results, strict=True):
        people = np.concatenate([views[name].data["person"] for name in views])
        ids = np.concatenate([fused.global_ids[name] for name in views])
        for person in np.unique(people[ids >= 0]).tolist():
            total += 1
            agree += len(np.unique(ids[(people == person) & (ids >= 0)])) == 1
    assert agree / total >= 0.99
    assert results[-1].track_ids.size <= 22  # about one track per person, not one per view


def test_tolerates_jitter_misses_false_positives_and_calibration_error() -> None:
    crowd = walk(20, 30.0, 2.0, seed=1, cameras=5)
    noise = Noise(jitter=0.03, miss=0.1, false_positives=0.5, calibration_m=0.03, calibration_deg=0.1)
    instants, truth, cameras = observe(crowd, noise, seed=1)
    predicted, _ = fused_table(crowd.times, instants, GroundFusion(cameras))
    # a tenth of the boxes are never detected, so about 0.9 of the perfect-box figure is the ceiling
    assert idf1(truth, predicted) >= 0.85


def test_frame_rate_does_not_need_retuning() -> None:
    # the defaults of the 2 fps tests, at 10 fps
    crowd = walk(12, 8.0, 10.0, seed=2, cameras=4)
    instants, truth, cameras = observe(crowd, Noise(jitter=0.02, miss=0.05), seed=2)
    predicted, _ = fused_table(crowd.times, instants, GroundFusion(cameras))
    assert idf1(truth, predicted) >= 0.93


def test_gated_assignment_prefers_one_good_match_to_two_poor_ones() -> None:
    # track A fits cluster p well; the swap (A-q, B-p) is feasible and has more matches
    cost = np.array([[0.2, 3.8], [3.2, np.inf]])
    rows, columns = gated_assignment(cost, 4.0)
    assert (rows.tolist(), columns.tolist()) == ([0], [0])
    # what a huge "forbidden" cost does instead: it buys the second match with a swap
    naive_rows, naive_columns = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
    assert sorted(zip(naive_rows.tolist(), naive_columns.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert gated_assignment(np.zeros((0, 3)), 1.0)[0].size == 0


def overhead(camera_id: str = "top") -> Camera:
    return look_at_camera(camera_id, 1920, 1080, 90, position=(0, 0, 25), target=(0, 0.001, 0))


def person(camera: Camera, x: float, y: float) -> list[float]:
    boxes, seen = cylinder_boxes(camera, np.array([[x, y]]), np.array([1.75]), 0.25)
    assert seen.all()
    return boxes[0].tolist()


def test_matching_rule_keeps_identities_where_more_matches_would_swap_them() -> None:
    camera = overhead()
    fusion = GroundFusion([camera], FusionConfig(min_hits=1))
    first = fusion.update(0.0, {"top": Detections(xyxy=[person(camera, 0, 0), person(camera, 3.0, 0)])})
    a, b = first.global_ids["top"].tolist()
    # A barely moved (p); a newcomer (q) appears on A's other side, within A's gate but not B's.
    # Matching as many as possible would give A to q and B to p.
    second = fusion.update(0.5, {"top": Detections(xyxy=[person(camera, 0.2, 0), person(camera, -3.3, 0)])})
    p, q = second.global_ids["top"].tolist()
    assert p == a
    assert q not in (a, b)
    assert b in second.track_ids.tolist()  # B coasts, unseen
    assert not second.observed[second.track_ids.tolist().index(b)]


def test_ids_are_never_reused_and_state_stays_bounded() -> None:
    # people vanish and others appear anywhere: tracks must end, and their ids with them
    crowd = walk(8, 80.0, 2.0, seed=3, cameras=4, turnover_s=8.0)
    instants, _, cameras = observe(crowd, seed=3)
    fusion = GroundFusion(cameras)
    live, first_seen, last_seen = [], {}, {}
    for index, (time, views) in enumerate(zip(crowd.times, instants, strict=True)):
        fused = fusion.update(float(time), views)
        live.append(fusion.live_tracks)
        for gid in fused.track_ids.tolist():
            first_seen.setdefault(gid, index)
            assert last_seen.get(gid, index - 1) == index - 1, f"id {gid} came back after it ended"
            last_seen[gid] = index
    people = len(np.unique(crowd.identity))
    assert people > 70
    # a newcomer within a metre or two of someone who just vanished may take over her track
    assert people * 0.7 <= fusion.identities <= people * 1.1
    assert sorted(first_seen) == list(range(fusion.identities))  # minted in order, each once
    order = [first_seen[gid] for gid in range(fusion.identities)]
    assert order == sorted(order)
    assert max(live) <= 2 * 8 + 4  # the tracks of the 8 people present, a few coasting


def test_uncalibrated_views_and_rows_above_the_horizon_get_no_id() -> None:
    camera = overhead()
    level = look_at_camera("level", 1280, 720, 70, position=(0, -30, 1.5), target=(0, 0, 1.5))
    blind = Camera(id="blind", width=640, height=480)
    fusion = GroundFusion([camera, level, blind], FusionConfig(min_hits=1))
    views = {
        "top": Detections(xyxy=[person(camera, 1.0, 1.0)]),
        "level": Detections(xyxy=[[600, 10, 640, 60]]),  # its foot is above the horizon
        "blind": Detections(xyxy=[[10, 10, 50, 120], [100, 10, 150, 130]]),
    }
    fused = fusion.update(0.0, views)
    assert fused.global_ids["top"].tolist() == [0]
    assert fused.global_ids["level"].tolist() == [-1]
    assert fused.global_ids["blind"].tolist() == [-1, -1]
    assert np.isnan(fused.ground["blind"]).all() and np.isnan(fused.ground["level"]).all()
    labelled = fused.label(views)
    assert labelled["top"].global_id.tolist() == [0] and labelled["blind"].global_id.tolist() == [-1, -1]
    assert fusion.update(0.5, {}).track_ids.tolist() == [0]  # nobody seen: the track coasts


def test_output_is_deterministic_and_independent_of_view_order() -> None:
    crowd = walk(15, 10.0, 2.0, seed=4, cameras=4)
    instants, _, cameras = observe(crowd, Noise(jitter=0.03, miss=0.1, false_positives=0.5), seed=4)

    def run(reverse: bool) -> list[list[int]]:
        fusion = GroundFusion(cameras)
        out = []
        for time, views in zip(crowd.times, instants, strict=True):
            given = dict(reversed(list(views.items()))) if reverse else views
            fused = fusion.update(float(time), given)
            out.append([gid for name in sorted(views) for gid in fused.global_ids[name].tolist()])
        return out

    assert run(False) == run(False) == run(True)


def test_cluster_takes_one_detection_per_camera_and_class() -> None:
    points = np.zeros((4, 2))
    covariances = np.repeat(0.01 * np.eye(2)[None], 4, axis=0)
    owner, mean, _ = cluster_views(points, covariances, np.array([0, 0, 1, 2]), gate=3.0)
    assert len(set(owner.tolist())) == 2  # rows 0 and 1 share a camera: two objects
    assert np.allclose(mean, 0)
    camera = overhead()
    fusion = GroundFusion([camera, overhead("top2")], FusionConfig(min_hits=1))
    box = person(camera, 0, 0)
    fused = fusion.update(
        0.0,
        {
            "top": Detections(xyxy=[box], class_id=[0]),
            "top2": Detections(xyxy=[box], class_id=[2]),  # same place, another class
        },
    )
    assert fused.global_ids["top"][0] != fused.global_ids["top2"][0]
    assert sorted(fused.class_ids.tolist()) == [0, 2]


def test_fused_position_is_more_precise_than_one_view() -> None:
    crowd = walk(10, 10.0, 2.0, seed=5, cameras=6)
    instants, _, cameras = observe(crowd, Noise(jitter=0.03), seed=5)
    fusion = GroundFusion(cameras)
    errors, singles = [], []
    for index, (time, views) in enumerate(zip(crowd.times, instants, strict=True)):
        fused = fusion.update(float(time), views)
        truth = crowd.positions[index]
        for position in fused.positions[fused.observed]:
            errors.append(np.min(np.linalg.norm(truth - position, axis=1)))
        for name in views:
            located = fused.ground[name]
            singles += np.min(np.linalg.norm(truth[None] - located[:, None], axis=2), axis=1).tolist()
    assert np.median(errors) < 0.6 * np.nanmedian(singles)
    assert np.median(errors) < 0.12


def test_refusals() -> None:
    camera = overhead()
    fusion = GroundFusion([camera])
    fusion.update(1.0, {})
    with pytest.raises(ValueError, match="timestamps must increase"):
        fusion.update(1.0, {})
    with pytest.raises(ValueError, match=r"unknown cameras \['elsewhere'\]"):
        fusion.update(2.0, {"elsewhere": Detections.empty()})
    with pytest.raises(ValueError, match="twice"):
        GroundFusion([camera, camera])
    with pytest.raises(ValidationError):
        FusionConfig(cluster_gate=0)
    with pytest.raises(ValidationError, match="extra"):
        FusionConfig.model_validate({"gate": 1.0})
    model = ClassModel(
        class_id=0,
        foot_offset_m=0.1,
        foot_sigma_m=0.1,
        height_sigma_m=0.1,
        motion_noise=1,
        velocity_memory_s=1,
        speed_sigma_mps=1,
    )
    with pytest.raises(ValidationError, match="twice"):
        FusionConfig(classes=(model, model))
