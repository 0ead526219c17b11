"""Frame sources on real files and a real local HTTP server: no mocks.

Videos are written here with PyAV (the top half of frame ``i`` is a flat colour whose blue level
encodes ``i``, the bottom half noise so packets are big enough to damage); the stream tests serve
an MPEG-TS file from a ``ThreadingHTTPServer`` on 127.0.0.1, stop it, restart it on the same port
and finally leave it down.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview import Frame
from crossview.io.buffer import BufferedSource
from crossview.io.formats.mot import SequenceInfo, write_seqinfo
from crossview.io.sources import (
    FrameSource,
    ImageFolderSource,
    ReconnectPolicy,
    SourceError,
    StreamEvent,
    StreamEventKind,
    StreamSource,
    VideoFileSource,
)
from crossview.io.sources.stream import redact_url
from tests.conftest import shared_path

WIDTH, HEIGHT = 160, 120


def blue_level(index: int) -> int:
    return 20 + (index * 7) % 200


def synthetic_image(index: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[: HEIGHT // 2] = (blue_level(index), 90, 160)
    return image


def write_video(path: Path, frames: int = 60, codec: str = "mpeg4", fps: int = 10) -> Path:
    """A real encoded video of ``frames`` synthetic frames (see the module docstring)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.bit_rate = 4_000_000
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(synthetic_image(index, rng), format="bgr24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """``(byte offset, size)`` of each video packet in the file."""
    with av.open(str(path)) as container:
        return [
            (packet.pos, packet.size)
            for packet in container.demux(video=0)
            if packet.size and packet.pos is not None
        ]


def damage(path: Path, packets: range, start: int, stop: int, seed: int = 1) -> None:
    """Overwrite bytes ``start:stop`` (relative; negative from the end) of the given packets."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for offset, size in [packet_spans(path)[i] for i in packets]:
        first, last = offset + (start % size), offset + (stop % size)
        data[first:last] = rng.integers(0, 256, last - first, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------ video files
@pytest.mark.parametrize(("codec", "suffix"), [("mpeg4", ".mp4"), ("mjpeg", ".avi"), ("mpeg4", ".mkv")])
def test_video_file_frames_indices_timestamps_and_colours(tmp_path: Path, codec: str, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", frames=30, codec=codec, fps=10)
    with VideoFileSource(path) as source:
        assert isinstance(source, FrameSource)
        assert source.camera_id == "clip"
        assert source.fps == pytest.approx(10.0)
        assert source.size == (WIDTH, HEIGHT)
        frames = list(source)
    assert [frame.index for frame in frames] == list(range(30))
    assert [frame.timestamp for frame in frames] == pytest.approx([i / 10 for i in range(30)])
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        assert frame.camera_id == "clip"
        top = frame.image[5 : HEIGHT // 2 - 5, 5:-5].reshape(-1, 3).mean(axis=0)
        # BGR order: blue carries the index, red is the constant 160.
        assert abs(top[0] - blue_level(frame.index)) < 8
        assert abs(top[2] - 160) < 8
    assert source.stats.frames_read == 30
    assert source.stats.corrupt_frames == 0


def test_video_file_selection_start_stride_max_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=40)
    with VideoFileSource(path, camera_id="gate", start=5, stride=3, max_frames=6) as source:
        frames = list(source)
    assert [frame.index for frame in frames] == [5, 8, 11, 14, 17, 20]
    assert [frame.timestamp for frame in frames] == pytest.approx([0.5, 0.8, 1.1, 1.4, 1.7, 2.0])
    assert {frame.camera_id for frame in frames} == {"gate"}
    assert source.stats.frames_read == 6
    with VideoFileSource(path, max_frames=0) as source:
        assert list(source) == []
    with pytest.raises(ValueError, match="stride"):
        VideoFileSource(path, stride=0)
    with pytest.raises(ValueError, match="start"):
        VideoFileSource(path, start=-1)


def test_real_video_vtest_all_frames() -> None:
    path = shared_path("data", "video", "vtest.avi")
    with VideoFileSource(path, camera_id="street") as source:
        assert source.frame_count == 795
        count = 0
        for frame in source:
            assert frame.size == (768, 576)
            assert frame.index == count
            assert frame.timestamp == pytest.approx(count / 10)
            count += 1
    assert count == 795
    assert source.stats.frames_read == 795 and source.stats.corrupt_frames == 0


@pytest.mark.parametrize(
    ("codec", "suffix", "start", "stop", "expected_error"),
    [
        # The JPEG headers of three frames overwritten: the decoder rejects those packets.
        ("mjpeg", ".avi", 8, 600, "InvalidDataError"),
        # The middle of three MPEG-4 frames overwritten: the decoder flags those frames corrupt.
        ("mpeg4", ".mp4", 40, -40, "corrupt"),
    ],
)
def test_corrupt_frames_mid_file_are_skipped_counted_and_decoding_goes_on(
    tmp_path: Path, codec: str, suffix: str, start: int, stop: int, expected_error: str
) -> None:
    path = write_video(tmp_path / f"damaged{suffix}", frames=60, codec=codec)
    damage(path, range(25, 28), start, stop)
    with VideoFileSource(path) as source:
        frames = list(source)
    indices = [frame.index for frame in frames]
    assert source.stats.corrupt_frames > 0
    assert expected_error in (source.stats.last_error or "")
    assert source.stats.frames_read == len(frames) == 60 - source.stats.corrupt_frames
    # The damaged frames are missing, every later frame still arrives, at its own index and time.
    assert not {25, 26, 27} & set(indices)
    assert indices[-1] == 59 and all(i in indices for i in range(28, 60))
    assert [frame.timestamp for frame in frames] == pytest.approx([i / 10 for i in indices])
    late = frames[-1].image[5 : HEIGHT // 2 - 5, 5:-5, 0].mean()
    assert abs(late - blue_level(59)) < 8


def test_real_video_with_damaged_bytes_decodes_to_the_end(tmp_path: Path) -> None:
    data = bytearray(shared_path("data", "video", "vtest.avi").read_bytes())
    rng = np.random.default_rng(0)
    for fraction in (0.4, 0.5, 0.6):
        at = int(len(data) * fraction)
        data[at : at + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path = tmp_path / "vtest-damaged.avi"
    path.write_bytes(bytes(data))
    with VideoFileSource(path) as source:
        frames = [frame.index for frame in source]
    # MS-MPEG4 conceals most damage; what matters is that decoding reaches the end of the file.
    assert len(frames) + source.stats.corrupt_frames >= 790
    assert frames[-1] >= 790


def test_unreadable_files_raise_source_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(SourceError, match=r"missing\.mp4: no such file") as info:
        VideoFileSource(missing)
    assert isinstance(info.value, ValueError) and info.value.source == str(missing)

    with pytest.raises(SourceError, match="not a file"):
        VideoFileSource(tmp_path)

    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 20)
    with pytest.raises(SourceError, match=r"notes\.mp4: cannot open as a video"):
        VideoFileSource(text)

    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.avi"):
        VideoFileSource(empty)

    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(8000) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(SourceError, match=r"tone\.wav: has no video stream"):
        VideoFileSource(audio)


def test_single_pass_close_and_close_from_another_thread(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=200)
    source = VideoFileSource(path)
    frames = iter(source)
    assert next(frames).index == 0
    with pytest.raises(RuntimeError, match="single-pass"):
        iter(source)
    closer = threading.Thread(target=source.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()
    assert list(frames) == []  # iteration ends at the next frame after a close
    assert source.closed
    source.close()  # idempotent
    with VideoFileSource(path) as unread:
        pass
    with pytest.raises(SourceError, match="closed"):
        iter(unread)


# ------------------------------------------------------------------------------ image folders
def write_mot_sequence(root: Path, frames: int = 12, fps: float = 25.0) -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(0)
    images = [synthetic_image(i, rng) for i in range(frames)]
    (root / "img1").mkdir(parents=True)
    for number, image in enumerate(images, start=1):
        assert cv2.imwrite(str(root / "img1" / f"{number:06d}.jpg"), image)
    write_seqinfo(root / "seqinfo.ini", SequenceInfo(name=root.name, length=frames, frame_rate=fps))
    return images


def test_image_folder_mot_sequence_root(tmp_path: Path) -> None:
    root = tmp_path / "MOT17-99"
    images = write_mot_sequence(root, frames=12, fps=25.0)
    (root / "img1" / "000005.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "img1" / "notes.txt").write_text("ignored")
    with ImageFolderSource(root) as source:
        assert isinstance(source, FrameSource)
        assert (source.camera_id, source.fps, source.frame_count) == ("MOT17-99", 25.0, 12)
        frames = list(source)
    assert [frame.index for frame in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert [frame.timestamp for frame in frames] == pytest.approx(
        [i / 25 for i in [0, 1, 2, 3, *range(5, 12)]]
    )
    assert source.stats.frames_read == 11
    assert source.stats.corrupt_frames == 1
    assert "000005.jpg" in (source.stats.last_error or "")
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
        difference = np.abs(frame.image[:50].astype(int) - images[frame.index][:50].astype(int)).mean()
        assert difference < 3  # JPEG round trip of the flat half


def test_image_folder_layouts_selection_and_ordering(tmp_path: Path) -> None:
    root = tmp_path / "seq"
    write_mot_sequence(root, frames=10)
    (root / "seqinfo.ini").unlink()
    with ImageFolderSource(root, camera_id="cam2", fps=5, start=2, stride=3) as source:
        frames = list(source)
    assert source.camera_id == "cam2"
    assert [(frame.index, frame.timestamp) for frame in frames] == [(2, 0.4), (5, 1.0), (8, 1.6)]

    plain = tmp_path / "plain"
    plain.mkdir()
    image = np.full((8, 8, 3), 7, np.uint8)
    for number in (1, 2, 10):  # numeric order, not name order
        cv2.imwrite(str(plain / f"{number}.png"), image)
    with ImageFolderSource(plain) as source:
        assert [path.name for path in source.files] == ["1.png", "2.png", "10.png"]
        assert [frame.index for frame in source] == [0, 1, 9]
    assert source.fps == 30.0

    named = tmp_path / "named"
    named.mkdir()
    for name in ("b.png", "a.png", "c.png"):
        cv2.imwrite(str(named / name), image)
    with ImageFolderSource(named, max_frames=2) as source:
        assert [frame.index for frame in source] == [0, 1]
        assert [path.name for path in source.files] == ["a.png", "b.png", "c.png"]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        ImageFolderSource(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image files"):
        ImageFolderSource(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "seqinfo.ini").write_text("[Sequence]\nname=bad\n")
    with pytest.raises(SourceError, match=r"seqinfo\.ini: missing seqLength"):
        ImageFolderSource(bad)
    with pytest.raises(ValueError, match="fps"):
        ImageFolderSource(bad, fps=0)


# ------------------------------------------------------------------------------ live streams
def write_transport_stream(path: Path, frames: int, fps: int = 25) -> bytes:
    """An MPEG-TS file of ``frames`` MPEG-2 frames, what a camera or encoder would send over HTTP."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(synthetic_image(index, rng), format="bgr24"))
            )
        container.mux(stream.encode(None))
    return path.read_bytes()


class _StreamingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, payload: bytes, seconds: float, stop: threading.Event) -> None:
        super().__init__(("127.0.0.1", port), _StreamingHandler)
        self.payload = payload
        self.seconds = seconds
        self.stop_streaming = stop


class _StreamingHandler(http.server.BaseHTTPRequestHandler):
    server: _StreamingServer
    chunk = 4096

    def do_GET(self) -> None:
        payload = self.server.payload
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        # Without a length FFmpeg cannot tell the end of the file from a cut connection.
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        chunks = range(0, len(payload), self.chunk)
        pause = self.server.seconds / len(chunks)
        try:
            for offset in chunks:
                if self.server.stop_streaming.is_set():
                    return
                self.wfile.write(payload[offset : offset + self.chunk])
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the source's events, not the server's log."""


class LocalStreamServer:
    """Serves ``payload`` over HTTP on 127.0.0.1, paced to last ``seconds``; stoppable and restartable."""

    def __init__(self, payload: bytes, seconds: float) -> None:
        self.payload = payload
        self.seconds = seconds
        self.port = 0
        self._server: _StreamingServer | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.ts"

    def start(self) -> None:
        self._stop = threading.Event()
        self._server = _StreamingServer(self.port, self.payload, self.seconds, self._stop)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        """Cut every open connection and stop listening (the port is refused until ``start``)."""
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None


@pytest.fixture
def transport_stream(tmp_path: Path) -> bytes:
    return write_transport_stream(tmp_path / "live.ts", frames=300)


@pytest.fixture
def server(transport_stream: bytes) -> Iterator[LocalStreamServer]:
    local = LocalStreamServer(transport_stream, seconds=6.0)  # 12 s of video at twice real time
    local.start()
    yield local
    local.stop()


def test_stream_reconnects_after_server_restart_then_gives_up(server: LocalStreamServer) -> None:
    events: list[StreamEvent] = []
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, multiplier=2.0, max_attempts=8)
    source = StreamSource(server.url, "door", reconnect=policy, timeout=2.0, on_event=events.append)
    frames: list[Frame] = []
    after_reconnect: list[Frame] = []
    restart: threading.Timer | None = None
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        for frame in source:
            frames.append(frame)
            if len(frames) == 20:
                server.stop()  # the stream dies mid-way ...
                restart = threading.Timer(0.1, server.start)  # ... and the server comes back
                restart.start()
            if source.stats.reconnects == 1:
                after_reconnect.append(frame)
                if len(after_reconnect) == 10:
                    server.stop()  # and now stays down
    elapsed = time.monotonic() - started
    assert restart is not None
    restart.join()

    message = str(info.value)
    assert message.startswith(server.url)
    assert "gave up after 8 failed connection attempts" in message
    assert source.stats.reconnects == 1
    assert source.stats.disconnects == 2
    assert len(after_reconnect) >= 10
    indices = [frame.index for frame in frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert all(abs(frame.timestamp - time.time()) < 60 for frame in frames)  # arrival wall time
    kinds = [event.kind for event in events]
    assert kinds[0] is StreamEventKind.CONNECTED
    assert kinds.count(StreamEventKind.RECONNECTED) == 1
    assert kinds.count(StreamEventKind.DISCONNECTED) == 2
    assert kinds[-1] is StreamEventKind.GAVE_UP and events[-1].failures == 8
    retries = [event for event in events if event.kind is StreamEventKind.RETRYING]
    assert retries[-1].delay == pytest.approx(0.2)
    assert retries[0].delay == pytest.approx(0.05)
    assert elapsed < 10


def test_stream_whole_file_without_reconnect_matches_the_file(
    tmp_path: Path, transport_stream: bytes
) -> None:
    local = LocalStreamServer(transport_stream, seconds=0.5)
    local.start()
    try:
        source = StreamSource(local.url, "door", clock="pts", reconnect_on_end=False, timeout=2.0)
        with source:
            streamed = list(source)
    finally:
        local.stop()
    with VideoFileSource(tmp_path / "live.ts") as file_source:
        from_file = list(file_source)
    assert len(streamed) == len(from_file) == 300
    assert [frame.timestamp for frame in streamed] == pytest.approx([frame.timestamp for frame in from_file])
    assert np.diff([frame.timestamp for frame in streamed]) == pytest.approx(np.full(299, 1 / 25))
    assert source.stats.reconnects == 0 and source.stats.disconnects == 0


def test_stream_to_a_silent_server_times_out_instead_of_hanging() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.01, max_attempts=2)
    source = StreamSource(f"http://127.0.0.1:{port}/cam", "silent", reconnect=policy, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match="gave up after 2 failed connection attempts"):
            list(source)
    finally:
        listener.close()
        for connection in accepted:
            connection.close()
    assert time.monotonic() - started < 5
    assert len(accepted) == 2


def test_stream_close_interrupts_the_backoff_wait() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: connections to it are refused
    retrying = threading.Event()
    source = StreamSource(
        f"http://127.0.0.1:{port}/cam",
        "cam",
        reconnect=ReconnectPolicy(initial_delay=30.0, max_delay=60.0),
        on_event=lambda event: retrying.set() if event.kind is StreamEventKind.RETRYING else None,
    )
    buffered = BufferedSource(source, capacity=2, policy="drop_oldest")
    buffered.start()
    assert retrying.wait(5)
    started = time.monotonic()
    buffered.close()
    assert time.monotonic() - started < 2
    assert list(buffered) == []
    assert source.stats.frames_read == 0
    assert "ConnectionRefusedError" in (source.stats.last_error or "")


def test_reconnect_policy_backoff_jitter_and_validation() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, multiplier=2.0, max_attempts=3)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert not policy.gives_up_after(2) and policy.gives_up_after(3)
    assert not ReconnectPolicy().gives_up_after(10**6)
    assert ReconnectPolicy().delay(10**6) == 30.0
    jittered = ReconnectPolicy(initial_delay=1.0, max_delay=10.0, jitter=0.5)
    assert jittered.delay(1, 0.0) == pytest.approx(0.5)
    assert jittered.delay(1, 0.999999) == pytest.approx(1.5, abs=1e-5)
    assert jittered.delay(5, 0.999999) == 10.0  # capped after the jitter too
    for bad in ({"initial_delay": -1.0}, {"multiplier": 0.5}, {"max_attempts": 0}, {"jitter": 2.0}):
        with pytest.raises(ValueError):
            ReconnectPolicy(**bad)
    with pytest.raises(ValueError, match="max_delay"):
        ReconnectPolicy(initial_delay=5.0, max_delay=1.0)
    with pytest.raises(ValueError):
        policy.delay(0)


def test_passwords_stay_out_of_urls_events_and_errors() -> None:
    assert redact_url("rtsp://admin:secret@10.0.0.7:554/s1") == "rtsp://admin:***@10.0.0.7:554/s1"
    assert redact_url("rtsp://10.0.0.7/s1") == "rtsp://10.0.0.7/s1"
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    events: list[StreamEvent] = []
    source = StreamSource(
        f"http://viewer:hunter2@127.0.0.1:{port}/cam",
        "cam",
        reconnect=ReconnectPolicy(initial_delay=0.0, max_attempts=1),
        on_event=events.append,
    )
    assert source.url == f"http://viewer:***@127.0.0.1:{port}/cam"
    with pytest.raises(SourceError) as info:
        list(source)
    texts = [str(info.value), source.stats.last_error or "", *(repr(event) for event in events)]
    assert all("hunter2" not in text for text in texts)
