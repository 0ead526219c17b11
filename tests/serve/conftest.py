"""Real servers on 127.0.0.1 for the service tests: ``crossview serve`` as a child process, or
uvicorn in a thread when a test needs to reach into the running service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from crossview.serve.keys import KeyStore


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ServerProcess:
    """``python -m crossview.cli serve`` on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        command = [sys.executable, "-m", "crossview.cli", "serve", "--data-dir", str(data_dir)]
        # the tests' clients declare their detector as "test-detector": a name the service must know;
        # no drain on SIGTERM unless a test asks for one (a later --drain wins)
        command += ["--port", str(self.port), "--model", "test-detector", "--drain", "0", *args]
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        wait_until(self._healthy, what=f"the server on {self.url} (log: {self.log})")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}: {self.log.read_text()}")
        return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log_file.close()

    def terminate(self) -> bool:
        """SIGTERM, and whether the server then shut down cleanly (its lifespan finished).

        uvicorn re-raises the signal once its graceful shutdown is done, so the exit status is
        -SIGTERM either way; the log's last word tells.
        """
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._log_file.close()
        return '"event": "stopped"' in self.logs()

    def logs(self) -> str:
        return self.log.read_text()


class ThreadServer:
    """uvicorn serving ``app`` from a thread, for tests that need the service object."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.stoppers: list[Callable[[], object]] = []  # run first by stop (e.g. a gRPC server beside)
        self.thread.start()
        wait_until(lambda: httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200, what="server")

    def stop(self) -> None:
        for stopper in self.stoppers:
            stopper()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def make_key(data_dir: Path, name: str, scopes: str) -> tuple[str, str]:
    """A token and its key id, created in the server's key store."""
    with KeyStore(data_dir / "keys.sqlite") as store:
        token, record = store.create(name, scopes)
    return token, record.key_id


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def object_frames(
    looks: dict[int, np.ndarray], start: int, count: int, *, fps: float = 10.0, step: float = 4.0
) -> list[dict[str, Any]]:
    """Frames with one box per object, moving right at ``step`` px per frame, lanes 150 px apart."""
    frames = []
    for index in range(start, start + count):
        detections = []
        for lane, (_, look) in enumerate(sorted(looks.items())):
            x = 20.0 + step * index
            y = 40.0 + 150.0 * lane
            detections.append(
                {
                    "xyxy": [x, y, x + 40.0, y + 100.0],
                    "confidence": 0.9,
                    "class_id": 0,
                    "embedding": look.tolist(),
                }
            )
        frames.append({"frame_index": index, "timestamp": index / fps, "detections": detections})
    return frames


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir)
    yield process
    if process.process.poll() is None:
        process.terminate()


def encoded(image: np.ndarray, extension: str = ".png") -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` over a plain
    socket, then read the answer until the server closes or ``timeout``: what a client sees when
    it sends less than it declared."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def ingest_images(
    url: str, token: str, camera: str, images: list[bytes], start: int = 0, fps: float = 10.0, **headers: str
) -> httpx.Response:
    """``POST /v1/ingest/frames`` with frames ``start, start + 1, ...``."""
    files = [("images", (f"{start + i}.png", data, "image/png")) for i, data in enumerate(images)]
    form = {
        "camera_id": camera,
        "timestamps": ",".join(str((start + i) / fps) for i in range(len(images))),
        "frame_indices": ",".join(str(start + i) for i in range(len(images))),
    }
    return httpx.post(
        f"{url}/v1/ingest/frames", data=form, files=files, headers={**auth(token), **headers}, timeout=60
    )
