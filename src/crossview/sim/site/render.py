"""Render a site: one video per camera, and the ground truth that goes with it.

Each frame is the camera's view of the painted ground (warped once per camera, lit with the
camera's gain, offset and colour cast) with every actor and structure drawn on top as the
visible faces of its boxes, farthest first (painter's order by distance to the camera). Faces
are shaded by a fixed sun. Corners behind the camera are clipped at a near plane; an object
entirely behind the camera is skipped. The same polygons are drawn into a label image, from
which each object's visibility is counted. Sensor noise is added last.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.io.formats.mot import MotTable, SequenceInfo, write_mot, write_seqinfo
from crossview.io.formats.mtmc import MtmcTable, write_mtmc
from crossview.io.sinks import VideoWriter
from crossview.sim.site.build import Site
from crossview.sim.site.layout import FACE_CORNERS, FACE_NORMALS, SiteCamera, site_map_image

NEAR: Final = 0.1  # metres: the near clipping plane
_SUN: Final = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
_AMBIENT: Final = 0.62
_DIFFUSE: Final = 0.38
_SKY_TOP: Final = np.array([214.0, 190.0, 160.0])
_SKY_HORIZON: Final = np.array([226.0, 218.0, 206.0])
_FAR_GROUND: Final = (70, 104, 84)
_MAP_PIXELS_PER_METRE: Final = 10.0


@dataclass(frozen=True, slots=True)
class RenderedSite:
    """What ``render_site`` wrote, and the ground truth in memory.

    ``gt[camera]`` has MOTChallenge ground-truth rows (global ids); ``mtmc`` all cameras
    together with ground-plane positions; ``videos`` is empty when video writing was skipped.
    """

    root: Path
    site: Site
    videos: dict[str, Path]
    gt: dict[str, MotTable]
    gt_paths: dict[str, Path]
    mtmc: MtmcTable
    mtmc_path: Path
    site_json: Path
    site_map: Path
    trajectories: Path


# Noisy synthetic frames are the slowest content to compress: x264's default preset takes about
# 5x longer on them than its fastest, which the demo's time budget cannot afford.
_ENCODER = {"preset": "ultrafast", "crf": "23"}


@dataclass(frozen=True, slots=True)
class _Scene:
    """Box corners of every actor at every frame, and what to draw them with."""

    corners: NDArray[np.float64]  # (F, 8P, 3) world
    part_heading: NDArray[np.float64]  # (F, P)
    colours: NDArray[np.float64]  # (P, 6, 3) base face colours
    parts: NDArray[np.intp]  # (N + 1,) first part of each actor, then P
    static_corners: NDArray[np.float64]  # (8S, 3) structures, world
    static_colours: NDArray[np.float64]  # (S, 6, 3)


def _scene(site: Site, *, actors: bool = True) -> _Scene:
    """The site's boxes; with ``actors=False`` only the structures (the empty site)."""
    cast = site.actors if actors else ()
    traj = site.trajectories
    frames = len(traj.times) if actors else 1
    counts = [len(actor.parts) for actor in cast]
    parts = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
    part_actor = np.repeat(np.arange(len(cast)), counts)
    local = np.array([box.corners() for actor in cast for box in actor.parts]).reshape(-1, 8, 3)
    colours = np.array([box.colours for actor in cast for box in actor.parts], dtype=np.float64).reshape(
        -1, 6, 3
    )
    heading = traj.heading[:frames, part_actor]  # (F, P)
    cos, sin = np.cos(heading)[..., None], np.sin(heading)[..., None]
    position = traj.position[:frames, part_actor]  # (F, P, 2)
    x = position[..., 0:1] + cos * local[None, :, :, 0] - sin * local[None, :, :, 1]
    y = position[..., 1:2] + sin * local[None, :, :, 0] + cos * local[None, :, :, 1]
    z = np.broadcast_to(local[None, :, :, 2], x.shape)
    corners = np.stack([x, y, z], axis=-1).reshape(frames, -1, 3)
    structures = site.map.structures
    static = np.array([box.corners() for box in structures]).reshape(-1, 3)
    static_colours = np.array([box.colours for box in structures], dtype=np.float64).reshape(-1, 6, 3)
    return _Scene(corners, heading, colours, parts, static, static_colours)


