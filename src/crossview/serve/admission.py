"""Admission: what the service takes on, decided before any work is done for a request.

Three resources are bounded here, each checked before the work that would use it:

* **Queue slots.** A batch holds a slot from the moment it is *reserved* (before its images are
  decoded) until the worker has processed it. At ``max_queued`` slots in use, ingest is refused
  with ``Overloaded`` and a retry time from the recent processing rate. Reserving first means a
  refusal costs nothing: images are only decoded for batches that will be accepted. Once the
  queue is half full, a camera holding its fair share of it (``max_queued`` divided by the
  cameras with batches waiting) is refused too, so one camera sending too much, or too fast,
  cannot starve the others.
* **Cameras.** Each camera that sends has state in the service (its tracker, the detector's
  per-camera model, drift windows, metric series). At most ``max_cameras`` cameras hold state at
  once; with a site file, exactly the cameras it declares may send, and others are refused with
  ``UnknownCamera``. Cameras that send images also hold a detector model whose size follows their
  frames (the motion detector's background: about 26 MB per megapixel at its default scale), so the
  frame pixels summed over those cameras are capped by ``max_megapixels``. A camera that sent
  nothing for ``idle_s`` (and has nothing waiting) is released: ``take_idle`` hands it to the worker,
  which frees its state. A new camera beyond either cap is refused with ``CameraLimit``, whose
  retry time is when the next camera will go idle.
* **Image decodes.** ``ImageDecoder`` checks an image's header against ``ImageLimits`` before it
  decodes anything, and lets at most ``concurrency`` decodes run at once (others wait up to
  ``wait_s``, then are refused as ``Overloaded``). Peak decode memory is thus bounded by
  ``concurrency`` times the largest allowed image.

Frames of a camera must come in time order, across batches too. A reservation covers its batch's
time span, so two batches of one camera admitted at once cannot interleave; one that starts at or
before the camera's last accepted (or reserved) frame is refused with ``InvalidRequest``.

>>> admission = Admission(CameraLimits(max_cameras=1), max_queued=8)
>>> ticket = admission.reserve("gate", 0.0, 2.9)
>>> admission.commit(ticket)
>>> admission.queued, admission.cameras
(1, ['gate'])
>>> try:
...     admission.reserve("yard", 0.0, 1.0)
... except CameraLimit as refused:
...     print(refused.http_status, refused.retry_after_s)
429 120.0
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import count

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.io.image import ImageError, ImageInfo, ImageLimits, decode_image, probe_image
from crossview.serve.errors import CameraLimit, InvalidRequest, Overloaded, UnknownCamera, refusal

__all__ = ["Admission", "CameraLimits", "ImageDecoder", "Reservation"]


class CameraLimits(BaseModel):
    """How many cameras may hold state in the service at once, and for how long when idle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_cameras: int = Field(
        default=64, ge=1, description="cameras holding state at once (a site file's cameras are all allowed)"
    )
    max_megapixels: float = Field(
        default=32.0,
        gt=0,
        allow_inf_nan=False,
        description="frame megapixels summed over cameras sending images (their detector keeps a model each)",
    )
    idle_s: float = Field(
        default=120.0, gt=0, allow_inf_nan=False, description="a camera silent this long has its state freed"
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """A queue slot held for one batch of one camera while it is checked and stored."""

    number: int
    camera_id: str
    first: float
    last: float
    pixels: int


@dataclass(slots=True)
class _Camera:
    accepted_until: float
    last_seen: float
    queued: int = 0
    pixels: int = 0
    accepted_any: bool = False
    pending: dict[int, Reservation] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.queued > 0 or bool(self.pending)

    def footprint(self) -> int:
        """The frame pixels this camera's detector state has or will have."""
        return max([self.pixels, *(r.pixels for r in self.pending.values())])


class Admission:
    """Queue slots and live cameras (thread-safe); see the module docstring.

    ``stored_until(camera)`` gives a camera's last accepted timestamp from durable storage (or
    None), read when a camera starts or comes back. ``queued_by_camera`` is what the journal holds
    at start: those cameras are live from the outset.
    """

    def __init__(
        self,
        limits: CameraLimits,
        *,
        max_queued: int,
        declared: frozenset[str] = frozenset(),
        stored_until: Callable[[str], float | None] = lambda camera_id: None,
        queued_by_camera: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self.limits = limits
        self.max_queued = max_queued
        self.declared = declared
        self._stored_until = stored_until
        self._clock = clock
        self._lock = threading.Lock()
        self._numbers = count(1)
        self._cameras: dict[str, _Camera] = {}
        self._queued = 0
        self._reserved = 0
        self._seconds_per_batch = 0.01
        now = clock()
        for camera_id, waiting in (queued_by_camera or {}).items():
            if waiting > 0:
                until = stored_until(camera_id)
                self._cameras[camera_id] = _Camera(
                    -math.inf if until is None else until, now, queued=waiting, accepted_any=True
                )
                self._queued += waiting

    # ---------------------------------------------------------------------------------- reading
    @property
    def max_cameras(self) -> int:
        """The camera cap in force: the site's cameras when declared, else ``max_cameras``."""
        return max(self.limits.max_cameras, len(self.declared))

    @property
    def queued(self) -> int:
        """Batches stored and not processed yet."""
        return self._queued

    @property
    def full(self) -> bool:
        """True while no queue slot is free (stored and reserved batches together)."""
        return self._queued + self._reserved >= self.max_queued

    @property
    def cameras(self) -> list[str]:
        """The cameras holding state now, sorted."""
        with self._lock:
            return sorted(self._cameras)

    def megapixels(self) -> float:
        """Frame megapixels held by cameras that send images."""
        with self._lock:
            return sum(c.footprint() for c in self._cameras.values()) / 1e6

    def retry_after(self) -> float:
        """About how long until a queue slot frees: the backlog at the recent rate, 1-60 s."""
        return max(1.0, min(60.0, (self._queued + self._reserved) * self._seconds_per_batch))

    # ---------------------------------------------------------------------------------- changes
    def reserve(self, camera_id: str, first: float, last: float, *, pixels: int = 0) -> Reservation:
        """A queue slot for a batch spanning ``[first, last]`` of ``camera_id`` (``pixels`` per frame
        when it sends images); refuses with ``UnknownCamera``, ``InvalidRequest`` (time order),
        ``Overloaded`` or ``CameraLimit``, taking nothing."""
        with self._lock:
            now = self._clock()
            camera = self._cameras.get(camera_id)
            if camera is None and self.declared and camera_id not in self.declared:
                raise UnknownCamera(
                    f"camera {camera_id!r} is not one of the {len(self.declared)} cameras of the site file"
                )
            if camera is None:
                until = self._stored_until(camera_id)
                floor = -math.inf if until is None else until
            else:
                floor = max([camera.accepted_until, *(r.last for r in camera.pending.values())])
            if first <= floor:
                what = "accepted" if camera is None or not camera.pending else "accepted or being admitted"
                raise InvalidRequest(
                    f"camera {camera_id!r}: frames must come after the last {what} one "
                    f"(timestamp {first} is not after {floor})"
                )
            waiting = self._queued + self._reserved
            if waiting >= self.max_queued:
                wait = self.retry_after()
                raise Overloaded(
                    f"ingest queue is full ({waiting} batches waiting); retry in {wait:.1f} s",
                    retry_after_s=wait,
                )
            mine = 0 if camera is None else camera.queued + len(camera.pending)
            if 2 * waiting >= self.max_queued and mine >= self._fair_share(camera):
                wait = self.retry_after()
                raise Overloaded(
                    f"camera {camera_id!r} has {mine} batches waiting, its fair share of a queue more "
                    f"than half full ({waiting} of {self.max_queued}); retry in {wait:.1f} s",
                    retry_after_s=wait,
                )
            if camera is None and len(self._cameras) >= self.max_cameras:
                wait = self._next_free(now)
                raise CameraLimit(
                    f"{len(self._cameras)} cameras already hold state (max_cameras); camera "
                    f"{camera_id!r} can start when one has been idle {self.limits.idle_s:g} s "
                    f"(retry in {wait:.1f} s)",
                    retry_after_s=wait,
                )
            if pixels > 0:
                held = sum(c.footprint() for c in self._cameras.values())
                mine = 0 if camera is None else camera.footprint()
                total = held - mine + max(mine, pixels)
                if total > self.limits.max_megapixels * 1e6:
                    wait = self._next_free(now)
                    raise CameraLimit(
                        f"camera {camera_id!r}: {pixels / 1e6:.2f} megapixels per frame would bring the "
                        f"cameras' frames to {total / 1e6:.1f} megapixels; the limit is "
                        f"{self.limits.max_megapixels:g} (max_megapixels; retry in {wait:.1f} s)",
                        retry_after_s=wait,
                    )
            if camera is None:
                camera = self._cameras[camera_id] = _Camera(floor, now)
            reservation = Reservation(next(self._numbers), camera_id, first, last, pixels)
            camera.pending[reservation.number] = reservation
            camera.last_seen = now
            self._reserved += 1
            return reservation

    def commit(self, reservation: Reservation) -> None:
        """The reserved batch is in the journal: it waits for the worker."""
        with self._lock:
            camera = self._cameras[reservation.camera_id]
            del camera.pending[reservation.number]
            self._reserved -= 1
            self._queued += 1
            camera.queued += 1
            camera.accepted_any = True
            camera.accepted_until = max(camera.accepted_until, reservation.last)
            if reservation.pixels:
                camera.pixels = reservation.pixels
            camera.last_seen = self._clock()

    def release(self, reservation: Reservation) -> None:
        """The reserved batch was refused after all: its slot frees, and a camera that never had a
        batch accepted is forgotten (refused requests must not fill the camera cap)."""
        with self._lock:
            camera = self._cameras.get(reservation.camera_id)
            if camera is None or camera.pending.pop(reservation.number, None) is None:
                return
            self._reserved -= 1
            if not camera.accepted_any and not camera.busy:
                del self._cameras[reservation.camera_id]

    def done(self, camera_id: str, seconds: float) -> None:
        """The worker finished (or failed) one batch of ``camera_id`` in ``seconds``."""
        with self._lock:
            self._queued -= 1
            camera = self._cameras.get(camera_id)
            if camera is not None:
                camera.queued -= 1
            self._seconds_per_batch = 0.9 * self._seconds_per_batch + 0.1 * seconds

    def recent(self, within_s: float) -> set[str]:
        """Cameras with a batch waiting or on its way, or heard from within ``within_s``: those whose
        frames the site stage waits for before going on in time."""
        with self._lock:
            now = self._clock()
            return {
                camera_id
                for camera_id, camera in self._cameras.items()
                if camera.busy or now - camera.last_seen < within_s
            }

    def take_idle(self) -> list[str]:
        """Release every camera idle for ``idle_s`` with nothing waiting; their ids (free their state)."""
        with self._lock:
            now = self._clock()
            idle = [
                camera_id
                for camera_id, camera in self._cameras.items()
                if not camera.busy and now - camera.last_seen >= self.limits.idle_s
            ]
            for camera_id in idle:
                del self._cameras[camera_id]
        return sorted(idle)

    def _fair_share(self, camera: _Camera | None) -> int:
        """Queue slots one camera may hold once the queue is half full: an equal share among the
        cameras with batches waiting (this one included), so no camera can starve the others."""
        busy = sum(1 for c in self._cameras.values() if c.busy)
        if camera is None or not camera.busy:
            busy += 1
        return max(1, self.max_queued // busy)

    def _next_free(self, now: float) -> float:
        """Seconds until the next camera goes idle (at least 1)."""
        ends = [c.last_seen + self.limits.idle_s - now for c in self._cameras.values() if not c.busy]
        return max(1.0, min(ends, default=self.limits.idle_s))


class ImageDecoder:
    """Decodes images only after their header passed ``limits``, at most ``concurrency`` at once.

    ``probe`` reads the header (no pixels are decoded) and refuses an image over the limits;
    ``decode`` probes, then waits up to ``wait_s`` for a decode slot (``Overloaded`` after that)
    and decodes. Refusals are ``ServiceError`` s naming the image (``where``) and the limit.
    """

    def __init__(self, limits: ImageLimits, *, concurrency: int = 2, wait_s: float = 5.0) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.limits = limits
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(concurrency)

    def probe(self, data: bytes, where: str = "") -> ImageInfo:
        """The image's format and size from its header, refused when over the limits."""
        try:
            info = probe_image(data)
            self.limits.check(info)
        except ImageError as error:
            raise refusal(error, where) from error
        return info

    def decode(self, data: bytes, where: str = "", *, forever: bool = False) -> NDArray[np.uint8]:
        """The decoded image (BGR); ``forever`` waits for a slot however long it takes (the worker)."""
        self.probe(data, where)
        if not self._slots.acquire(timeout=None if forever else self.wait_s):
            raise Overloaded(f"{where}every image decoder is busy; retry in a second", retry_after_s=1.0)
        try:
            return decode_image(data, self.limits)
        except ImageError as error:
            raise refusal(error, where) from error
        finally:
            self._slots.release()
