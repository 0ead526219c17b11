"""Contract tests of the bounded buffer's policies, and of ``BufferedSource`` over real sources."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import av
import numpy as np
import pytest

from crossview import Frame
from crossview.io.buffer import BufferClosed, BufferedSource, FrameBuffer, OverflowPolicy
from crossview.io.sources import (
    FrameSource,
    ReconnectPolicy,
    SourceError,
    SourceStats,
    StreamSource,
    VideoFileSource,
)

POLICIES = list(OverflowPolicy)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def run_in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``target`` on a thread; the list receives its result or the exception it raised."""
    outcome: list[object] = []

    def body() -> None:
        try:
            outcome.append(target())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


# ------------------------------------------------------------------------------ FrameBuffer contract
@pytest.mark.parametrize(
    ("policy", "returns", "kept", "dropped"),
    [
        (OverflowPolicy.DROP_OLDEST, [True] * 10, [7, 8, 9], 7),
        (OverflowPolicy.DROP_NEWEST, [True] * 3 + [False] * 7, [0, 1, 2], 7),
    ],
)
def test_overflow_without_consumer(
    policy: OverflowPolicy, returns: list[bool], kept: list[int], dropped: int
) -> None:
    buffer = FrameBuffer[int](3, policy)
    assert [buffer.put(i) for i in range(10)] == returns
    stats = buffer.stats()
    assert (stats.depth, stats.high_water, stats.dropped, stats.accepted) == (3, 3, dropped, sum(returns))
    buffer.close()
    assert list(buffer) == kept
    assert buffer.stats().delivered == 3


@pytest.mark.parametrize(
    ("policy", "consumed", "dropped"),
    [
        (OverflowPolicy.DROP_OLDEST, [1, 3, 4, 5], 2),
        (OverflowPolicy.DROP_NEWEST, [0, 1, 2, 4], 2),
    ],
)
def test_exact_drops_for_interleaved_puts_and_gets(
    policy: OverflowPolicy, consumed: list[int], dropped: int
) -> None:
    buffer = FrameBuffer[int](3, policy)
    got = []
    for i in range(4):
        buffer.put(i)
    got.append(buffer.get())
    buffer.put(4)
    buffer.put(5)
    buffer.close()
    got.extend(buffer)
    assert got == consumed
    assert buffer.dropped == dropped
    assert buffer.high_water == 3


def test_block_policy_blocks_the_producer_and_resumes() -> None:
    buffer = FrameBuffer[int](2, "block")
    assert buffer.put(0) and buffer.put(1)
    thread, outcome = run_in_thread(lambda: buffer.put(2))
    time.sleep(0.2)
    assert thread.is_alive() and outcome == []  # waiting for room: backpressure
    assert buffer.depth == 2
    assert buffer.get() == 0
    thread.join(5)
    assert outcome == [True]
    buffer.close()
    assert list(buffer) == [1, 2]
    assert buffer.dropped == 0


