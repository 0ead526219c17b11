"""A whole site for a spec and a seed: plan, cameras, actors, their motion, and the scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossview.sim.site.layout import (
    GroundRaster,
    Lighting,
    ParkingSpace,
    SiteCamera,
    SiteMap,
    build_map,
    paint_ground,
    place_cameras,
    with_lighting,
)
from crossview.sim.site.motion import (
    VEHICLE_COLOURS,
    Actor,
    Leg,
    ParkingSession,
    Plan,
    Traffic,
    Trajectories,
    VehicleRoute,
    make_pedestrian,
    make_vehicle,
    pedestrian_route,
    vehicle_route,
    walk,
)
from crossview.sim.site.spec import SiteSpec

_PARK_WAIT = 0.6  # seconds between backing out and driving off
_MIN_SESSIONS = 3  # the earliest arrivals always try to leave again
GIVE_WAY_SECONDS = 2.5  # how long a vehicle waits for a crossing pedestrian
_CROSSING_AFTER = 1.0  # the pedestrian is mid-lane this long after the vehicle stopped


@dataclass(frozen=True, slots=True)
class Outage:
    """A camera that delivers only black frames for frames ``first``-``last`` (0-based, inclusive)."""

    camera_id: str
    first: int
    last: int
    fps: float

    def covers(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera_id,
            "frames": [self.first + 1, self.last + 1],  # 1-based, as in the ground-truth files
            "start_time": round(self.first / self.fps, 6),
            "end_time": round((self.last + 1) / self.fps, 6),
        }


@dataclass(frozen=True, slots=True)
class Site:
    """Everything about one synthetic parking facility, before rendering.

    ``actors[n]`` is column ``n`` of ``trajectories``; an actor's ``id`` is its global id in
    every ground-truth file. ``scenario`` says what the scenario changed (camera ids, actor ids).
    """

    spec: SiteSpec
    seed: int
    map: SiteMap
    cameras: tuple[SiteCamera, ...]
    actors: tuple[Actor, ...]
    trajectories: Trajectories
    sessions: tuple[ParkingSession, ...]
    outages: tuple[Outage, ...]
    ground: GroundRaster
    scenario: dict[str, Any] = field(default_factory=dict)

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(camera.id for camera in self.cameras)

    @property
    def num_frames(self) -> int:
        return int(self.trajectories.times.shape[0])

    def camera(self, camera_id: str) -> SiteCamera:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(f"no camera {camera_id!r}; cameras are {list(self.camera_ids)}")

    def to_dict(self) -> dict[str, Any]:
        """What ``site.json`` holds (without the files and camera-pair statistics rendering adds)."""
        spec = self.spec
        return {
            "scenario": spec.scenario,
            "seed": self.seed,
            "spec": spec.model_dump(),
            "fps": spec.fps,
            "num_frames": self.num_frames,
            "image_size": [spec.width, spec.height],
            "cameras": [camera.camera.model_dump() for camera in self.cameras],
            "camera_info": [camera.info() for camera in self.cameras],
            "map": self.map.to_dict(),
            "objects": [actor.to_dict() for actor in self.actors],
            "sessions": [session.to_dict() for session in self.sessions],
            "outages": [outage.to_dict() for outage in self.outages],
            "scenario_details": self.scenario,
        }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Builder:
    """Places actors one by one on a shared ``Traffic``; the state of one ``generate_site`` call."""

    def __init__(self, spec: SiteSpec, site_map: SiteMap, rng: np.random.Generator) -> None:
        self.spec = spec
        self.map = site_map
        self.rng = rng
        self.traffic = Traffic(spec.duration)
        self.actors: list[Actor] = []
        self.plans: list[Plan] = []
        self.sessions: list[ParkingSession] = []
        self.free = list(site_map.spaces)
        self.stops: dict[int, float] = {}  # vehicle id -> when it stopped to give way

    def _add(self, actor: Actor, plan: Plan) -> None:
        self.traffic.accept(actor, plan)
        self.actors.append(actor)
        self.plans.append(plan)

    @property
    def next_id(self) -> int:
        return len(self.actors) + 1

    def park_still(self, space: ParkingSpace, colour: tuple[int, int, int], *, van: bool) -> None:
        """A vehicle parked before the recording starts and staying to its end."""
        self.free.remove(space)
        actor = make_vehicle(self.next_id, self.rng, colour, van=van)
        self._add(actor, Plan.still(space.centre, space.heading))
        self.sessions.append(ParkingSession(actor.id, space.id, None, None, None, None))

    def vehicles(
        self,
        count: int,
        colours: list[tuple[int, int, int]],
        sizes: list[tuple[float, float] | None],
        *,
        give_way: tuple[int, float] | None = None,
    ) -> dict[int, int]:
        """``count`` vehicles arriving at staggered times; the earliest ones leave again.

        ``give_way=(index, x)``: that vehicle stops on its way in, its front bumper a metre
        short of ``x``, for ``GIVE_WAY_SECONDS`` (``stops`` records when). Returns the id
        given to each vehicle that found a slot, by its index in ``colours``.
        """
        spec, rng = self.spec, self.rng
        duration = spec.duration
        placed_ids: dict[int, int] = {}
        mean_gap = float(np.clip(0.5 * duration / max(count, 1), 2.5, 8.0))
        gate_time = 3.0 + float(rng.uniform(0.0, 1.5))
        for index in range(count):
            actor = make_vehicle(self.next_id, rng, colours[index], size=sizes[index])
            cruise = float(rng.uniform(3.5, 5.5))
            wants_to_leave = index < _MIN_SESSIONS or bool(rng.random() < 0.6)
            dwell = float(rng.uniform(10.0, 15.0) if index < _MIN_SESSIONS else rng.uniform(10.0, 30.0))
            order = [self.free[i] for i in rng.permutation(len(self.free)).tolist()]
            stop: tuple[float, float] | None = None
            if give_way is not None and give_way[0] == index:
                stop = (give_way[1] - 1.0 - actor.footprint[0] / 2, GIVE_WAY_SECONDS)
            # a vehicle that means to leave looks for a space it can also get out of in time
            tries: list[tuple[ParkingSpace | None, bool]] = (
                [(space, True) for space in order[:5]] if wants_to_leave else []
            )
            tries.append((order[0] if order else None, False))
            for space, must_leave in tries:
                route = vehicle_route(self.map, space, cruise, give_way=stop)
                probe = Plan.compose(0.0, route.arrive)
                spawn = gate_time - (probe.time_at_x(self.map.gate_x) or 0.0)
                placed = self._place_vehicle(
                    actor, route, spawn, dwell if wants_to_leave else None, must_leave
                )
                if placed is not None:
                    if space is not None:
                        self.free.remove(space)
                    placed_ids[index] = actor.id
                    first = route.arrive[0]
                    if stop is not None and isinstance(first, Leg):
                        self.stops[actor.id] = placed.start + first.duration
                    break
            gate_time += mean_gap * float(rng.uniform(0.6, 1.4))
        return placed_ids

    def _place_vehicle(
        self, actor: Actor, route: VehicleRoute, spawn: float, dwell: float | None, must_leave: bool = False
    ) -> Plan | None:
        """Accept the earliest plan for ``route`` from ``spawn`` on that keeps clear of the others.

        A vehicle that means to leave tries stays near ``dwell`` (at least 8 s, leaving at least
        3 s before the end of the recording) until its way out is clear; failing that it stays,
        or with ``must_leave`` gives up (``None``).
        """
        limit = self.spec.duration - 3.0
        exit_after: float | None = None
        if route.depart is not None:
            exit_after = Plan.compose(0.0, [route.depart]).time_at_x(self.map.exit_x)
        while spawn <= self.spec.duration:
            if route.space is None:
                plan = Plan.compose(spawn, route.arrive)
                if self.traffic.conflict(actor, plan) is None:
                    return self._accept(actor, plan, route, None)
                spawn += 0.5
                continue
            parked = spawn + route.arrive_duration
            plan = Plan.compose(spawn, route.arrive, stays=True)
            conflict = self.traffic.conflict(actor, plan)
            if conflict is not None and conflict < parked:
                spawn += 0.5  # the way in is busy: arrive a little later
                continue
            if (
                dwell is not None
                and route.back_out is not None
                and route.depart is not None
                and exit_after is not None
            ):
                latest = limit - parked - route.back_out.duration - _PARK_WAIT - exit_after
                wanted = min(dwell, latest)
                for shift in np.arange(0.0, 12.0, 0.5).tolist():
                    for stay in (wanted + shift, wanted - shift):
                        if not 8.0 <= stay <= latest:
                            continue
                        leaving = Plan.compose(
                            spawn, [*route.arrive, stay, route.back_out, _PARK_WAIT, route.depart]
                        )
                        if self.traffic.conflict(actor, leaving) is None:
                            return self._accept(actor, leaving, route, stay)
            if must_leave:
                return None
            if conflict is None:
                return self._accept(actor, plan, route, None)
            spawn += 0.5  # something passes where it would park: come later
        return None

    def _accept(self, actor: Actor, plan: Plan, route: VehicleRoute, dwell: float | None) -> Plan:
        self._add(actor, plan)
        self._record(actor, plan, route, dwell)
        return plan

    def _record(self, actor: Actor, plan: Plan, route: VehicleRoute, dwell: float | None) -> None:
        gate = plan.time_at_x(self.map.gate_x)
        if route.space is None:
            return
        parked = plan.start + route.arrive_duration
        leave = None if dwell is None else parked + dwell
        exit_time = None if dwell is None else plan.time_at_x(self.map.exit_x)
        duration = self.spec.duration
        self.sessions.append(
            ParkingSession(
                actor.id,
                route.space.id,
                _seconds(gate),
                _seconds(parked) if parked <= duration else None,
                _seconds(leave),
                _seconds(exit_time),
            )
        )

    def pedestrians(self, count: int, *, group: int = 1) -> None:
        """``count`` pedestrians on routes between the gate side and the rows, in groups of up to
        ``group`` who walk the same route in single file about a second apart."""
        spec, rng = self.spec, self.rng
        placed = 0
        while placed < count:
            size = min(count - placed, int(rng.integers(1, group + 1)))
            points = pedestrian_route(self.map, rng)
            speed = float(rng.uniform(1.2, 1.5))
            leg = walk(points, speed)
            low, high = -0.6 * leg.duration, 0.7 * spec.duration - 0.3 * leg.duration
            start = float(rng.uniform(low, max(low, high)))
            for _ in range(size):
                actor = make_pedestrian(self.next_id, rng)
                for _ in range(80):
                    plan = Plan.compose(start, [leg])
                    if self.traffic.conflict(actor, plan) is None:
                        self._add(actor, plan)
                        break
                    start += 0.7
                start += float(rng.uniform(0.8, 1.2))
            placed += size

    def crossing(self, vehicle_id: int, x: float) -> dict[str, Any]:
        """A pedestrian who crosses the lane along ``x`` right in front of a vehicle that stopped
        to give way (``vehicles(give_way=...)``), below the gate camera."""
        stop = self.stops.get(vehicle_id)
        if stop is None:
            return {}
        south, north = self.map.footpath_y
        actor = make_pedestrian(self.next_id, self.rng)
        leg = walk(
            [(x - 12.0, north + 0.4), (x, north + 0.4), (x, south - 0.4), (x - 30.0, south - 0.4)], 1.35
        )
        on_crossing = np.abs(leg.xy[:, 0] - x) < 1e-6
        at_lane = float(
            leg.times[np.argmin(np.where(on_crossing, np.abs(leg.xy[:, 1] - self.map.lane_y), np.inf))]
        )
        for shift in (0.0, 0.2, -0.2, 0.4, -0.4, 0.6, -0.6):
            walker = Plan.compose(stop + _CROSSING_AFTER + shift - at_lane, [leg])
            if self.traffic.conflict(actor, walker) is None:
                self._add(actor, walker)
                return {
                    "pedestrian_id": actor.id,
                    "vehicle_id": vehicle_id,
                    "crossing_time": round(stop + _CROSSING_AFTER + shift, 3),
                }
        return {}

    def trajectories(self, times: np.ndarray[Any, np.dtype[np.float64]]) -> Trajectories:
        count = len(self.plans)
        position = np.zeros((len(times), count, 2))
        heading = np.zeros((len(times), count))
        active = np.zeros((len(times), count), dtype=np.bool_)
        for index, plan in enumerate(self.plans):
            position[:, index], heading[:, index], active[:, index] = plan.sample(times)
        return Trajectories(times, position, heading, active)


def _colours(count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Distinct body colours: the palette in a random order, each jittered a little."""
    order = rng.permutation(len(VEHICLE_COLOURS)).tolist()
    colours: list[tuple[int, int, int]] = []
    for index in range(count):
        base = np.asarray(VEHICLE_COLOURS[order[index % len(order)]], dtype=np.float64)
        if index >= len(order):  # more vehicles than palette colours: shift the brightness
            base = base * (0.7 if (index // len(order)) % 2 else 1.2)
        values = np.clip(base + rng.uniform(-10.0, 10.0, 3), 0, 255).round().astype(int).tolist()
        colours.append((values[0], values[1], values[2]))
    return colours


def generate_site(spec: SiteSpec | None = None, seed: int = 0) -> Site:
    """A parking facility with cameras, actors and their motion for ``spec`` (defaults if None).

    Deterministic: the same spec and seed give the same site. See ``docs/simulation.md``.

    >>> site = generate_site(SiteSpec(duration=5.0, num_vehicles=1, num_pedestrians=1), seed=1)
    >>> site.camera_ids, site.trajectories.position.shape
    (('c1', 'c2', 'c3', 'c4'), (50, 2, 2))
    """
    spec = spec or SiteSpec()
    streams = np.random.SeedSequence(seed).spawn(4)
    camera_rng, ground_rng, actor_rng, scenario_rng = (np.random.default_rng(s) for s in streams)
    site_map = build_map(spec)
    cameras = list(place_cameras(spec, site_map, camera_rng))
    ground = paint_ground(site_map, ground_rng)
    builder = _Builder(spec, site_map, actor_rng)
    scenario = spec.scenario
    details: dict[str, Any] = {"name": scenario}
    vehicles, pedestrians = spec.num_vehicles, spec.num_pedestrians
    colours = _colours(vehicles, actor_rng)
    sizes: list[tuple[float, float] | None] = [None] * vehicles
    outages: list[Outage] = []
    group = 1
    row_cameras = [camera for camera in cameras if camera.role == "rows"]

    if scenario == "heavy_occlusion":
        # Vans parked in the near row right in front of a row camera hide the lane behind them.
        watcher = row_cameras[0] if row_cameras else cameras[0]
        near_row = [space for space in site_map.spaces if space.row == "north"]
        near_row.sort(key=lambda space: abs(space.centre[0] - watcher.position[0]))
        vans: list[int] = []
        van_colours = ((200, 202, 204), (64, 90, 150), (40, 110, 60))
        for space, colour in zip(near_row[:3], van_colours, strict=False):
            builder.park_still(space, colour, van=True)
            vans.append(builder.actors[-1].id)
        extra = max(2, vehicles // 2)
        colours += _colours(extra, scenario_rng)
        sizes += [None] * extra
        vehicles += extra
        pedestrians = 2 * pedestrians + 2
        group = 3  # people walking in single file hide one another from cameras that look along them
        details.update({"camera": watcher.id, "parked_vans": vans})
    elif scenario == "lookalike_vehicles":
        alike = min(vehicles, max(3, vehicles // 2))
        base = VEHICLE_COLOURS[0]
        picks = sorted(scenario_rng.choice(vehicles, size=alike, replace=False).tolist()) if vehicles else []
        for index in picks:
            values = (
                np.clip(np.asarray(base) + scenario_rng.uniform(-4.0, 4.0, 3), 0, 255).round().astype(int)
            )
            colours[index] = (int(values[0]), int(values[1]), int(values[2]))
            sizes[index] = (4.5, 1.8)
        details["lookalike_index"] = picks
    elif scenario == "low_light":
        dark = cameras[len(cameras) // 2 :]
        for camera in dark:
            lighting = Lighting(0.32, 10.0, (1.06, 0.96, 0.86), 3.0 * spec.noise + 3.0)
            cameras[cameras.index(camera)] = with_lighting(camera, lighting)
        details["cameras"] = [camera.id for camera in dark]
    elif scenario == "camera_outage":
        victim = row_cameras[-1] if row_cameras else cameras[-1]
        first = round(0.35 * spec.num_frames)
        last = max(first, round(0.6 * spec.num_frames) - 1)
        outages.append(Outage(victim.id, first, last, spec.fps))
        details["camera"] = victim.id

    crossing_x = site_map.gate_x - 1.5  # on the lane just inside the gate camera's near field
    give_way = (min(2, vehicles - 1), crossing_x) if scenario == "pedestrian_crossing" and vehicles else None
    placed = builder.vehicles(vehicles, colours, sizes, give_way=give_way)
    if scenario == "lookalike_vehicles":
        details["vehicle_ids"] = [placed[i] for i in details.pop("lookalike_index") if i in placed]
    if give_way is not None and give_way[0] in placed:
        details.update(builder.crossing(placed[give_way[0]], crossing_x))
        details["camera"] = cameras[0].id
    builder.pedestrians(pedestrians, group=group)

    times = np.arange(spec.num_frames, dtype=np.float64) / spec.fps
    trajectories = builder.trajectories(times)
    sessions = tuple(
        sorted(builder.sessions, key=lambda s: (s.entry_time is not None, s.entry_time or 0.0, s.object_id))
    )
    return Site(
        spec=spec,
        seed=seed,
        map=site_map,
        cameras=tuple(cameras),
        actors=tuple(builder.actors),
        trajectories=trajectories,
        sessions=sessions,
        outages=tuple(outages),
        ground=ground,
        scenario=details,
    )
