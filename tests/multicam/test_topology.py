from __future__ import annotations

import copy
import json
import math
import pickle
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from crossview import Camera
from crossview.multicam.geometry import look_at_camera
from crossview.multicam.topology import (
    CameraTopology,
    learn_topology,
    learn_transitions,
    overlaps_from_geometry,
    overlaps_from_visits,
    transition_gaps,
)
from tests.conftest import shared_path


def site() -> CameraTopology:
    """gate and lobby overlap; gate -> yard takes 5-40 s, yard -> gate 10-20 s; dock is isolated."""
    return CameraTopology.model_validate(
        {
            "cameras": ["gate", "lobby", "yard", "dock"],
            "overlaps": [["lobby", "gate"]],
            "transitions": {"gate->yard": [5, 40], "yard->gate": [10, 20], "lobby->lobby": [30, 300]},
        }
    )


# ---------------------------------------------------------------------------- config
def test_topology_loads_every_spelling_the_same() -> None:
    expected = site()
    as_entries = CameraTopology.model_validate(
        {
            "cameras": ["gate", "lobby", "yard", "dock"],
            "overlaps": [("gate", "lobby")],
            "transitions": [
                {"from_camera": "yard", "to_camera": "gate", "min_seconds": 10, "max_seconds": 20},
                {"from_camera": "gate", "to_camera": "yard", "min_seconds": 5, "max_seconds": 40},
                {"from_camera": "lobby", "to_camera": "lobby", "min_seconds": 30, "max_seconds": 300},
            ],
        }
    )
    windows: dict[tuple[str, str], Any] = {
        ("gate", "yard"): (5.0, 40.0),
        ("yard", "gate"): {"min_seconds": 10, "max_seconds": 20},
        ("lobby", "lobby"): (30, 300),
    }
    as_python = CameraTopology(
        cameras=("gate", "lobby", "yard", "dock"),
        overlaps=frozenset({("lobby", "gate")}),
        transitions=windows,
    )
    assert as_entries == expected and as_python == expected
    assert expected.overlaps == frozenset({("gate", "lobby")})  # stored sorted
    assert dict(expected.transitions) == {
        ("gate", "yard"): (5.0, 40.0),
        ("lobby", "lobby"): (30.0, 300.0),
        ("yard", "gate"): (10.0, 20.0),
    }


def test_topology_json_round_trip() -> None:
    topology = site()
    text = topology.to_json()
    data = json.loads(text)
    assert data["overlaps"] == [["gate", "lobby"]]
    assert data["transitions"][0] == {
        "from_camera": "gate",
        "to_camera": "yard",
        "min_seconds": 5.0,
        "max_seconds": 40.0,
    }
    assert CameraTopology.from_json(text) == topology
    assert CameraTopology.model_validate(topology.model_dump()) == topology
    assert CameraTopology.model_validate(data) == topology


