"""Who moves where: vehicles that enter, park, dwell and leave; pedestrians on the footpaths.

Every actor follows a *plan*: paths (polylines with rounded corners, sampled every 5 cm)
driven with a speed profile that respects a cruise speed, acceleration and braking limits and a
lateral-acceleration limit on curves (so vehicles slow to turn), joined by waits. Plans are
accepted one at a time; a plan that would bring two actors closer than their footprints allow
is shifted in time (a later arrival, a longer dwell, a later walk) until it fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.sim.site.layout import Box, Colour, ParkingSpace, SiteMap

PEDESTRIAN_CLASS: Final = 1  # MOTChallenge classes
VEHICLE_CLASS: Final = 3
SPAWN_DISTANCE: Final = 45.0  # actors appear and vanish this far beyond the lot, out of every view
TURN_RADIUS: Final = 4.0
GATE_SPEED: Final = 2.5  # m/s through the gate and exit barriers
CHECK_STEP: Final = 0.05  # seconds between collision checks
_STEP: Final = 0.05  # metres between path samples

Kind = Literal["vehicle", "pedestrian"]

# Body colours of vehicles (BGR): well apart in hue or brightness, none asphalt grey.
VEHICLE_COLOURS: Final[tuple[Colour, ...]] = (
    (40, 40, 190),  # red
    (170, 80, 30),  # blue
    (232, 234, 230),  # white
    (36, 34, 38),  # black
    (40, 196, 226),  # yellow
    (60, 140, 40),  # green
    (30, 120, 232),  # orange
    (150, 60, 120),  # purple
    (150, 150, 30),  # teal
    (150, 190, 214),  # beige
    (40, 30, 112),  # maroon
    (226, 170, 96),  # light blue
)
_WINDOW: Final[Colour] = (74, 62, 56)
_LEG_COLOURS: Final[tuple[Colour, ...]] = (
    (110, 62, 34),
    (44, 42, 40),
    (120, 150, 170),
    (80, 80, 84),
    (60, 40, 90),
)
_SKIN: Final[tuple[Colour, ...]] = ((140, 168, 214), (104, 132, 180), (62, 84, 124))


@dataclass(frozen=True, slots=True)
class Actor:
    """A moving object with a global id: its shape as boxes in its body frame (``+x`` forward)."""

    id: int
    kind: Kind
    parts: tuple[Box, ...]
    colour: Colour  # the identifying colour: a vehicle's body, a pedestrian's torso

    @property
    def class_id(self) -> int:
        return VEHICLE_CLASS if self.kind == "vehicle" else PEDESTRIAN_CLASS

    @property
    def footprint(self) -> tuple[float, float]:
        """Length and width of the whole actor (its largest part)."""
        return max(part.size[0] for part in self.parts), max(part.size[1] for part in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "class": self.class_id,
            "colour": list(self.colour),
            "parts": [part.to_dict() for part in self.parts],
        }


@dataclass(frozen=True, slots=True)
class ParkingSession:
    """One vehicle's visit, in seconds from the start of the recording.

    ``entry_time`` is when the vehicle's centre crosses the gate line, ``park_time`` when it
    stops in its space, ``leave_time`` when it starts to back out, ``exit_time`` when it crosses
    the exit line; ``None`` for what falls outside the recording (a vehicle parked before it
    started, or still parked at its end).
    """

    object_id: int
    space_id: int
    entry_time: float | None
    park_time: float | None
    leave_time: float | None
    exit_time: float | None

    @property
    def complete(self) -> bool:
        return self.entry_time is not None and self.exit_time is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "space_id": self.space_id,
            "entry_time": self.entry_time,
            "park_time": self.park_time,
            "leave_time": self.leave_time,
            "exit_time": self.exit_time,
        }


@dataclass(frozen=True, slots=True)
class Trajectories:
    """Every actor at every frame: ``position (F, N, 2)`` metres (the ground point under the
    actor's centre), ``heading (F, N)`` radians from ``+x``, ``active (F, N)`` whether the actor
    is in the world; ``times (F,)`` seconds. Column ``n`` is ``Site.actors[n]``."""

    times: NDArray[np.float64]
    position: NDArray[np.float64]
    heading: NDArray[np.float64]
    active: NDArray[np.bool_]


# ---------------------------------------------------------------------------------- appearance
def _jitter(colour: Colour, rng: np.random.Generator, amount: float) -> Colour:
    values = np.clip(np.asarray(colour, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    b, g, r = (int(v) for v in np.round(values))
    return b, g, r


def _scaled(colour: Colour, factor: float) -> Colour:
    b, g, r = (round(min(255.0, c * factor)) for c in colour)
    return b, g, r


def make_vehicle(
    actor_id: int,
    rng: np.random.Generator,
    colour: Colour,
    *,
    van: bool = False,
    size: tuple[float, float] | None = None,
) -> Actor:
    """A car (a 0.95 m body and a glazed cabin, 1.5 m in all) or a 2.9 m high-roof van."""
    if van:
        length, width = size or (5.4, 2.1)
        body = Box((0.0, 0.0), (length, width, 2.0), 0.0, (_scaled(colour, 0.85),) + (colour,) * 5)
        cabin_colours = (_WINDOW, colour, colour, colour, _scaled(colour, 0.8), colour)
        cabin = Box((0.0, 0.0), (length, width, 0.9), 2.0, cabin_colours)
        return Actor(actor_id, "vehicle", (body, cabin), colour)
    if size is None:
        length, width = float(rng.uniform(4.2, 4.8)), float(rng.uniform(1.74, 1.86))
    else:
        length, width = size
    body_colours = (_scaled(colour, 0.85), _scaled(colour, 0.92), colour, colour, colour, colour)
    body = Box((0.0, 0.0), (length, width, 0.95), 0.0, body_colours)
    roof = _scaled(colour, 0.78)
    cabin = Box((-0.2, 0.0), (length * 0.54, width - 0.2, 0.55), 0.95, (_WINDOW,) * 4 + (roof, roof))
    return Actor(actor_id, "vehicle", (body, cabin), colour)


def make_pedestrian(actor_id: int, rng: np.random.Generator) -> Actor:
    """Legs, torso and head boxes, about 0.5 x 0.4 x 1.75 m, with torso and leg colours."""
    hue = int(rng.integers(0, 180))
    hsv = np.array([[[hue, int(rng.integers(140, 230)), int(rng.integers(120, 225))]]], np.uint8)
    b, g, r = (int(v) for v in np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))[0, 0])
    torso: Colour = (b, g, r)
    legs = _jitter(_LEG_COLOURS[int(rng.integers(len(_LEG_COLOURS)))], rng, 8.0)
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _jitter((30, 34, 40), rng, 10.0)
    scale = float(rng.uniform(0.92, 1.08))
    leg_height, torso_height, head_height = 0.85 * scale, 0.62 * scale, 0.26 * scale
    parts = (
        Box((0.0, 0.0), (0.28, 0.38, leg_height), 0.0, (legs,) * 6),
        Box((0.0, 0.0), (0.34, 0.5, torso_height), leg_height, (torso,) * 5 + (legs,)),
        Box((0.0, 0.0), (0.22, 0.2, head_height), leg_height + torso_height, (skin,) * 4 + (hair, skin)),
    )
    return Actor(actor_id, "pedestrian", parts, torso)


# ---------------------------------------------------------------------------------- paths
@dataclass(frozen=True, slots=True)
class _Path:
    xy: NDArray[np.float64]  # (S, 2)
    heading: NDArray[np.float64]  # (S,), unwrapped
    curvature: NDArray[np.float64]  # (S,), 1 / radius (0 on straights)


def rounded_polyline(points: Sequence[tuple[float, float]], radius: float) -> _Path:
    """A path through ``points`` with each corner replaced by a circular arc of ``radius``.

    Straight parts and arcs are sampled about every 5 cm; the heading is the tangent direction.
    """
    corners = np.asarray(points, dtype=np.float64)
    directions = np.diff(corners, axis=0)
    lengths = np.linalg.norm(directions, axis=1)
    if np.any(lengths < 1e-9):
        raise ValueError("a path must not repeat a point")
    directions /= lengths[:, None]
    headings = np.arctan2(directions[:, 1], directions[:, 0])
    xy: list[NDArray[np.float64]] = []
    heading: list[NDArray[np.float64]] = []
    curvature: list[NDArray[np.float64]] = []
    start = corners[0]
    current = float(headings[0])
    for index in range(len(corners) - 1):
        end = corners[index + 1]
        arc: tuple[NDArray[np.float64], float, float] | None = None
        if index + 1 < len(corners) - 1:
            turn = math.remainder(float(headings[index + 1] - headings[index]), 2 * math.pi)
            # a segment between two corners lends each arc half its length; an end segment all of it
            before = lengths[index] if index == 0 else lengths[index] / 2
            after = lengths[index + 1] if index + 2 == len(corners) - 1 else lengths[index + 1] / 2
            tangent = min(radius * math.tan(abs(turn) / 2), before, after)
            if abs(turn) > 1e-6:
                arc = (end - directions[index] * tangent, turn, tangent / math.tan(abs(turn) / 2))
                end = arc[0]
        span = float(np.linalg.norm(end - start))
        count = max(1, math.ceil(span / _STEP))
        fraction = np.arange(count) / count
        xy.append(start + np.outer(fraction, end - start))
        heading.append(np.full(count, current))
        curvature.append(np.zeros(count))
        if arc is not None:
            begin, turn, bend = arc
            sign = 1.0 if turn > 0 else -1.0
            centre = begin + sign * bend * np.array([-math.sin(current), math.cos(current)])
            count = max(2, math.ceil(abs(turn) * bend / _STEP))
            angles = current + sign * np.arange(count) / count * abs(turn)
            xy.append(centre + sign * bend * np.column_stack([np.sin(angles), -np.cos(angles)]))
            heading.append(angles)
            curvature.append(np.full(count, 1.0 / bend))
            current += turn
            start = centre + sign * bend * np.array([math.sin(current), -math.cos(current)])
        else:
            start = end
    xy.append(corners[-1][None, :])
    heading.append(np.array([current]))
    curvature.append(np.zeros(1))
    return _Path(np.concatenate(xy), np.concatenate(heading), np.concatenate(curvature))


@dataclass(frozen=True, slots=True)
class Leg:
    """A path driven or walked: positions, headings and times from the leg's start."""

    xy: NDArray[np.float64]
    heading: NDArray[np.float64]
    times: NDArray[np.float64]

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def drive(
    path: _Path,
    cruise: float,
    *,
    start_speed: float = 0.0,
    end_speed: float = 0.0,
    accel: float = 1.5,
    decel: float = 2.0,
    lateral: float = 1.2,
    limit: NDArray[np.float64] | None = None,
    reverse: bool = False,
) -> Leg:
    """Time ``path`` with the fastest speed profile under the limits (m/s, m/s^2).

    ``limit`` caps the speed per sample (slow zones). ``reverse`` backs along the path: the
    actor faces the opposite of its direction of travel.
    """
    step = np.linalg.norm(np.diff(path.xy, axis=0), axis=1)
    speed = np.minimum(cruise, np.sqrt(lateral / np.maximum(path.curvature, 1e-9)))
    if limit is not None:
        speed = np.minimum(speed, limit)
    speed[0] = min(speed[0], start_speed)
    speed[-1] = min(speed[-1], end_speed)
    values = speed.tolist()
    ds = step.tolist()
    for i in range(1, len(values)):
        values[i] = min(values[i], math.sqrt(values[i - 1] ** 2 + 2 * accel * ds[i - 1]))
    for i in range(len(values) - 2, -1, -1):
        values[i] = min(values[i], math.sqrt(values[i + 1] ** 2 + 2 * decel * ds[i]))
    profile = np.asarray(values)
    dt = 2 * step / np.maximum(profile[:-1] + profile[1:], 1e-6)
    times = np.concatenate([[0.0], np.cumsum(dt)])
    heading = path.heading + math.pi if reverse else path.heading
    return Leg(path.xy, heading, times)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where an actor is over time: samples ``times`` (seconds, increasing), ``xy``, ``heading``;
    present from ``start`` to ``end`` (``inf``: stays to the end of the recording)."""

    times: NDArray[np.float64]
    xy: NDArray[np.float64]
    heading: NDArray[np.float64]
    start: float
    end: float

    @classmethod
    def compose(cls, start: float, steps: Sequence[Leg | float], *, stays: bool = False) -> Plan:
        """Legs one after another from ``start``; a number between legs is a wait in seconds."""
        times: list[NDArray[np.float64]] = []
        xy: list[NDArray[np.float64]] = []
        heading: list[NDArray[np.float64]] = []
        clock = start
        for step in steps:
            if isinstance(step, Leg):
                skip = 1 if times and times[-1][-1] >= clock else 0  # no wait: drop the repeated sample
                times.append(clock + step.times[skip:])
                xy.append(step.xy[skip:])
                heading.append(step.heading[skip:])
                clock += step.duration
            else:
                clock += float(step)
        angles = np.unwrap(np.concatenate(heading))
        end = math.inf if stays else clock
        return cls(np.concatenate(times), np.concatenate(xy), angles, start, end)

    @classmethod
    def still(cls, xy: tuple[float, float], heading: float) -> Plan:
        """Standing at ``xy`` for the whole recording."""
        return cls(
            np.array([0.0, 1.0]),
            np.array([xy, xy], dtype=np.float64),
            np.full(2, heading),
            -math.inf,
            math.inf,
        )

    def sample(
        self, times: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        """``(xy (T, 2), heading (T,), active (T,))`` at ``times``."""
        x = np.interp(times, self.times, self.xy[:, 0])
        y = np.interp(times, self.times, self.xy[:, 1])
        heading = np.interp(times, self.times, self.heading)
        active = np.asarray((times >= self.start) & (times <= self.end), dtype=np.bool_)
        return np.column_stack([x, y]), heading, active

    def time_at_x(self, x: float) -> float | None:
        """First time the actor's centre crosses ``x`` moving towards ``+x``, if it does."""
        ahead = self.xy[:, 0] >= x
        crossing = np.flatnonzero(~ahead[:-1] & ahead[1:])
        if len(crossing) == 0:
            return None
        i = int(crossing[0])
        x0, x1 = self.xy[i, 0], self.xy[i + 1, 0]
        fraction = (x - x0) / (x1 - x0) if x1 != x0 else 0.0
        return float(self.times[i] + fraction * (self.times[i + 1] - self.times[i]))


# ---------------------------------------------------------------------------------- traffic
def _discs(actor: Actor) -> tuple[NDArray[np.float64], float]:
    """Offsets along the heading and the radius of the discs that cover the actor's footprint."""
    length, width = actor.footprint
    radius = width / 2 + (0.35 if actor.kind == "vehicle" else 0.05)
    reach = max(0.0, length / 2 - radius)
    return np.array([-reach, reach]) if reach > 0 else np.zeros(1), radius


class Traffic:
    """Accepted plans, and the check that a new plan keeps clear of them.

    Checked every ``CHECK_STEP`` seconds over ``[0, duration]``; two actors conflict when the
    discs covering their footprints come within ``margin`` metres.
    """

    def __init__(self, duration: float) -> None:
        self.times = np.arange(0.0, duration + CHECK_STEP, CHECK_STEP)
        self._discs: list[tuple[NDArray[np.float64], NDArray[np.bool_], float, Kind]] = []
        self.plans: list[Plan] = []

    def _centres(self, actor: Actor, plan: Plan) -> tuple[NDArray[np.float64], NDArray[np.bool_], float]:
        xy, heading, active = plan.sample(self.times)
        offsets, radius = _discs(actor)
        direction = np.column_stack([np.cos(heading), np.sin(heading)])
        centres = xy[:, None, :] + offsets[None, :, None] * direction[:, None, :]
        return centres, active, radius

    def conflict(self, actor: Actor, plan: Plan) -> float | None:
        """The first time ``plan`` runs into an accepted plan, or ``None``."""
        centres, active, radius = self._centres(actor, plan)
        first = math.inf
        for other, other_active, other_radius, kind in self._discs:
            both = active & other_active
            if not both.any():
                continue
            # vehicles keep 0.4 m apart, people brush past each other, and people and vehicles 0.3 m
            margin = (0.4 if kind == "vehicle" else 0.0) if actor.kind == kind else 0.3
            gap = np.linalg.norm(centres[both][:, :, None, :] - other[both][:, None, :, :], axis=-1)
            close = (gap < radius + other_radius + margin).any(axis=(1, 2))
            if close.any():
                first = min(first, float(self.times[both][np.argmax(close)]))
        return None if first == math.inf else first

    def accept(self, actor: Actor, plan: Plan) -> None:
        centres, active, radius = self._centres(actor, plan)
        self._discs.append((centres, active, radius, actor.kind))
        self.plans.append(plan)


@dataclass(frozen=True, slots=True)
class VehicleRoute:
    """The legs of one parking visit (or of a drive straight through when ``space`` is None).

    ``arrive`` runs from beyond the gate into the space (or through to beyond the exit): legs,
    with a wait between them where the vehicle stops to give way.
    """

    space: ParkingSpace | None
    arrive: tuple[Leg | float, ...]
    back_out: Leg | None
    depart: Leg | None

    @property
    def arrive_duration(self) -> float:
        return sum(step.duration if isinstance(step, Leg) else step for step in self.arrive)


def _split(path: _Path, x: float) -> tuple[_Path, _Path]:
    """``path`` cut where it first reaches ``x`` (moving towards ``+x``)."""
    index = int(np.argmax(path.xy[:, 0] >= x))
    head = _Path(path.xy[: index + 1], path.heading[: index + 1], path.curvature[: index + 1])
    tail = _Path(path.xy[index:], path.heading[index:], path.curvature[index:])
    return head, tail


def vehicle_route(
    site_map: SiteMap,
    space: ParkingSpace | None,
    cruise: float,
    *,
    give_way: tuple[float, float] | None = None,
) -> VehicleRoute:
    """Enter through the gate, drive east along the lane, turn nose-in into ``space``; leave by
    backing out onto the lane (facing east) and driving out through the exit.

    ``give_way=(x, seconds)``: on the way in, stop with the vehicle's centre at ``x`` for that long.
    """
    lane_y = site_map.lane_y
    start = (site_map.gate_x - SPAWN_DISTANCE, lane_y)
    finish = (site_map.exit_x + SPAWN_DISTANCE, lane_y)

    def zones(path: _Path) -> NDArray[np.float64]:
        x = path.xy[:, 0]
        gate = (x > site_map.gate_x - 6.0) & (x < site_map.gate_x + 3.0)
        exit_ = (x > site_map.exit_x - 3.0) & (x < site_map.exit_x + 6.0)
        return np.where(gate | exit_, GATE_SPEED, np.inf)

    def arriving(path: _Path, end_speed: float) -> tuple[Leg | float, ...]:
        if give_way is None:
            return (drive(path, cruise, start_speed=cruise, end_speed=end_speed, limit=zones(path)),)
        head, tail = _split(path, give_way[0])
        return (
            drive(head, cruise, start_speed=cruise, limit=zones(head)),
            give_way[1],
            drive(tail, cruise, end_speed=end_speed, limit=zones(tail)),
        )

    if space is None:
        return VehicleRoute(
            None, arriving(rounded_polyline([start, finish], TURN_RADIUS), cruise), None, None
        )
    x, y = space.centre
    arrive = arriving(rounded_polyline([start, (x, lane_y), (x, y)], TURN_RADIUS), 0.0)
    swing = (x - TURN_RADIUS - 0.5, lane_y)
    back = rounded_polyline([(x, y), (x, lane_y), swing], TURN_RADIUS)
    back_out = drive(back, 2.2, accel=1.2, decel=1.5, reverse=True)
    out = rounded_polyline([swing, finish], TURN_RADIUS)
    depart = drive(out, cruise, end_speed=cruise, limit=zones(out))
    return VehicleRoute(space, arrive, back_out, depart)


def walk(points: Sequence[tuple[float, float]], speed: float) -> Leg:
    """A pedestrian's walk along ``points`` (corners rounded at 0.6 m) at ``speed``."""
    path = rounded_polyline(points, 0.6)
    return drive(path, speed, start_speed=speed, end_speed=speed, accel=0.8, decel=0.8, lateral=1.5)


def pedestrian_route(site_map: SiteMap, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A walk between the gate side and the rows: along the south footpath past the gate camera,
    across the lot on the zebra crossing, and away along the north footpath (or the reverse)."""
    south, north = site_map.footpath_y
    west, east = site_map.gate_x - SPAWN_DISTANCE, site_map.exit_x + SPAWN_DISTANCE
    crossing = float(np.mean(site_map.crosswalk) + rng.uniform(-0.9, 0.9))
    # people keep to the right: east-bound on the south half of a footpath, west-bound on the north half
    keep = float(rng.uniform(0.25, 0.65))
    choice = int(rng.integers(4))
    away = east if rng.random() < 0.5 else west
    if choice == 0:  # gate side -> rows -> away north
        points = [
            (west, south - keep),
            (crossing, south - keep),
            (crossing, north + (keep if away < crossing else -keep)),
            (away, north + (keep if away < crossing else -keep)),
        ]
    elif choice == 1:  # the reverse
        points = [
            (away, north + (keep if away > crossing else -keep)),
            (crossing, north + (keep if away > crossing else -keep)),
            (crossing, south + keep),
            (west, south + keep),
        ]
    elif choice == 2:  # all along the south footpath, gate to exit
        points = [(west, south - keep), (east, south - keep)]
    else:
        points = [(east, south + keep), (west, south + keep)]
    return points