def _clip_near(polygon: NDArray[np.float64]) -> NDArray[np.float64]:
    """The part of a convex polygon (camera coordinates, ``(k, 3)``) in front of the near plane."""
    kept: list[NDArray[np.float64]] = []
    count = len(polygon)
    for i in range(count):
        current, following = polygon[i], polygon[(i + 1) % count]
        inside, next_inside = current[2] > NEAR, following[2] > NEAR
        if inside:
            kept.append(current)
        if inside != next_inside:
            fraction = (NEAR - current[2]) / (following[2] - current[2])
            kept.append(current + fraction * (following - current))
    return np.array(kept).reshape(-1, 3)


def _background(site: Site, camera: SiteCamera) -> NDArray[np.uint8]:
    """The camera's view of the painted ground and the sky, lit."""
    intrinsics, rotation, translation = camera.matrices()
    width, height = camera.camera.width, camera.camera.height
    ground = site.ground
    image_from_ground = intrinsics @ np.column_stack([rotation[:, 0], rotation[:, 1], translation])
    to_opencv = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    homography = to_opencv @ image_from_ground @ ground.world_from_pixel()
    view = cv2.warpPerspective(
        ground.image, homography, (width, height), flags=cv2.INTER_LINEAR, borderValue=_FAR_GROUND
    ).astype(np.float64)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    rays = pixels @ np.linalg.inv(intrinsics).T @ rotation  # world directions of the pixels' rays
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    rise = rays[..., 2]
    sky = rise > -0.01  # at or above the horizon: no ground in front of the camera
    if sky.any():
        blend = np.clip(rise / 0.3, 0.0, 1.0)[..., None]
        view[sky] = (_SKY_HORIZON * (1 - blend) + _SKY_TOP * blend)[sky]
    haze = np.clip((rise + 0.12) / 0.11, 0.0, 1.0)[..., None]  # far ground fades into the horizon
    view = view * (1 - haze * 0.6) + _SKY_HORIZON * haze * 0.6
    lit = camera.lighting.apply(view)
    return np.clip(np.round(lit), 0, 255).astype(np.uint8)