def test_topology_is_immutable() -> None:
    topology = site()
    with pytest.raises(ValidationError, match="frozen"):
        topology.cameras = ("x",)
    with pytest.raises(TypeError):
        topology.transitions[("gate", "dock")] = (1.0, 2.0)  # type: ignore[index]
    copied = copy.deepcopy(topology)
    assert copied == topology and hash(copied) == hash(topology)
    assert pickle.loads(pickle.dumps(topology)) == topology
    assert CameraTopology(cameras=("a",)).transitions == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"overlaps": [["gate", "nowhere"]]},
            r"overlap \('gate', 'nowhere'\) names unknown camera\(s\) \['nowhere'\]",
        ),
        ({"overlaps": [["gate", "gate"]]}, "pairs a camera with itself"),
        ({"overlaps": [["gate", "lobby", "yard"]]}, "must be two camera ids"),
        (
            {"transitions": {"gate->mars": [1, 2]}},
            r"transition \('gate', 'mars'\) names unknown camera\(s\) \['mars'\]",
        ),
        (
            {"transitions": {"gate->yard": [40, 5]}},
            r"transition \('gate', 'yard'\): min_seconds 40.0 exceeds max_seconds 5.0",
        ),
        ({"transitions": {"gate->yard": [-1, 5]}}, r"min_seconds must be >= 0, got -1.0"),
        ({"transitions": {"gate->yard": [1, math.inf]}}, "seconds must be finite"),
        ({"transitions": {"gate->yard": [1]}}, r"expected \(min_seconds, max_seconds\)"),
        ({"transitions": {"gate->yard": ["soon", 5]}}, "seconds must be numbers"),
        ({"transitions": {"gate-yard": [1, 2]}}, "must be written 'from->to'"),
        (
            {"transitions": {"gate->yard": [1, 2], " gate -> yard ": [3, 4]}},
            r"transition \('gate', 'yard'\) is given twice",
        ),
        (
            {"transitions": [{"from_camera": "gate", "to_camera": "yard", "min_seconds": 1}]},
            "needs exactly the keys",
        ),
        ({"cameras": ["gate", "gate", "yard"]}, r"camera ids must be unique, repeated: \['gate'\]"),
        ({"cameras": ["gate", ""]}, "non-empty"),
        ({"colour": "red"}, "extra"),
    ],
)
def test_topology_validation(change: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"cameras": ["gate", "lobby", "yard"], "overlaps": [], "transitions": {}}
    data.update(change)
    with pytest.raises(ValidationError, match=message):
        CameraTopology.model_validate(data)


def test_directed_pairs_may_differ() -> None:
    topology = site()
    assert topology.transit_window("gate", "yard") == (5.0, 40.0)
    assert topology.transit_window("yard", "gate") == (10.0, 20.0)
    assert topology.transit_window("gate", "dock") is None


# --------------------------------------------------------------------------- queries
@pytest.mark.parametrize(
    ("source", "target", "gap", "expected"),
    [
        ("gate", "gate", -3.0, True),  # same camera, overlapping in time
        ("gate", "gate", 1.5, True),  # same camera, a short gap
        ("gate", "gate", 60.0, False),  # same camera, long gone, no self transition
        ("lobby", "lobby", 60.0, True),  # ... unless the topology has one
        ("lobby", "lobby", 400.0, False),
        ("gate", "lobby", -20.0, True),  # overlapping cameras, both at once
        ("lobby", "gate", 2.0, True),  # overlaps are unordered; slack is 2 s
        ("lobby", "gate", 2.5, False),
        ("gate", "yard", 4.0, True),  # 5 s minimum minus 2 s slack
        ("gate", "yard", 2.9, False),
        ("gate", "yard", 20.0, True),
        ("gate", "yard", 42.0, True),
        ("gate", "yard", 42.1, False),
        ("gate", "yard", -1.0, False),  # not overlapping: cannot be in both at once
        ("yard", "gate", 30.0, False),  # directed: the way back has its own window
        ("yard", "gate", 15.0, True),
        ("dock", "gate", 0.0, False),  # isolated
        ("gate", "dock", 10.0, False),
    ],
)
def test_plausible_truth_table(source: str, target: str, gap: float, expected: bool) -> None:
    assert site().plausible(source, target, gap) is expected


def test_plausible_slack_and_errors() -> None:
    topology = site()
    assert topology.plausible("gate", "yard", 2.9, slack=3.0)
    assert not topology.plausible("gate", "yard", 4.9, slack=0.0)
    assert not topology.plausible("gate", "lobby", 0.5, slack=0.0)
    with pytest.raises(
        ValueError, match=r"unknown camera 'mars'; the topology has \['gate', 'lobby', 'yard', 'dock'\]"
    ):
        topology.plausible("gate", "mars", 1.0)
    with pytest.raises(ValueError, match="gap_seconds must be finite, got nan"):
        topology.plausible("gate", "yard", math.nan)
    with pytest.raises(ValueError, match="slack must be finite and >= 0"):
        topology.plausible("gate", "yard", 1.0, slack=-1.0)