def test_block_put_timeout_stores_nothing() -> None:
    buffer = FrameBuffer[int](1, OverflowPolicy.BLOCK)
    buffer.put(0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        buffer.put(1, timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 2
    assert buffer.stats().accepted == 1 and buffer.dropped == 0 and buffer.depth == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_get_timeout_and_fifo_order(policy: OverflowPolicy) -> None:
    buffer = FrameBuffer[str](4, policy)
    with pytest.raises(TimeoutError):
        buffer.get(timeout=0.05)
    for item in "abc":
        buffer.put(item)
    assert [buffer.get(), buffer.get(), buffer.get()] == ["a", "b", "c"]
    assert len(buffer) == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_close_wakes_a_waiting_consumer(policy: OverflowPolicy) -> None:
    buffer = FrameBuffer[int](2, policy)
    thread, outcome = run_in_thread(buffer.get)
    time.sleep(0.1)
    assert thread.is_alive()
    buffer.close()
    thread.join(2)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BufferClosed)


def test_close_wakes_a_blocked_producer() -> None:
    buffer = FrameBuffer[int](1, "block")
    buffer.put(0)
    thread, outcome = run_in_thread(lambda: buffer.put(1))
    time.sleep(0.1)
    assert thread.is_alive()
    buffer.close()
    thread.join(2)
    assert len(outcome) == 1 and isinstance(outcome[0], BufferClosed)
    assert list(buffer) == [0]


@pytest.mark.parametrize("policy", POLICIES)
def test_close_lets_consumers_drain_then_ends_and_refuses_puts(policy: OverflowPolicy) -> None:
    buffer = FrameBuffer[int](4, policy)
    buffer.put(1)
    buffer.put(2)
    buffer.close()
    buffer.close()  # idempotent
    assert buffer.closed
    with pytest.raises(BufferClosed):
        buffer.put(3)
    assert buffer.get() == 1
    assert list(buffer) == [2]
    with pytest.raises(BufferClosed):
        buffer.get()
    assert buffer.stats().accepted == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_close_with_error_reaches_the_consumer_after_the_items(policy: OverflowPolicy) -> None:
    buffer = FrameBuffer[int](4, policy)
    buffer.put(1)
    buffer.put(2)
    failure = RuntimeError("camera on fire")
    buffer.close(failure)
    buffer.close(ValueError("later errors do not replace the first"))
    received = []
    with pytest.raises(RuntimeError, match="camera on fire") as info:
        for item in buffer:
            received.append(item)
    assert received == [1, 2]
    assert info.value is failure


@pytest.mark.parametrize("policy", POLICIES)
def test_concurrent_producer_and_consumer_keep_order_and_account_for_every_item(
    policy: OverflowPolicy,
) -> None:
    buffer = FrameBuffer[int](5, policy)
    total = 5000

    def produce() -> None:
        for i in range(total):
            buffer.put(i)
            if i % 500 == 0:
                time.sleep(0.001)
        buffer.close()

    producer = threading.Thread(target=produce)
    producer.start()
    received = []
    for item in buffer:
        received.append(item)
        if len(received) % 100 == 0:
            time.sleep(0.001)  # a consumer that is sometimes slower
    producer.join()
    stats = buffer.stats()
    assert received == sorted(received) and len(set(received)) == len(received)
    assert len(received) + stats.dropped == total
    assert stats.high_water <= 5
    if policy is OverflowPolicy.BLOCK:
        assert received == list(range(total))
    if policy is OverflowPolicy.DROP_OLDEST:
        assert received[-1] == total - 1  # the freshest item always survives


def test_many_producers_and_consumers_under_backpressure() -> None:
    buffer = FrameBuffer[int](3, "block")
    producers = [
        threading.Thread(target=lambda start=start: [buffer.put(start + i) for i in range(500)])
        for start in (0, 1000, 2000, 3000)
    ]
    received: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        for item in buffer:
            with lock:
                received.append(item)

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    for thread in producers + consumers:
        thread.start()
    for thread in producers:
        thread.join()
    buffer.close()
    for thread in consumers:
        thread.join(5)
    assert sorted(received) == sorted(start + i for start in (0, 1000, 2000, 3000) for i in range(500))
    assert buffer.high_water <= 3


def test_invalid_construction() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FrameBuffer[int](0)
    with pytest.raises(ValueError, match="'drop_oldest'"):
        FrameBuffer[int](2, "drop_random")
    assert FrameBuffer[int](2, "drop_newest").policy is OverflowPolicy.DROP_NEWEST


def test_clear_discards_waiting_items_and_frees_room() -> None:
    buffer = FrameBuffer[int](2, "block")
    buffer.put(1)
    buffer.put(2)
    thread, outcome = run_in_thread(lambda: buffer.put(3))
    time.sleep(0.05)
    assert buffer.clear() == 2
    thread.join(2)
    assert outcome == [True]
    assert buffer.get() == 3 and buffer.dropped == 0


# ------------------------------------------------------------------------------ BufferedSource
class CountingSource:
    """A real ``FrameSource``: ``count`` frames as fast as possible, then ``error`` if given."""

    def __init__(self, count: int, error: Exception | None = None, camera_id: str = "synthetic") -> None:
        self._count = count
        self._error = error
        self._camera_id = camera_id
        self._stats = SourceStats()
        self._stop = threading.Event()
        self.image = np.zeros((48, 64, 3), np.uint8)

    @property
    def camera_id(self) -> str:
        return self._camera_id

    @property
    def stats(self) -> SourceStats:
        return self._stats

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self._count):
            if self._stop.is_set():
                return
            yield Frame(self.image.copy(), self._camera_id, index, time.monotonic())
            self._stats.frames_read += 1
        if self._error is not None:
            self._stats.last_error = str(self._error)
            raise self._error

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = 96, 64
        for _ in range(frames):
            image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def test_buffered_source_is_a_frame_source_and_block_loses_nothing(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=120)
    with VideoFileSource(path, camera_id="gate") as direct:
        expected = [(frame.index, frame.timestamp, frame.image.sum()) for frame in direct]
    source = VideoFileSource(path, camera_id="gate")
    with BufferedSource(source, capacity=3, policy="block") as buffered:
        assert isinstance(buffered, FrameSource)
        assert buffered.camera_id == "gate"
        received = []
        for frame in buffered:
            received.append((frame.index, frame.timestamp, frame.image.sum()))
            time.sleep(0.001)
    assert received == expected
    stats = buffered.buffer_stats()
    assert stats.dropped == 0 and stats.high_water <= 3 and stats.accepted == 120
    assert buffered.stats.frames_read == 120
    assert source.closed