class _Noise:
    """Sensor noise: a few precomputed noise fields, a random one at a random offset per frame."""

    _PAD: Final = 16

    def __init__(self, sigma: float, width: int, height: int, rng: np.random.Generator) -> None:
        self._rng = rng
        self._size = (height, width)
        self._fields: list[tuple[NDArray[np.uint8], NDArray[np.uint8]]] = []
        if sigma <= 0:
            return
        for _ in range(4):
            field = np.round(rng.normal(0.0, sigma, (height + self._PAD, width + self._PAD, 3)))
            self._fields.append(
                (np.clip(field, 0, 255).astype(np.uint8), np.clip(-field, 0, 255).astype(np.uint8))
            )

    def apply(self, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if not self._fields:
            return image
        which, dy, dx = (int(v) for v in self._rng.integers(0, [len(self._fields), self._PAD, self._PAD]))
        height, width = self._size
        plus, minus = self._fields[which]
        window = (slice(dy, dy + height), slice(dx, dx + width))
        return np.asarray(cv2.subtract(cv2.add(image, plus[window]), minus[window]), dtype=np.uint8)


def _shade(
    colours: NDArray[np.float64], normals: NDArray[np.float64], camera: SiteCamera
) -> NDArray[np.int64]:
    """Face colours lit by the sun and the camera: ``(..., 6, 3)`` ints."""
    light = _AMBIENT + _DIFFUSE * np.clip(normals @ _SUN, 0.0, None)
    lit = camera.lighting.apply(colours * light[..., None])
    return np.clip(np.round(lit), 0, 255).astype(np.int64)


def _world_normals(heading: NDArray[np.float64]) -> NDArray[np.float64]:
    """Outward face normals ``(P, 6, 3)`` of boxes turned by ``heading (P,)``."""
    cos, sin = np.cos(heading)[:, None], np.sin(heading)[:, None]
    local = FACE_NORMALS[None, :, :]
    x = cos * local[..., 0] - sin * local[..., 1]
    y = sin * local[..., 0] + cos * local[..., 1]
    return np.stack([x, y, np.broadcast_to(local[..., 2], x.shape)], axis=-1)


@dataclass(slots=True)
class _Item:
    """Something to draw in one frame: an actor (``actor >= 0``) or a structure."""

    distance: float
    actor: int
    parts: range
    box: tuple[float, float, float, float]  # clipped to the image
    polygons: list[tuple[NDArray[np.int32], tuple[int, int, int]]]


class _CameraRenderer:
    """Draws one camera's frames; holds that camera's projections of the whole scene."""

    def __init__(self, site: Site, camera: SiteCamera, scene: _Scene) -> None:
        self.site = site
        self.camera = camera
        self.scene = scene
        intrinsics, rotation, translation = camera.matrices()
        self.intrinsics, self.rotation, self.translation = intrinsics, rotation, translation
        self.centre = -rotation.T @ translation
        self.size = (camera.camera.width, camera.camera.height)
        self.local = scene.corners @ rotation.T + translation  # (F, 8P, 3)
        depth = self.local[..., 2]
        self.uv = self._project(self.local)
        self.fixed = np.round((self.uv - 0.5) * 16).astype(np.int32)
        count = len(scene.parts) - 1
        if count:
            starts = scene.parts[:-1] * 8
            self.depth_min = np.minimum.reduceat(depth, starts, axis=1)
            self.depth_max = np.maximum.reduceat(depth, starts, axis=1)
            low = np.minimum.reduceat(self.uv, starts, axis=1)
            high = np.maximum.reduceat(self.uv, starts, axis=1)
            self.boxes = self._clip_boxes(np.concatenate([low, high], axis=-1))
            sizes = np.diff(scene.parts * 8).astype(np.float64)
            middle = np.add.reduceat(self.local, starts, axis=1) / sizes[None, :, None]
            self.distance = np.linalg.norm(middle, axis=-1)
            # Beyond one side plane of the view frustum with every corner: out of sight, even
            # when partly behind the camera (which the boxes above do not handle).
            rows = self.local @ intrinsics.T  # (u z, v z, z) per corner
            width, height = self.size
            sides = np.stack(
                [
                    rows[..., 0],
                    width * rows[..., 2] - rows[..., 0],
                    rows[..., 1],
                    height * rows[..., 2] - rows[..., 1],
                ],
                axis=-1,
            )
            self.outside: NDArray[np.bool_] = np.asarray(
                (np.maximum.reduceat(sides, starts, axis=1) < 0).any(axis=-1), dtype=np.bool_
            )
        self.static_items = self._static_items()

    def _project(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        projected = points @ self.intrinsics.T
        uv: NDArray[np.float64] = projected[..., :2] / np.maximum(projected[..., 2:3], NEAR)
        return uv

    def _clip_boxes(self, boxes: NDArray[np.float64]) -> NDArray[np.float64]:
        width, height = self.size
        clipped: NDArray[np.float64] = np.clip(boxes, 0.0, [width, height, width, height])
        return clipped

    def _faces(
        self,
        local: NDArray[np.float64],
        fixed: NDArray[np.int32],
        normals: NDArray[np.float64],
        world: NDArray[np.float64],
        shades: NDArray[np.int64],
        clipped: bool,
    ) -> tuple[list[tuple[NDArray[np.int32], tuple[int, int, int]]], NDArray[np.float64] | None]:
        """Polygons of one box's faces that face the camera; with ``clipped``, also the bounds of
        the whole box after near-plane clipping (``None`` if nothing is left)."""
        facing = np.einsum("fk,fk->f", normals, self.centre - world[FACE_CORNERS[:, 0]]) > 1e-9
        polygons: list[tuple[NDArray[np.int32], tuple[int, int, int]]] = []
        if not clipped:
            for face in np.flatnonzero(facing).tolist():
                b, g, r = shades[face].tolist()
                polygons.append((fixed[FACE_CORNERS[face]], (b, g, r)))
            return polygons, None
        low, high = np.full(2, np.inf), np.full(2, -np.inf)
        for face in range(6):
            polygon = _clip_near(local[FACE_CORNERS[face]])
            if len(polygon) < 3:
                continue
            uv = self._project(polygon)
            low, high = np.minimum(low, uv.min(axis=0)), np.maximum(high, uv.max(axis=0))
            if facing[face]:
                b, g, r = shades[face].tolist()
                polygons.append((np.round((uv - 0.5) * 16).astype(np.int32), (b, g, r)))
        bounds = None if not np.isfinite(low).all() else np.concatenate([low, high])
        return polygons, bounds

    def _static_items(self) -> list[_Item]:
        """The structures as this camera sees them (they never move)."""
        scene = self.scene
        shades = _shade(
            scene.static_colours, np.broadcast_to(FACE_NORMALS, scene.static_colours.shape), self.camera
        )
        local_all = scene.static_corners @ self.rotation.T + self.translation
        uv_all = self._project(local_all)
        fixed_all = np.round((uv_all - 0.5) * 16).astype(np.int32)
        items: list[_Item] = []
        for index in range(len(scene.static_colours)):
            corners = slice(8 * index, 8 * index + 8)
            local = local_all[corners]
            if local[:, 2].max() <= NEAR:
                continue
            whole = bool(local[:, 2].min() > NEAR)
            polygons, bounds = self._faces(
                local,
                fixed_all[corners],
                FACE_NORMALS,
                scene.static_corners[corners],
                shades[index],
                not whole,
            )
            if whole:
                uv = uv_all[corners]
                bounds = np.concatenate([uv.min(axis=0), uv.max(axis=0)])
            if bounds is None:
                continue
            x0, y0, x1, y1 = self._clip_boxes(bounds).tolist()
            if x1 > x0 and y1 > y0:
                distance = float(np.linalg.norm(local.mean(axis=0)))
                items.append(_Item(distance, -1, range(0), (x0, y0, x1, y1), polygons))
        return items

    def items(self, frame: int) -> list[_Item]:
        """What is (partly) in the image at ``frame``, farthest first."""
        scene, site = self.scene, self.site
        items: list[_Item] = []
        count = len(scene.parts) - 1
        if count:
            active = site.trajectories.active[frame] & (self.depth_max[frame] > NEAR) & ~self.outside[frame]
            boxes = self.boxes[frame]
            whole = np.asarray(self.depth_min[frame] > NEAR, dtype=np.bool_)
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            candidates = np.flatnonzero(active & (inside | ~whole))
            if len(candidates):
                part_index = np.concatenate(
                    [np.arange(scene.parts[n], scene.parts[n + 1]) for n in candidates]
                )
                normals = _world_normals(scene.part_heading[frame, part_index])
                shades = _shade(scene.colours[part_index], normals, self.camera)
                row = 0
                for actor in candidates.tolist():
                    parts = range(int(scene.parts[actor]), int(scene.parts[actor + 1]))
                    polygons: list[tuple[NDArray[np.int32], tuple[int, int, int]]] = []
                    low, high = np.full(2, np.inf), np.full(2, -np.inf)
                    for part in parts:
                        corners = slice(8 * part, 8 * part + 8)
                        faces, bounds = self._faces(
                            self.local[frame, corners],
                            self.fixed[frame, corners],
                            normals[row],
                            scene.corners[frame, corners],
                            shades[row],
                            not whole[actor],
                        )
                        polygons += faces
                        if bounds is not None:
                            low, high = np.minimum(low, bounds[:2]), np.maximum(high, bounds[2:])
                        row += 1
                    if whole[actor]:
                        x0, y0, x1, y1 = boxes[actor].tolist()
                    elif np.isfinite(low).all():
                        x0, y0, x1, y1 = self._clip_boxes(np.concatenate([low, high])).tolist()
                    else:
                        continue
                    if x1 > x0 and y1 > y0:
                        distance = float(self.distance[frame, actor])
                        items.append(_Item(distance, actor, parts, (x0, y0, x1, y1), polygons))
        items += self.static_items
        items.sort(key=lambda item: -item.distance)
        return items


def _draw(
    image: NDArray[np.uint8], labels: NDArray[np.uint16], items: list[_Item]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Draw ``items`` in order; each one's pixel count when drawn, and left visible at the end."""
    height, width = labels.shape
    drawn = np.zeros(len(items), np.int64)
    visible = np.zeros(len(items), np.int64)
    regions: list[tuple[slice, slice]] = []
    for label, item in enumerate(items, start=1):
        for polygon, colour in item.polygons:
            cv2.fillConvexPoly(image, polygon, colour, cv2.LINE_8, 4)
            cv2.fillConvexPoly(labels, polygon, label, cv2.LINE_8, 4)
        x0, y0 = max(0, math.floor(item.box[0]) - 1), max(0, math.floor(item.box[1]) - 1)
        x1, y1 = min(width, math.ceil(item.box[2]) + 1), min(height, math.ceil(item.box[3]) + 1)
        regions.append((slice(y0, y1), slice(x0, x1)))
        if item.actor >= 0:  # nothing nearer is drawn yet: all of the object's pixels show
            drawn[label - 1] = np.count_nonzero(labels[regions[-1]] == label)
    for label, (item, region) in enumerate(zip(items, regions, strict=True), start=1):
        if item.actor >= 0:
            visible[label - 1] = np.count_nonzero(labels[region] == label)
    return drawn, visible


def empty_view(site: Site, camera: SiteCamera) -> NDArray[np.uint8]:
    """What ``camera`` sees of the site with nobody in it: the lit ground and the structures,
    without sensor noise. A clean background plate, as taken when a camera is commissioned."""
    renderer = _CameraRenderer(site, camera, _scene(site, actors=False))
    image = _background(site, camera)
    _draw(image, np.zeros(image.shape[:2], np.uint16), renderer.static_items)
    return image


def _render_camera(
    site: Site, index: int, scene: _Scene, video: Path | None
) -> tuple[MotTable, NDArray[np.float64]]:
    """Render one camera (writing ``video`` unless None); its GT rows and their world positions."""
    camera = site.cameras[index]
    spec = site.spec
    renderer = _CameraRenderer(site, camera, scene)
    background = _background(site, camera)
    noise = _Noise(
        camera.lighting.noise, spec.width, spec.height, np.random.default_rng([site.seed, 7919, index])
    )
    outages = [outage for outage in site.outages if outage.camera_id == camera.id]
    labels = np.zeros((spec.height, spec.width), np.uint16)
    black = np.zeros((spec.height, spec.width, 3), np.uint8)
    rows: list[list[float]] = []
    world: list[list[float]] = []
    writer = VideoWriter(video, spec.fps, options=_ENCODER) if video is not None else None
    try:
        for frame in range(site.num_frames):
            if any(outage.covers(frame) for outage in outages):
                if writer is not None:
                    writer.write(black)
                continue
            items = renderer.items(frame)
            image = background.copy()
            labels.fill(0)
            drawn, visible = _draw(image, labels, items)
            for item, full, seen in zip(items, drawn.tolist(), visible.tolist(), strict=True):
                if item.actor < 0:
                    continue
                x0, y0, x1, y1 = item.box
                if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                    continue
                actor = site.actors[item.actor]
                ratio = min(1.0, seen / full) if full else 0.0
                rows.append(
                    [
                        frame + 1,
                        actor.id,
                        round(x0, 2),
                        round(y0, 2),
                        round(x1 - x0, 2),
                        round(y1 - y0, 2),
                        1,
                        actor.class_id,
                        round(ratio, 3),
                    ]
                )
                world.append(site.trajectories.position[frame, item.actor].round(3).tolist())
            if writer is not None:
                writer.write(noise.apply(image))
    finally:
        if writer is not None:
            writer.close()
    table = MotTable.from_array(np.array(rows, dtype=np.float64).reshape(-1, 9))
    order = np.lexsort((table.track_id, table.frame))
    return table[order], np.array(world, dtype=np.float64).reshape(-1, 2)[order]


def _visits(frames: NDArray[np.int64], gap: int) -> list[tuple[int, int]]:
    """Runs of frames with holes of at most ``gap`` frames: ``(first, last)`` each."""
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) > gap + 1)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(frames) - 1]
    return [(int(frames[s]), int(frames[e])) for s, e in zip(starts, ends, strict=True)]