def test_overlapping_and_neighbours() -> None:
    topology = site()
    assert topology.overlapping("gate", "lobby") and topology.overlapping("lobby", "gate")
    assert not topology.overlapping("gate", "yard")
    assert not topology.overlapping("gate", "gate")
    assert topology.neighbours("gate") == ("lobby", "yard")
    assert topology.neighbours("yard") == ("gate",)
    assert topology.neighbours("lobby") == ("gate",)  # its self transition links nothing else
    assert topology.neighbours("dock") == ()
    one_way = CameraTopology(
        cameras=("a", "b", "c"), transitions={("a", "b"): (1, 2)}, overlaps=frozenset({("b", "c")})
    )
    assert one_way.neighbours("b", direction="outgoing") == ("c",)
    assert one_way.neighbours("b", direction="incoming") == ("a", "c")
    assert one_way.neighbours("a", direction="incoming") == ()


def test_connected_follows_chains_of_links_either_way() -> None:
    chain = CameraTopology(
        cameras=("gate", "lane", "rows", "exit", "dock"),
        overlaps=frozenset({("lane", "rows")}),
        transitions={("gate", "lane"): (0, 5), ("rows", "exit"): (1, 9)},
    )
    assert chain.connected("gate", "exit") and chain.connected("exit", "gate")  # three hops, any way
    assert chain.connected("gate", "gate")
    assert not chain.connected("gate", "dock") and not chain.connected("dock", "exit")
    with pytest.raises(ValueError, match="unknown camera 'yard'"):
        chain.connected("gate", "yard")


def test_check_warns_about_isolated_and_unknown_cameras() -> None:
    warnings = site().check()
    assert warnings == [
        "camera 'dock' has no overlaps and no transitions to or from other cameras: "
        "cross-camera identities cannot be linked through it"
    ]
    warnings = site().check(["gate", "roof", "gate"])
    assert warnings == [
        "camera 'roof' is not in the topology: cross-camera identities cannot be linked through it"
    ]
    assert CameraTopology(cameras=("a", "b"), overlaps=frozenset({("a", "b")})).check() == []


# -------------------------------------------------------------------------- geometry
def downward(camera_id: str, x: float, y: float) -> Camera:
    """A camera 10 m up looking straight down, 90 degrees wide: a 20 x 15 m footprint centred at (x, y)."""
    return look_at_camera(camera_id, 800, 600, 90, position=(x, y, 10), target=(x, y, 0))


def test_overlaps_from_geometry_adjacent_versus_far_apart() -> None:
    near = downward("near", 18, 0)  # footprints share a 2 m x 15 m strip with "home"
    home = downward("home", 0, 0)
    far = downward("far", 100, 0)
    touching = downward("touching", 0, 15.5)  # 0.5 m gap along y
    cameras = [home, near, far, touching]
    assert overlaps_from_geometry(cameras, max_range_m=100) == frozenset({("home", "near")})
    assert overlaps_from_geometry(cameras, max_range_m=100, min_area_m2=29.9) == frozenset({("home", "near")})
    assert overlaps_from_geometry(cameras, max_range_m=100, min_area_m2=30.1) == frozenset()
    # the range limits what a camera is taken to see
    assert overlaps_from_geometry(cameras, max_range_m=8) == frozenset()


def test_overlaps_from_geometry_oblique_cameras_facing_each_other() -> None:
    a = look_at_camera("a", 1280, 720, 70, position=(0, 0, 6), target=(0, 15, 0))
    b = look_at_camera("b", 1280, 720, 70, position=(0, 30, 6), target=(0, 15, 0))
    c = look_at_camera("c", 1280, 720, 70, position=(0, 60, 6), target=(0, 75, 0))  # looks away from both
    uncalibrated = Camera(id="u", width=640, height=480)
    assert overlaps_from_geometry([a, b, c, uncalibrated]) == frozenset({("a", "b")})
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        overlaps_from_geometry([a, a])


