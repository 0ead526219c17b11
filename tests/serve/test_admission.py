"""Admission's bookkeeping: queue slots, cameras, their pixel budget and fair shares, idle release."""

from __future__ import annotations

import math

import pytest

from crossview.io.image import ImageLimits
from crossview.serve.admission import Admission, CameraLimits, ImageDecoder
from crossview.serve.errors import (
    BadImage,
    CameraLimit,
    InvalidRequest,
    Overloaded,
    OversizedImage,
    UnknownCamera,
    UnsupportedMedia,
)
from crossview.sim.bombs import png_bomb

from .conftest import encoded, noise


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admission(clock: Clock | None = None, **limits: object) -> Admission:
    queued = limits.pop("max_queued", 8)
    declared = limits.pop("declared", frozenset())
    return Admission(
        CameraLimits(**limits),  # type: ignore[arg-type]
        max_queued=queued,  # type: ignore[arg-type]
        declared=declared,  # type: ignore[arg-type]
        clock=clock or Clock(),
    )


def test_slots_follow_reserve_commit_release_and_done() -> None:
    gate = admission(max_queued=2)
    first = gate.reserve("gate", 0.0, 1.0)
    second = gate.reserve("yard", 0.0, 1.0)
    assert gate.full and gate.queued == 0  # reserved slots count against the queue
    with pytest.raises(Overloaded, match="queue is full"):
        gate.reserve("dock", 0.0, 1.0)
    gate.release(second)  # refused after all: the slot frees, and the camera is forgotten
    assert not gate.full and gate.cameras == ["gate"]
    gate.commit(first)
    assert gate.queued == 1
    gate.done("gate", 0.5)
    assert gate.queued == 0 and gate.retry_after() == 1.0


def test_time_order_covers_batches_being_admitted() -> None:
    gate = admission()
    pending = gate.reserve("gate", 0.0, 2.9)
    with pytest.raises(InvalidRequest, match="accepted or being admitted"):
        gate.reserve("gate", 2.0, 3.0)  # would interleave with the one being decoded
    later = gate.reserve("gate", 3.0, 3.9)
    gate.release(pending)
    gate.commit(later)
    with pytest.raises(InvalidRequest, match=r"timestamp 3.5 is not after 3.9"):
        gate.reserve("gate", 3.5, 4.0)


def test_a_returning_camera_reads_its_last_time_from_storage() -> None:
    stored = {"gate": 41.0}
    gate = Admission(CameraLimits(), max_queued=4, stored_until=stored.get)
    with pytest.raises(InvalidRequest, match=r"not after 41\.0"):
        gate.reserve("gate", 40.0, 42.0)
    assert gate.cameras == []  # refused: no state kept
    gate.commit(gate.reserve("gate", 41.5, 42.0))


def test_the_camera_cap_frees_as_cameras_go_idle() -> None:
    clock = Clock()
    gate = admission(clock, max_cameras=2, idle_s=60.0)
    for camera in ("a", "b"):
        ticket = gate.reserve(camera, 0.0, 1.0)
        gate.commit(ticket)
        gate.done(camera, 0.01)
    clock.now += 20
    with pytest.raises(CameraLimit) as refused:
        gate.reserve("c", 0.0, 1.0)
    assert refused.value.retry_after_s == pytest.approx(40.0) and refused.value.http_status == 429
    clock.now += 39
    assert gate.take_idle() == []
    clock.now += 1
    assert gate.take_idle() == ["a", "b"]
    gate.reserve("c", 0.0, 1.0)


def test_a_camera_with_work_is_never_idle() -> None:
    clock = Clock()
    gate = admission(clock, idle_s=1.0)
    gate.commit(gate.reserve("a", 0.0, 1.0))
    clock.now += 10
    assert gate.take_idle() == []  # its batch still waits for the worker
    gate.done("a", 0.1)
    assert gate.take_idle() == ["a"]


def test_frame_pixels_are_budgeted_across_cameras() -> None:
    gate = admission(max_megapixels=0.8)
    gate.commit(gate.reserve("a", 0.0, 1.0, pixels=640 * 480))
    gate.commit(gate.reserve("b", 0.0, 1.0, pixels=640 * 480))
    with pytest.raises(CameraLimit, match="max_megapixels"):
        gate.reserve("c", 0.0, 1.0, pixels=640 * 480)
    gate.reserve("c", 0.0, 1.0)  # detections only: no detector model to hold
    gate.commit(gate.reserve("a", 1.5, 2.0, pixels=640 * 480))  # the same camera again fits
    assert gate.megapixels() == pytest.approx(2 * 640 * 480 / 1e6)


def test_only_the_declared_cameras_may_send() -> None:
    gate = admission(declared=frozenset({"gate", "yard"}), max_cameras=1)
    assert gate.max_cameras == 2  # the site's cameras are all allowed
    gate.reserve("gate", 0.0, 1.0)
    gate.reserve("yard", 0.0, 1.0)
    with pytest.raises(UnknownCamera, match="'dock' is not one of the 2 cameras"):
        gate.reserve("dock", 0.0, 1.0)


def test_a_flooding_camera_gets_its_fair_share_once_the_queue_is_half_full() -> None:
    gate = admission(max_queued=8)
    for number in range(6):  # alone, a camera may fill the queue
        gate.commit(gate.reserve("noisy", float(number), number + 0.5))
    gate.commit(gate.reserve("quiet", 0.0, 0.5))
    # two cameras with work: 4 slots each; noisy holds 6
    with pytest.raises(Overloaded, match="fair share"):
        gate.reserve("noisy", 10.0, 10.5)
    gate.commit(gate.reserve("quiet", 1.0, 1.5))
    assert gate.queued == 8 and gate.full


def test_decoder_checks_headers_and_names_the_image() -> None:
    decoder = ImageDecoder(ImageLimits(), concurrency=1, wait_s=0.0)
    assert decoder.decode(encoded(noise(48, 64))).shape == (48, 64, 3)
    with pytest.raises(OversizedImage, match="image 3: image is 20000 x 20000"):
        decoder.probe(png_bomb(20000, 20000), "image 3: ")
    with pytest.raises(UnsupportedMedia):
        decoder.decode(b"GIF89a" + bytes(20))
    with pytest.raises(BadImage):
        decoder.decode(encoded(noise(48, 64))[:80])


def test_overloaded_retry_after_follows_the_processing_rate() -> None:
    gate = admission(max_queued=100)
    for number in range(50):
        gate.commit(gate.reserve(f"c{number}", 0.0, 1.0))
    for _ in range(30):
        gate.done("c0", 0.5)  # the worker's moving average tends to 0.5 s a batch
    assert math.isclose(gate.retry_after(), min(60.0, 20 * gate._seconds_per_batch), rel_tol=1e-9)
    assert gate.retry_after() > 5