def camera_pairs(gt: dict[str, MotTable], fps: float) -> list[dict[str, Any]]:
    """For each ordered camera pair: whether they see an object at the same time, and the
    transit times of objects leaving one camera's view and next appearing in the other's.

    A transit is measured from the end of a visit to ``a`` (sightings with holes under a
    second) to the start of the object's first visit to ``b`` that begins after it, when no
    camera saw the object in between.
    """
    names = list(gt)
    gap = max(1, round(fps))
    visits: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for name, table in gt.items():
        for obj in np.unique(table.track_id).tolist():
            visits[(name, obj)] = _visits(np.unique(table.frame[table.track_id == obj]), gap)
    pairs: list[dict[str, Any]] = []
    for a in names:
        for b in names:
            if a == b:
                continue
            seen_a = set(zip(gt[a].frame.tolist(), gt[a].track_id.tolist(), strict=True))
            seen_b = set(zip(gt[b].frame.tolist(), gt[b].track_id.tolist(), strict=True))
            shared = len(seen_a & seen_b)
            transits: list[float] = []
            for obj in sorted(set(gt[a].track_id.tolist()) & set(gt[b].track_id.tolist())):
                others = [
                    visit for name in names if name not in (a, b) for visit in visits.get((name, obj), [])
                ]
                for _, end in visits[(a, obj)]:
                    later = [start for start, _ in visits[(b, obj)] if start > end]
                    if not later:
                        continue
                    start = min(later)
                    if any(first <= start and last >= end for first, last in others):
                        continue
                    transits.append((start - end) / fps)
            entry: dict[str, Any] = {"cameras": [a, b], "overlap": shared > 0, "shared_sightings": shared}
            if transits:
                values = np.asarray(transits)
                entry["transit_seconds"] = {
                    "count": len(transits),
                    "min": round(float(values.min()), 3),
                    "median": round(float(np.median(values)), 3),
                    "max": round(float(values.max()), 3),
                }
            pairs.append(entry)
    return pairs