# -------------------------------------------------------------------------- learning
def synthetic_visits(
    seed: int,
) -> tuple[list[tuple[Any, str, float, float]], dict[tuple[str, str], list[float]]]:
    """200 people walk a -> b (10-30 s), b -> c (5-8 s); some come back c -> a, seen in both at once."""
    rng = np.random.default_rng(seed)
    visits: list[tuple[Any, str, float, float]] = []
    gaps: dict[tuple[str, str], list[float]] = {("a", "b"): [], ("b", "c"): [], ("c", "a"): []}
    for person in range(200):
        identity: Any = person if person % 2 else f"p{person}"  # ids may be any hashable
        start = rng.uniform(0, 3600)
        leave_a = start + rng.uniform(3, 20)
        visits.append((identity, "a", start, leave_a))
        gap = rng.uniform(10, 30)
        gaps[("a", "b")].append(gap)
        leave_b = leave_a + gap + rng.uniform(3, 10)
        visits.append((identity, "b", leave_a + gap, leave_b))
        gap = rng.uniform(5, 8)
        gaps[("b", "c")].append(gap)
        leave_c = leave_b + gap + rng.uniform(2, 5)
        visits.append((identity, "c", leave_b + gap, leave_c))
        if person in (1, 3):  # too few to learn c -> a by default
            visits.append((identity, "a", leave_c + 40, leave_c + 50))
            gaps[("c", "a")].append(40.0)
        if person % 10 == 0:  # also seen by "d" while still in "c": overlap, not transit
            visits.append((identity, "d", leave_c - 1, leave_c + 30))
    rng.shuffle(visits)  # order must not matter
    return visits, gaps


def test_learn_transitions_recovers_windows_containing_the_gaps() -> None:
    visits, gaps = synthetic_visits(seed=21)
    windows = learn_transitions(visits)
    assert set(windows) == {("a", "b"), ("b", "c")}  # c -> a has 2 gaps, c -> d only negative ones
    for pair, (low, high) in windows.items():
        generated = np.asarray(gaps[pair])
        assert low <= generated.min() and generated.max() <= high
    low, high = windows[("a", "b")]
    assert 8.0 <= low <= 9.0 and 30.0 <= high <= 32.0
    low, high = windows[("b", "c")]
    assert 3.0 <= low <= 5.0 and 8.0 <= high <= 10.0
    # min_samples and quantiles
    assert learn_transitions(visits, min_samples=2, quantiles=(0.0, 1.0))[("c", "a")] == pytest.approx(
        (38.0, 42.0)
    )
    tight = learn_transitions(visits, quantiles=(0.0, 1.0), margin_seconds=0.0)
    assert tight[("b", "c")] == pytest.approx((min(gaps[("b", "c")]), max(gaps[("b", "c")])), abs=1e-9)
    assert CameraTopology(cameras=("a", "b", "c", "d"), transitions=windows).plausible("a", "b", 20.0)


def test_transition_gaps_and_observed_overlaps() -> None:
    visits = [
        (1, "a", 0.0, 10.0),
        (1, "a", 12.0, 15.0),  # the same camera again: no gap, but the chain goes on from here
        (1, "b", 20.0, 30.0),
        (1, "c", 28.0, 40.0),  # overlapping in time with b
        (2, "b", 0.0, 5.0),
        (2, "c", 4.0, 9.0),
        (3, "c", 0.0, 5.0),
        (3, "b", 3.0, 6.0),
    ]
    gaps = transition_gaps(visits)
    assert {pair: values.tolist() for pair, values in gaps.items()} == {
        ("a", "b"): [5.0],
        ("b", "c"): [-2.0, -1.0],
        ("c", "b"): [-2.0],
    }
    assert overlaps_from_visits(visits, min_samples=3) == frozenset({("b", "c")})
    assert overlaps_from_visits(visits, min_samples=4) == frozenset()
    assert learn_transitions(visits, min_samples=1, margin_seconds=0.0) == {("a", "b"): (5.0, 5.0)}
    assert transition_gaps([]) == {}


