"""The parking flow: entries indexed, exits matched by appearance, time and identity."""

from __future__ import annotations

import numpy as np

from crossview.multicam.association import Tracklet
from crossview.parking import ParkingConfig, ParkingFlow, session_accuracy

CONFIG = ParkingConfig(entry_cameras=frozenset({"gate"}), exit_cameras=frozenset({"exit"}), min_stay_s=5.0)


def car(camera: str, track: int, start: float, look: list[float], class_id: int = 2) -> Tracklet:
    times = start + np.arange(0.0, 2.0, 0.5)
    return Tracklet(camera, track, times, np.zeros((times.size, 2)), np.asarray(look), class_id)


def test_exits_find_their_entries_by_appearance_time_and_identity() -> None:
    flow = ParkingFlow(CONFIG)
    red, blue, reddish = [1.0, 0.05, 0.0], [0.0, 1.0, 0.1], [0.95, 0.15, 0.0]
    assert flow.observe(car("gate", 1, 0.0, red)) is None
    assert flow.observe(car("gate", 2, 10.0, blue)) is None
    assert flow.observe(car("gate", 3, 10.0, red, class_id=0)) is None  # a person: never an entry
    # the blue car leaves first; a red car that entered 2 s ago cannot be leaving already
    assert flow.observe(car("gate", 4, 40.0, reddish)) is None
    blue_exit = flow.observe(car("exit", 9, 30.0, blue))
    assert blue_exit is not None and (blue_exit.entry_track, blue_exit.entry_time) == (2, 10.0)
    red_exit = flow.observe(car("exit", 10, 42.0, red))
    assert red_exit is not None and red_exit.entry_track == 1  # track 4 entered 2 s before: too fast
    assert red_exit.hits[0].verdict == "plausible"
    # identity wins over appearance: the exit followed from gate track 4 through the site
    flow_with_ids = ParkingFlow(CONFIG)
    flow_with_ids.observe(car("gate", 1, 0.0, red), global_id=7)
    flow_with_ids.observe(car("gate", 4, 20.0, reddish), global_id=8)
    followed = flow_with_ids.observe(car("exit", 11, 60.0, red), global_id=8)
    assert followed is not None and followed.entry_track == 4
    # a second piece of the same vehicle's exit opens no second session
    assert flow_with_ids.observe(car("exit", 12, 62.0, red), global_id=8) is None
    assert len(flow_with_ids.sessions) == 1
    truth = {("gate", 1): 100, ("gate", 2): 200, ("exit", 9): 200, ("exit", 10): 100}
    assert session_accuracy(flow.sessions, truth) == 1.0


def test_an_exit_with_no_entry_is_reported_unmatched() -> None:
    flow = ParkingFlow(CONFIG)
    session = flow.observe(car("exit", 1, 5.0, [1.0, 0.0, 0.0]))
    assert session is not None and not session.matched and session.duration_s is None