def _write_trajectories(path: Path, site: Site) -> None:
    trajectories = site.trajectories
    frames, columns = np.nonzero(trajectories.active)
    ids = np.array([actor.id for actor in site.actors], dtype=np.int64)[columns]
    order = np.lexsort((ids, frames))
    heading = np.angle(np.exp(1j * trajectories.heading[frames, columns]))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["frame", "object_id", "x", "y", "heading"])
        for i in order.tolist():
            f, c = int(frames[i]), int(columns[i])
            x, y = trajectories.position[f, c]
            writer.writerow([f + 1, int(ids[i]), f"{x:.3f}", f"{y:.3f}", f"{heading[i]:.4f}"])


def render_site(site: Site, root: str | Path, *, write_video: bool = True) -> RenderedSite:
    """Render every camera of ``site`` and write the videos and ground truth under ``root``.

    Files: ``<camera>.mp4`` per camera; ``gt/<camera>/gt/gt.txt`` and ``gt/<camera>/seqinfo.ini``
    (MOTChallenge ground truth, global ids); ``gt/mtmc.txt`` (all cameras, with ground-plane
    positions); ``site.json`` (calibrated cameras, plan, objects, parking sessions, outages,
    camera pairs); ``trajectories.csv`` (every object's position and heading per frame);
    ``site_map.png`` (a top view). With ``write_video=False`` the frames are still drawn (the
    visibilities need them) but not encoded.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    spec = site.spec
    scene = _scene(site)
    videos: dict[str, Path] = {}
    gt: dict[str, MotTable] = {}
    gt_paths: dict[str, Path] = {}
    world: dict[str, NDArray[np.float64]] = {}
    for index, camera in enumerate(site.cameras):
        video = root / f"{camera.id}.mp4" if write_video else None
        table, positions = _render_camera(site, index, scene, video)
        if video is not None:
            videos[camera.id] = video
        gt[camera.id], world[camera.id] = table, positions
        gt_path = root / "gt" / camera.id / "gt" / "gt.txt"
        write_mot(gt_path, table, columns=9)
        info = SequenceInfo(
            name=camera.id, length=site.num_frames, frame_rate=spec.fps, width=spec.width, height=spec.height
        )
        write_seqinfo(root / "gt" / camera.id / "seqinfo.ini", info)
        gt_paths[camera.id] = gt_path
    mtmc = MtmcTable.from_mot_tables(gt, world)
    mtmc_path = root / "gt" / "mtmc.txt"
    write_mtmc(mtmc_path, mtmc)
    trajectories = root / "trajectories.csv"
    _write_trajectories(trajectories, site)
    map_image, view = site_map_image(
        site.map, site.cameras, site.ground, pixels_per_metre=_MAP_PIXELS_PER_METRE
    )
    site_map = root / "site_map.png"
    cv2.imwrite(str(site_map), map_image)
    payload = site.to_dict()
    payload["map"]["image"] = {
        "file": site_map.name,
        "size": [int(map_image.shape[1]), int(map_image.shape[0])],
        "pixels_per_metre": view.pixels_per_metre,
        "origin": [view.x_min, view.y_max],
        "pixel_of_world": "u = (x - origin[0]) * pixels_per_metre, v = (origin[1] - y) * pixels_per_metre",
    }
    payload["camera_pairs"] = camera_pairs(gt, spec.fps)
    payload["files"] = {
        "videos": {name: path.name for name, path in videos.items()},
        "gt": {name: str(path.relative_to(root)) for name, path in gt_paths.items()},
        "mtmc": str(mtmc_path.relative_to(root)),
        "trajectories": trajectories.name,
    }
    site_json = root / "site.json"
    site_json.write_text(json.dumps(payload, indent=1) + "\n")
    return RenderedSite(
        root=root,
        site=site,
        videos=videos,
        gt=gt,
        gt_paths=gt_paths,
        mtmc=mtmc,
        mtmc_path=mtmc_path,
        site_json=site_json,
        site_map=site_map,
        trajectories=trajectories,
    )