@pytest.mark.parametrize(
    ("visit", "message"),
    [
        ((1, "a", 5.0), r"visit 1 must be \(global_id, camera_id, t_start, t_end\)"),
        ((1, "", 0.0, 1.0), "visit 1: camera_id must be a non-empty string"),
        ((1, "a", 5.0, 4.0), "visit 1: t_end 4.0 is before t_start 5.0"),
        ((1, "a", math.nan, 4.0), "visit 1: times must be finite"),
    ],
)
def test_visit_validation(visit: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        learn_transitions([(0, "a", 0.0, 1.0), visit])


def test_learn_transitions_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="quantiles must satisfy"):
        learn_transitions([], quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="margin_seconds must be finite and >= 0"):
        learn_transitions([], margin_seconds=-1)
    with pytest.raises(ValueError, match="min_samples must be at least 1, got 0"):
        learn_transitions([], min_samples=0)


def test_learn_topology_combines_geometry_and_tracks() -> None:
    cameras = [downward("a", 0, 0), downward("b", 18, 0), Camera(id="c", width=640, height=480)]
    cameras.append(Camera(id="d", width=640, height=480))
    cameras.append(Camera(id="e", width=640, height=480))
    visits, _ = synthetic_visits(seed=22)
    topology = learn_topology(cameras, visits)
    assert topology.cameras == ("a", "b", "c", "d", "e")
    # a-b from geometry; c-d seen at once by 20 people
    assert topology.overlaps == frozenset({("a", "b"), ("c", "d")})
    assert set(topology.transitions) == {("a", "b"), ("b", "c")}
    assert topology.check() == [
        "camera 'e' has no overlaps and no transitions to or from other cameras: "
        "cross-camera identities cannot be linked through it"
    ]
    without = learn_topology(cameras, visits, observed_overlaps=False)
    assert without.overlaps == frozenset({("a", "b")})
    with pytest.raises(ValueError, match=r"visits name camera\(s\) \['z'\] that are not among the cameras"):
        learn_topology(cameras, [(1, "z", 0.0, 1.0)])


def test_learn_topology_on_ucla_auditorium() -> None:
    """Real tracks: four synchronised views, two calibrated; overlaps seen in geometry and in time."""
    from crossview.io.formats.ucla import load_ucla_cameras, load_ucla_ground_truth

    root = shared_path("data", "ucla-campus-auditorium")
    table = load_ucla_ground_truth(root)
    views = load_ucla_cameras(root, all_views=True)
    assert list(views) == list(table.cameras())
    cameras = list(views.values())
    assert overlaps_from_geometry(cameras) == frozenset({("HC3", "HC4")})
    visits = []
    fps = 30.0
    for name in table.cameras():
        rows = table.rows_of(name)
        for identity in np.unique(table.obj_id[rows]):
            frames = np.sort(table.frame[rows][table.obj_id[rows] == identity])
            breaks = np.flatnonzero(np.diff(frames) > fps)  # out of view for over a second: a new visit
            starts = np.r_[frames[0], frames[breaks + 1]]
            ends = np.r_[frames[breaks], frames[-1]]
            visits += [(int(identity), name, s / fps, e / fps) for s, e in zip(starts, ends, strict=True)]
    topology = learn_topology(cameras, visits)
    assert topology.overlaps == frozenset({("HC3", "HC4"), ("IP2", "IP5")})
    assert topology.check() == []
    gaps = transition_gaps(visits)
    for pair, (low, high) in topology.transitions.items():
        observed = gaps[pair][gaps[pair] >= 0]
        assert len(observed) >= 3
        assert low <= np.quantile(observed, 0.02) and np.quantile(observed, 0.98) <= high
    assert ("HC3", "IP5") in topology.transitions
    assert all(
        topology.plausible(*pair, float(gap))
        for pair in topology.transitions
        for gap in gaps[pair]
        if gap >= 0
    )