def test_buffered_source_drop_oldest_bounds_memory_and_keeps_the_freshest() -> None:
    source = CountingSource(3000)
    buffered = BufferedSource(source, capacity=4, policy=OverflowPolicy.DROP_OLDEST)
    indices = []
    for frame in buffered:
        indices.append(frame.index)
        time.sleep(0.0005)  # slower than the source
    stats = buffered.buffer_stats()
    assert stats.high_water <= 4
    assert stats.dropped > 0
    assert len(indices) + stats.dropped == source.stats.frames_read == 3000
    assert indices == sorted(indices) and indices[-1] == 2999
    buffered.close()


def test_buffered_source_raises_the_source_error_after_its_frames() -> None:
    failure = SourceError("rtsp://cam/1", "gave up after 3 failed connection attempts")
    buffered = BufferedSource(CountingSource(5, error=failure), capacity=10, policy="drop_newest")
    received = []
    with pytest.raises(SourceError, match="gave up") as info:
        for frame in buffered:
            received.append(frame.index)
    assert received == [0, 1, 2, 3, 4]
    assert info.value is failure
    buffered.close()


def test_buffered_source_propagates_a_real_stream_giving_up() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed at once: every connection is refused
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3)
    source = StreamSource(f"http://127.0.0.1:{port}/cam", "cam", reconnect=policy, timeout=1.0)
    with (
        BufferedSource(source, capacity=2, policy="drop_oldest") as buffered,
        pytest.raises(SourceError, match=r"127\.0\.0\.1.*gave up after 3"),
    ):
        list(buffered)
    assert source.stats.frames_read == 0


def test_buffered_source_close_stops_a_blocked_reader_thread(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", frames=300)
    source = VideoFileSource(path)
    buffered = BufferedSource(source, capacity=2, policy="block")
    frames = iter(buffered)
    assert next(frames).index == 0
    assert wait_until(lambda: buffered.buffer_stats().depth == 2)  # the reader now waits for room
    reader = next(t for t in threading.enumerate() if t.name == "crossview-source-long")
    started = time.monotonic()
    buffered.close()
    assert time.monotonic() - started < 2
    assert not reader.is_alive()
    assert source.closed
    assert list(frames) == []
    buffered.close()  # idempotent
