"""Cross-camera association: pair evidence, offline clustering, online assignment."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from crossview.multicam.association import (
    AssociationConfig,
    OnlineAssociator,
    Tracklet,
    associate,
    auto_threshold,
    pair_evidence,
)
from crossview.multicam.topology import CameraTopology

# gate and lot overlap; lot -> exit takes 5-15 s; gate and exit are far apart
TOPOLOGY = CameraTopology(
    cameras=("gate", "lot", "exit"),
    overlaps=[("gate", "lot")],
    transitions={("lot", "exit"): (5.0, 15.0)},
)
CONFIG = AssociationConfig(max_cost=0.3)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def walk(
    camera: str,
    track: int,
    start: float,
    stop: float,
    origin: tuple[float, float],
    velocity: tuple[float, float],
    look: np.ndarray,
    *,
    class_id: int = 0,
    noise: float = 0.0,
    seed: int = 0,
) -> Tracklet:
    times = np.arange(start, stop, 0.5)
    rng = np.random.default_rng(seed)
    ground = np.asarray(origin) + np.outer(times, velocity) + rng.normal(0, noise, (times.size, 2))
    return Tracklet(camera, track, times, ground, look, class_id)


RED, BLUE, GREEN = (
    unit(np.array([1.0, 0.1, 0.0])),
    unit(np.array([0.1, 1.0, 0.0])),
    unit(np.array([0.0, 0.1, 1.0])),
)


def test_pair_evidence_terms_and_refusals() -> None:
    a = walk("gate", 1, 0, 10, (0, 0), (1, 0), RED)
    # the same object seen by the overlapping lot camera with 0.3 m of localisation error
    b = walk("lot", 1, 5, 15, (0.3, 0), (1, 0), RED)
    both = pair_evidence(a, b, TOPOLOGY, CONFIG)
    assert both.feasible and both.position_m == pytest.approx(0.3)
    assert both.cost == pytest.approx(CONFIG.appearance_weight * both.appearance + 0.4 * (0.3 / 2.5 - 0.5))
    far = pair_evidence(a, walk("lot", 2, 5, 15, (6, 0), (1, 0), RED), TOPOLOGY, CONFIG)
    assert not far.feasible and far.reason == "6.0 m apart while seen at once"
    assert pair_evidence(a, walk("gate", 2, 5, 15, (0, 0), (1, 0), RED), TOPOLOGY, CONFIG).reason == (
        "seen at once in the same camera"
    )
    assert (
        "do not overlap"
        in pair_evidence(a, walk("exit", 2, 5, 15, (0, 0), (1, 0), RED), TOPOLOGY, CONFIG).reason
    )
    assert (
        "classes differ"
        in pair_evidence(a, walk("lot", 3, 20, 25, (0, 0), (1, 0), RED, class_id=2), TOPOLOGY, CONFIG).reason
    )
    # lot -> exit after 10 s is plausible, after 40 s is not
    lot = walk("lot", 4, 0, 10, (0, 0), (1, 0), RED)
    assert pair_evidence(lot, walk("exit", 5, 19.5, 25, (0, 0), (1, 0), RED), TOPOLOGY, CONFIG).feasible
    late = pair_evidence(lot, walk("exit", 6, 49.5, 55, (0, 0), (1, 0), RED), TOPOLOGY, CONFIG)
    assert not late.feasible and "outside [5.0, 15.0] s" in late.reason
    # exit -> gate has no window of its own, but the two are joined through the lot: no penalty
    # and no window to check (the object may have parked on the way)
    through = pair_evidence(
        walk("exit", 7, 0, 5, (0, 0), (1, 0), RED),
        walk("gate", 8, 600, 605, (0, 0), (1, 0), RED),
        TOPOLOGY,
        CONFIG,
    )
    assert through.feasible and through.link_penalty == 0.0
    assert through.cost == pytest.approx(through.appearance)
    # a camera that nothing joins to the others: the pair costs the unknown-link penalty
    island = CameraTopology(
        cameras=(*TOPOLOGY.cameras, "dock"), overlaps=TOPOLOGY.overlaps, transitions=TOPOLOGY.transitions
    )
    unknown = pair_evidence(
        walk("dock", 7, 0, 5, (0, 0), (1, 0), RED),
        walk("gate", 8, 60, 65, (0, 0), (1, 0), RED),
        island,
        CONFIG,
    )
    assert unknown.link_penalty == CONFIG.unknown_link_penalty
    assert unknown.cost == pytest.approx(unknown.appearance + CONFIG.unknown_link_penalty)


def test_class_mismatch_forbids_or_costs() -> None:
    """Classes from a detector forbid the pair; guessed from box size they only cost more."""
    car = walk("lot", 1, 0, 10, (0, 0), (1, 0), RED, class_id=2)
    sliver = walk("exit", 2, 19.5, 25, (0, 0), (1, 0), RED, class_id=0)  # the car, half hidden
    strict = pair_evidence(car, sliver, TOPOLOGY, CONFIG)
    assert not strict.feasible and strict.reason == "classes differ (2 vs 0)"
    lenient = AssociationConfig(max_cost=0.3, class_mismatch_penalty=0.1)
    costed = pair_evidence(car, sliver, TOPOLOGY, lenient)
    same_class = pair_evidence(
        car, walk("exit", 2, 19.5, 25, (0, 0), (1, 0), RED, class_id=2), TOPOLOGY, lenient
    )
    assert costed.feasible and costed.cost == pytest.approx(same_class.cost + 0.1)
    assert associate([car, sliver], TOPOLOGY, CONFIG).global_ids.tolist() == [0, 1]
    assert associate([car, sliver], TOPOLOGY, lenient).global_ids.tolist() == [0, 0]


def test_offline_association_recovers_identities_and_respects_constraints() -> None:
    look_alike = unit(RED + np.array([0.0, 0.02, 0.0]))
    tracklets = [
        # object 0 (red): gate, overlapping lot, then exit 10 s after leaving the lot
        walk("gate", 1, 0, 10, (0, 0), (1, 0), RED, noise=0.2, seed=1),
        walk("lot", 1, 6, 20, (0, 0), (1, 0), RED, noise=0.2, seed=2),
        walk("exit", 1, 30, 35, (40, 0), (1, 0), RED, noise=0.2, seed=3),
        # object 1 (a red look-alike) in the lot at the same time, 8 m away: must stay separate
        walk("gate", 2, 2, 9, (0, 8), (1, 0), look_alike, noise=0.2, seed=4),
        walk("lot", 2, 6, 20, (0, 8), (1, 0), look_alike, noise=0.2, seed=5),
        # object 2 (blue), alone
        walk("lot", 3, 40, 50, (0, 0), (0, 1), BLUE, seed=6),
        walk("exit", 3, 58, 62, (0, 0), (0, 1), BLUE, seed=7),
        # object 3 (green) only in the exit camera
        walk("exit", 4, 70, 75, (0, 0), (0, 1), GREEN, seed=8),
    ]
    truth = [0, 0, 0, 1, 1, 2, 2, 3]
    found = associate(tracklets, TOPOLOGY, CONFIG).global_ids
    pairs_found = found[:, None] == found[None, :]
    pairs_true = np.array(truth)[:, None] == np.array(truth)[None, :]
    np.testing.assert_array_equal(pairs_found, pairs_true)
    assert found.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]  # numbered by first appearance


def test_look_alikes_without_position_evidence_merge_only_when_possible() -> None:
    # two identical-looking objects in non-overlapping cameras at once can never be one object
    a = walk("lot", 1, 0, 10, (0, 0), (1, 0), RED)
    b = walk("exit", 1, 0, 10, (0, 0), (1, 0), RED)
    assert associate([a, b], TOPOLOGY, CONFIG).global_ids.tolist() == [0, 1]


def test_feasibility_is_checked_for_the_merged_cluster() -> None:
    # lot@0-10 and exit@20-25 are one object; a second lot tracklet at 21-24 looks the same but
    # would put the object in lot and exit at once
    tracklets = [
        walk("lot", 1, 0, 10, (0, 0), (1, 0), RED),
        walk("exit", 1, 20, 25, (0, 0), (1, 0), RED),
        walk("lot", 2, 21, 24, (0, 0), (1, 0), unit(RED + 0.05 * BLUE)),
    ]
    ids = associate(tracklets, TOPOLOGY, CONFIG).global_ids.tolist()
    assert ids[0] == ids[1] and ids[2] != ids[1]


def test_auto_threshold_is_a_quantile_of_certainly_different_pairs() -> None:
    rng = np.random.default_rng(0)
    looks = [unit(rng.normal(size=8)) for _ in range(12)]
    tracklets = [walk("lot", i, 0, 10, (i * 5.0, 0), (1, 0), look) for i, look in enumerate(looks)]
    config = AssociationConfig(auto_quantile=0.1, auto_min_pairs=10)
    expected = np.quantile([1 - float(looks[i] @ looks[j]) for i in range(12) for j in range(i + 1, 12)], 0.1)
    assert auto_threshold(tracklets, config) == pytest.approx(expected)
    assert auto_threshold(tracklets[:3], config) == config.auto_fallback  # 3 pairs < 10


def test_bad_input_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"tracklet lot/3: timestamps out of order at sample 2 \(2.0 then 1.0\)"
    ):
        Tracklet("lot", 3, np.array([0.0, 2.0, 1.0]), np.zeros((3, 2)), RED)
    with pytest.raises(ValueError, match=r"ground must have shape \(2, 2\), got \(3, 2\)"):
        Tracklet("lot", 3, np.array([0.0, 1.0]), np.zeros((3, 2)), RED)
    with pytest.raises(ValueError, match="embedding must be a finite non-zero vector"):
        Tracklet("lot", 3, np.array([0.0]), np.zeros((1, 2)), np.zeros(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        associate(
            [walk("a", 1, 0, 5, (0, 0), (1, 0), RED), walk("b", 1, 9, 12, (0, 0), (1, 0), RED)], None, CONFIG
        )
    assert any("no camera topology given" in str(w.message) for w in caught)
    isolated = CameraTopology(cameras=("gate", "lot", "exit", "roof"), overlaps=[("gate", "lot")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        associate(
            [walk("roof", 1, 0, 5, (0, 0), (1, 0), RED), walk("gate", 1, 9, 12, (0, 0), (1, 0), RED)],
            isolated,
            CONFIG,
        )
    assert any("roof" in str(w.message) for w in caught)


def test_online_ids_are_stable_and_match_offline_on_a_clean_sequence() -> None:
    online = OnlineAssociator(TOPOLOGY, CONFIG)
    first = walk("gate", 1, 0, 10, (0, 0), (1, 0), RED)
    assert online.assign([first]) == [0]
    # the lot sees it while the gate still does; a blue object appears in the gate at the same time
    lot = walk("lot", 1, 6, 20, (0, 0), (1, 0), RED)
    blue = walk("gate", 2, 7, 12, (0, 6), (1, 0), BLUE)
    assert online.assign([lot, blue]) == [0, 1]
    assert online.assign([walk("exit", 1, 30, 35, (40, 0), (1, 0), RED)]) == [0]
    assert online.assign([lot]) == [0]  # asking again changes nothing
    assert online.update(walk("lot", 1, 6, 25, (0, 0), (1, 0), RED)) == 0
    assert online.global_id("lot", 1) == 0 and online.identities == 2
    with pytest.raises(ValueError, match="never assigned"):
        online.update(walk("lot", 9, 0, 1, (0, 0), (1, 0), RED))
    assert math.isinf(online._identity_cost(walk("exit", 2, 31, 33, (0, 0), (1, 0), RED), online._members[0]))


def test_online_update_splits_an_identity_proven_wrong() -> None:
    online = OnlineAssociator(TOPOLOGY, CONFIG)
    first = walk("lot", 1, 0, 11, (0, 0), (1, 0), RED)  # samples 0 .. 10.5 s
    early = walk("lot", 2, 10, 12, (9, 0), (1, 0), RED)  # 0.5 s shared: within the cross-camera tolerance
    assert online.assign([first]) == [0]
    # refused at once: any shared time in one camera means two objects
    assert online.assign([early]) == [1]
    third = walk("exit", 3, 20, 22, (0, 0), (1, 0), RED)
    assert online.assign([third]) == [0]
    # later the exit tracklet turns out to run while "lot/1" is still seen: it cannot be the same object
    assert online.update(walk("lot", 1, 0, 30, (0, 0), (1, 0), RED)) == 0
    assert online.global_id("exit", 3) == 2 and online.identities == 3


def test_tracks_of_one_camera_touching_at_one_timestamp_are_two_objects() -> None:
    # a tracker that swaps ids mid-frame leaves the old track's last box and the new one's first
    # box at the same timestamp: one identity would then have two boxes in one frame
    ending = Tracklet("lot", 1, np.arange(0.0, 3.1, 0.1), np.zeros((31, 2)), RED)
    starting = Tracklet("lot", 2, np.arange(3.0, 5.0, 0.1), np.zeros((20, 2)), RED)
    assert pair_evidence(ending, starting, TOPOLOGY, CONFIG).reason == "seen at once in the same camera"
    online = OnlineAssociator(TOPOLOGY, CONFIG)
    assert online.assign([ending]) == [0] and online.assign([starting]) == [1]


def test_online_tracklets_reported_together_may_share_a_new_identity() -> None:
    """Overlapping cameras start tracking one object at once: both tracklets arrive in one call."""
    online = OnlineAssociator(TOPOLOGY, CONFIG)
    gate = walk("gate", 1, 0, 3, (0, 0), (1, 0), RED)
    lot = walk("lot", 1, 0, 3, (0.2, 0), (1, 0), RED)  # the same object, 0.2 m off
    other = walk("lot", 2, 0, 3, (8, 0), (1, 0), BLUE)
    assert online.assign([gate, lot, other]) == [0, 0, 1]
    assert online.identities == 2
    # a pair that could not be one object (far apart while seen at once) still gets two ids
    apart = OnlineAssociator(TOPOLOGY, CONFIG)
    assert apart.assign([gate, walk("lot", 3, 0, 3, (6, 0), (1, 0), RED)]) == [0, 1]


def test_online_tracklets_reported_together_may_all_rejoin_a_known_identity() -> None:
    """An object known from before comes back into two overlapping views at once: both new
    tracklets arrive in one call and both rejoin its identity (the one-to-one assignment of new
    tracklets to known identities gives it to one; the other then joins it as a companion)."""
    online = OnlineAssociator(TOPOLOGY, CONFIG)
    assert online.assign([walk("gate", 1, 0, 3, (0, 0), (1, 0), RED)]) == [0]
    gate = walk("gate", 2, 10, 13, (0, 0), (1, 0), RED)
    lot = walk("lot", 2, 10, 13, (0.2, 0), (1, 0), RED)
    other = walk("lot", 3, 10, 13, (8, 0), (1, 0), BLUE)
    assert online.assign([gate, lot, other]) == [0, 0, 1]
    # one that cannot be the same object (far apart while seen at once) does not join it
    again = OnlineAssociator(TOPOLOGY, CONFIG)
    again.assign([walk("gate", 1, 0, 3, (0, 0), (1, 0), RED)])
    assert again.assign([gate, walk("lot", 4, 10, 13, (6, 0), (1, 0), RED)]) == [0, 1]


def test_positions_of_partly_hidden_boxes_are_not_compared() -> None:
    gate = walk("gate", 1, 0, 10, (0, 0), (1, 0), RED)
    # the lot camera sees the same object, but for most of the time a box cut by an occluder puts it
    # 3 m off; only the whole boxes are compared
    lot = walk("lot", 1, 0, 10, (0, 0), (1, 0), RED)
    shifted = lot.ground.copy()
    hidden = lot.times < 7
    shifted[hidden] += [3.0, 0.0]
    trusting = Tracklet("lot", 1, lot.times, shifted, RED)
    assert not pair_evidence(gate, trusting, TOPOLOGY, CONFIG).feasible
    careful = Tracklet("lot", 1, lot.times, shifted, RED, clear=~hidden)
    evidence = pair_evidence(gate, careful, TOPOLOGY, CONFIG)
    assert evidence.feasible and evidence.position_m == pytest.approx(0.0)
    # no whole box while co-visible: no position evidence either way
    blind = Tracklet("lot", 1, lot.times, shifted, RED, clear=np.zeros(lot.times.size, bool))
    assert math.isnan(pair_evidence(gate, blind, TOPOLOGY, CONFIG).position_m)
    with pytest.raises(ValueError, match=r"clear must have shape \(20,\)"):
        Tracklet("lot", 1, lot.times, shifted, RED, clear=np.ones(3, bool))


def test_offline_clusters_never_hold_two_tracks_of_one_camera_at_once() -> None:
    # two tracks of one camera share 0.2 s (less than overlap_tolerance_s): still two objects
    first = walk("lot", 1, 0, 5.5, (0, 0), (1, 0), RED)
    second = walk("lot", 2, 5.0, 10, (5, 0), (1, 0), RED)
    assert len(associate([first, second], TOPOLOGY, CONFIG).merges) == 0


def test_single_linkage_follows_a_chain_that_average_linkage_breaks() -> None:
    # one car whose colour drifts camera by camera (lighting): each next visit looks like the last
    chain = CameraTopology(
        cameras=("a", "b", "c"), transitions={("a", "b"): (1.0, 10.0), ("b", "c"): (1.0, 10.0)}
    )
    looks = [
        unit(np.array([1.0, 0.0, 0.0])),
        unit(np.array([1.0, 0.55, 0.0])),
        unit(np.array([0.6, 1.0, 0.0])),
    ]
    visits = [
        walk(camera, 1, 10.0 * i, 10.0 * i + 5, (0, 0), (1, 0), look)
        for i, (camera, look) in enumerate(zip("abc", looks, strict=True))
    ]
    step = [1 - float(np.dot(looks[i], looks[i + 1])) for i in range(2)]
    assert max(step) < 0.2 and 1 - float(np.dot(looks[0], looks[2])) > 0.4
    config = AssociationConfig(max_cost=0.2)
    assert associate(visits, chain, config).global_ids.tolist() == [0, 0, 1]
    single = associate(visits, chain, config.model_copy(update={"linkage": "single"}))
    assert single.global_ids.tolist() == [0, 0, 0]
    online = OnlineAssociator(chain, config.model_copy(update={"linkage": "single"}))
    assert [online.assign([visit])[0] for visit in visits] == [0, 0, 0]
