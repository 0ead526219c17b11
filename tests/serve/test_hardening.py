"""What an adversarial run did to the service, each finding replayed against a real server on
127.0.0.1 (a ``crossview serve`` child process, or uvicorn in a thread where a test must reach into
the service). Every test here failed before the hardening it checks."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import stat
import string
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import numpy as np
import pytest

import crossview.serve.admission as admission_module
from crossview.detect.motion import MotionDetector
from crossview.io.image import decode_image
from crossview.serve.admission import CameraLimits
from crossview.serve.app import ServeConfig, create_app
from crossview.serve.deps import get_service
from crossview.serve.gate import GateConfig
from crossview.serve.grpc_gen import crossview_pb2 as pb
from crossview.serve.grpc_gen import crossview_pb2_grpc as pb_grpc
from crossview.serve.keys import JwtVerifier
from crossview.serve.limits import RateLimit
from crossview.serve.service import Service, ServiceConfig
from crossview.serve.store import ServiceStore
from crossview.sim.bombs import png_bomb

from .conftest import (
    ServerProcess,
    ThreadServer,
    auth,
    encoded,
    ingest_images,
    make_key,
    noise,
    object_frames,
    raw_request,
    rss_mib,
    wait_until,
)

DIM = 480
MiB = 1024 * 1024


def look(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).random(DIM) ** 4
    return vector / np.linalg.norm(vector)


def ingest(url: str, token: str, camera: str, frames: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/ingest/detections",
        json={"camera_id": camera, "frames": frames},
        headers={**auth(token), **headers},
        timeout=30,
    )


def thread_server(data_dir: Path, gate: GateConfig | None = None, **service: Any) -> ThreadServer:
    config = ServeConfig(
        service=ServiceConfig(data_dir=data_dir, **service),
        gate=gate or GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
    )
    return ThreadServer(create_app(config))


def error_of(response: httpx.Response) -> dict[str, str]:
    return dict(response.json()["error"])


# ------------------------------------------------------------ 1. frame size and state per camera
def test_oversized_frames_are_refused_from_their_header_and_never_stored(data_dir: Path) -> None:
    server = ServerProcess(data_dir)
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest,read")
        bomb = png_bomb(8000, 8000)
        assert len(bomb) < 64 * 1024  # a few kilobytes that decode to 192 MB each
        before = rss_mib(server.process.pid)
        for camera in ("north", "south", "east"):
            refused = ingest_images(server.url, token, camera, [bomb])
            assert refused.status_code == 413, refused.text
            assert error_of(refused)["code"] == "image_too_large"
            message = error_of(refused)["message"]
            assert "8000 x 8000" in message and "8,847,360 px (max_pixels)" in message
        # three cameras of 8000 x 8000 frames took 4.7 GB before the fix
        assert rss_mib(server.process.pid) - before < 100
        stats = httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_queued"] == stats["batches_done"] == stats["batches_failed"] == 0
        assert stats["cameras"] == 0  # refused batches hold no camera state either
    finally:
        server.terminate()
    restarted = ServerProcess(data_dir)  # nothing refused is replayed
    try:
        stats = httpx.get(f"{restarted.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == stats["batches_failed"] == stats["cameras"] == 0
    finally:
        restarted.terminate()


def test_cameras_are_capped_and_their_state_freed_when_idle(data_dir: Path) -> None:
    server = thread_server(data_dir, cameras=CameraLimits(max_cameras=2, idle_s=1.0))
    service = server.app.state.crossview.service
    assert isinstance(service.detector, MotionDetector)
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest,read")
        frames = [encoded(noise(48, 64, seed)) for seed in range(3)]
        assert ingest_images(server.url, token, "a", frames).status_code == 202
        assert ingest_images(server.url, token, "b", frames).status_code == 202
        refused = ingest_images(server.url, token, "c", frames)
        assert refused.status_code == 429 and error_of(refused)["code"] == "camera_limit"
        assert "max_cameras" in error_of(refused)["message"] and int(refused.headers["Retry-After"]) >= 1
        wait_until(lambda: service.queued == 0, what="the queue to drain")
        assert service.detector.camera_ids == ["a", "b"]  # a background model each
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        assert 'crossview_ingest_frames_total{camera="a"} 3.0' in metrics
        # a second of silence: both cameras are released, their models and series freed
        wait_until(lambda: service.admission.cameras == [], what="the cameras to go idle")
        wait_until(lambda: service.detector.camera_ids == [], what="the models to be freed")
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        assert 'camera="a"' not in metrics and 'camera="b"' not in metrics
        assert server.app.state.crossview.drift.streams() == []
        assert ingest_images(server.url, token, "c", frames).status_code == 202
        # a camera that comes back still cannot go back in time
        again = ingest_images(server.url, token, "a", frames)
        assert again.status_code == 422 and "must come after" in error_of(again)["message"]
        assert ingest_images(server.url, token, "a", frames, start=3).status_code == 202
    finally:
        server.stop()


def test_cameras_sending_images_share_a_budget_of_frame_pixels(data_dir: Path) -> None:
    server = thread_server(data_dir, cameras=CameraLimits(max_megapixels=0.5))
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest")
        vga = [encoded(noise(480, 640))]  # 0.31 megapixels
        assert ingest_images(server.url, token, "a", vga).status_code == 202
        refused = ingest_images(server.url, token, "b", vga)
        assert refused.status_code == 429 and error_of(refused)["code"] == "camera_limit"
        assert "0.5 (max_megapixels" in error_of(refused)["message"]
        # detections need no detector model: they do not count against the pixel budget
        assert ingest(server.url, token, "b", object_frames({0: look(0)}, 0, 3)).status_code == 202
    finally:
        server.stop()


def test_only_the_cameras_of_the_site_file_may_send(data_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("cameras:\n  - {id: gate, source: push}\n  - {id: yard, source: push}\n")
    server = ServerProcess(data_dir, "--site", str(site))
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest")
        assert ingest(server.url, token, "gate", object_frames({0: look(0)}, 0, 3)).status_code == 202
        refused = ingest(server.url, token, "dock", object_frames({0: look(0)}, 0, 3))
        assert refused.status_code == 422 and error_of(refused)["code"] == "unknown_camera"
        assert "'dock' is not one of the 2 cameras of the site file" in error_of(refused)["message"]
    finally:
        server.terminate()


def test_a_journal_image_over_the_limits_is_failed_not_decoded(data_dir: Path) -> None:
    # a journal written before the limits existed: the bomb was accepted then
    store = ServiceStore(data_dir / "service.sqlite")
    frames = {"kind": "images", "model": "motion", "frames": [{"frame_index": 0, "timestamp": 0.0}]}
    store.accept("old-camera", frames, [0.0], 0, [png_bomb(20000, 20000)])
    store.close()
    server = ServerProcess(data_dir)
    try:
        token, _ = make_key(data_dir, "ops", "read")
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()["batches_failed"] == 1,
            what="the old batch to fail",
        )
        assert rss_mib(server.process.pid) < 1024  # decoding it would take 1.2 GB
    finally:
        server.terminate()
    reopened = ServiceStore(data_dir / "service.sqlite")
    try:
        (reason,) = reopened._db.execute("SELECT error FROM batches").fetchone()
        assert "20000 x 20000" in reason and "max_pixels" in reason
    finally:
        reopened.close()


# ---------------------------------------------------------------------- 2. decompression bombs
def test_image_search_refuses_bombs_from_the_header(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "search-ui", "search")
    before = rss_mib(server.process.pid)
    for side in (20000, 32000):
        bomb = png_bomb(side, side)
        answer = httpx.post(
            f"{server.url}/v1/search/image",
            files={"image": ("bomb.png", bomb, "image/png")},
            headers=auth(token),
            timeout=30,
        )
        assert answer.status_code == 413 and error_of(answer)["code"] == "image_too_large"
        assert f"{side} x {side}" in error_of(answer)["message"]
    assert rss_mib(server.process.pid) - before < 100  # 2.5 GB and 6.1 GB before the fix
    tiff = b"II*\x00" + bytes(64)
    answer = httpx.post(
        f"{server.url}/v1/search/image", files={"image": ("x.tif", tiff)}, headers=auth(token)
    )
    assert (
        answer.status_code == 415 and "supported formats: jpeg, png, webp, bmp" in error_of(answer)["message"]
    )
    crop = encoded(noise(64, 32))
    many = ",".join(f"c{n}" for n in range(1001))  # the form's camera filter, over its bound: 422, not 500
    answer = httpx.post(
        f"{server.url}/v1/search/image",
        data={"cameras": many},
        files={"image": ("c.png", crop, "image/png")},
        headers=auth(token),
    )
    assert answer.status_code == 422 and error_of(answer)["message"].startswith(
        "cameras: List should have at most"
    )


def test_image_decoding_runs_off_the_event_loop_a_bounded_number_at_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a test double for a slow decode (a large image): the real decoder, held until released,
    # so the test can look at the server while a decode is under way without timing anything
    started, release = threading.Event(), threading.Event()

    def held_decode(data: bytes, limits: Any) -> Any:
        started.set()
        release.wait(30)
        return decode_image(data, limits)

    monkeypatch.setattr(admission_module, "decode_image", held_decode)
    server = thread_server(data_dir, decode_concurrency=1, decode_wait_s=0.2)
    try:
        token, _ = make_key(data_dir, "search-ui", "search")
        crop = encoded(noise(64, 32))
        answers: list[httpx.Response] = []

        def search() -> None:
            answers.append(
                httpx.post(
                    f"{server.url}/v1/search/image",
                    files={"image": ("crop.png", crop)},
                    headers=auth(token),
                    timeout=30,
                )
            )

        first = threading.Thread(target=search)
        first.start()
        assert started.wait(10)
        # while that decode runs, the event loop answers (it would hang were it decoding)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        # and a second decode finds no slot: refused, not queued behind it
        busy = httpx.post(
            f"{server.url}/v1/search/image", files={"image": ("c.png", crop)}, headers=auth(token), timeout=30
        )
        assert busy.status_code == 503 and error_of(busy)["code"] == "overloaded"
        assert "decoder is busy" in error_of(busy)["message"] and busy.headers["Retry-After"] == "1"
        release.set()
        first.join(30)
        assert answers[0].status_code == 200 and answers[0].json() == {"hits": []}
    finally:
        release.set()
        server.stop()


# ---------------------------------------------------------------------------------- 3. the 500
def test_an_image_over_two_to_the_thirty_pixels_is_a_4xx_on_both_apis(data_dir: Path) -> None:
    server = ServerProcess(data_dir, "--grpc-port", "0")
    try:
        token, _ = make_key(data_dir, "ops", "admin")
        bomb = png_bomb(40000, 40000)  # OpenCV raised cv2.error on this: a 500, a gRPC INTERNAL
        search = httpx.post(
            f"{server.url}/v1/search/image", files={"image": ("b.png", bomb)}, headers=auth(token), timeout=30
        )
        assert search.status_code == 413
        frames = ingest_images(server.url, token, "gate", [bomb])
        assert frames.status_code == 413 and "image 0 (frame index 0)" in error_of(frames)["message"]
        port = int(re.findall(r'"grpc_port": (\d+)', server.logs())[0])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.CrossviewStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Search(pb.SearchRequest(image=bomb), metadata=[("authorization", f"Bearer {token}")])
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "40000 x 40000" in (caught.value.details() or "")
    finally:
        server.terminate()
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    statuses = [(line["route"], line["status"]) for line in lines if line.get("event") == "request"]
    assert ("/v1/search/image", 413) in statuses and ("/v1/ingest/frames", 413) in statuses
    assert any(line.get("event") == "rpc" and line["code"] == "INVALID_ARGUMENT" for line in lines)


def test_every_request_is_logged_and_measured_a_crash_and_refusals_included(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = thread_server(data_dir)

    def crash() -> Service:  # a test double for a bug in what the route depends on
        raise ZeroDivisionError("a bug")

    caplog.set_level("INFO", logger="crossview.serve")
    try:
        token, _ = make_key(data_dir, "ops", "admin")
        server.app.dependency_overrides[get_service] = crash
        broken = httpx.post(
            f"{server.url}/v1/search",
            json={"embedding": look(0).tolist()},
            headers={**auth(token), "X-Request-ID": "bug-1"},
        )
        del server.app.dependency_overrides[get_service]
        assert broken.status_code == 500 and error_of(broken)["code"] == "internal_error"
        assert broken.json()["request_id"] == "bug-1" and broken.headers["X-Request-ID"] == "bug-1"
        assert httpx.get(f"{server.url}/v1/tracks").status_code == 401
        too_big = httpx.post(
            f"{server.url}/v1/ingest/detections", content=b"x" * (17 * MiB), headers=auth(token)
        )
        assert too_big.status_code == 413
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
    finally:
        server.stop()
    for route, method, status in (
        ("/v1/search", "POST", "500"),
        ("/v1/tracks", "GET", "401"),
        ("/v1/ingest/detections", "POST", "413"),
    ):
        assert (
            f'crossview_http_request_duration_seconds_count{{method="{method}",route="{route}",'
            f'status="{status}"}} 1.0'
        ) in metrics
    logged = [
        json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith('{"event": "req')
    ]
    assert {(line["route"], line["status"], line["error"]) for line in logged} >= {
        ("/v1/search", 500, "internal_error"),
        ("/v1/tracks", 401, "unauthenticated"),
        ("/v1/ingest/detections", 413, "payload_too_large"),
    }


# ---------------------------------------------------------- 4. credentials before the body
def test_credentials_and_scope_are_checked_before_the_body_is_read(server: ServerProcess) -> None:
    reader, _ = make_key(server.data_dir, "dashboard", "read")
    head = "POST /v1/ingest/detections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # 14 MB declared, nothing sent: the answer comes at once, the body never read
    unauthenticated = raw_request(server.port, head + "Content-Length: 14000000", timeout=10)
    assert unauthenticated.startswith(b"HTTP/1.1 401")
    wrong_scope = raw_request(
        server.port, head + f"Authorization: Bearer {reader}\r\nContent-Length: 14000000", timeout=10
    )
    assert wrong_scope.startswith(b"HTTP/1.1 403")
    # malformed JSON without a credential: 401, not a 422 about the JSON
    malformed = httpx.post(
        f"{server.url}/v1/ingest/detections", content=b"{", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 401


def test_grpc_checks_credentials_before_parsing_the_message(tmp_path: Path) -> None:
    server = thread_server(tmp_path / "data")
    port = free_grpc(server)
    try:
        token, _ = make_key(tmp_path / "data", "camera-box", "ingest")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/crossview.v1.Crossview/IngestDetections")
            with pytest.raises(grpc.RpcError) as anonymous:
                raw(b"\xff\xff\xff not a message", timeout=10)
            assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as admitted:
                raw(
                    b"\xff\xff\xff not a message", metadata=[("authorization", f"Bearer {token}")], timeout=10
                )
            assert admitted.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "does not parse" in (admitted.value.details() or "")
    finally:
        server.stop()


def free_grpc(server: ThreadServer) -> int:
    """Serve gRPC beside a thread server's REST app, over the same service and gate."""
    from crossview.serve.grpc_server import start_grpc_server

    state = server.app.state.crossview
    grpc_server, port = start_grpc_server(state.service, state.gate, metrics=state.metrics)
    server.stoppers.append(lambda: grpc_server.stop(None).wait())
    return port


# ----------------------------------------------------------------- 5. failed authentication
def test_failed_authentications_are_limited_per_address_on_both_apis(data_dir: Path) -> None:
    gate = GateConfig(failure_limit=RateLimit(rate_per_s=0.01, burst=10))
    server = thread_server(data_dir, gate=gate)
    port = free_grpc(server)
    try:
        reader, _ = make_key(data_dir, "dashboard", "read")
        answers = [httpx.get(f"{server.url}/v1/tracks", headers=auth("cvk_guess")) for _ in range(5)]
        answers += [httpx.post(f"{server.url}/v1/search", json={}, headers=auth(reader)) for _ in range(5)]
        assert [a.status_code for a in answers] == [401] * 5 + [403] * 5
        limited = httpx.get(f"{server.url}/v1/tracks")
        assert limited.status_code == 429 and error_of(limited)["code"] == "too_many_failures"
        assert int(limited.headers["Retry-After"]) >= 90  # 1 token at 0.01/s
        # refused before any credential is looked at: a good key from that address waits too
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(reader)).status_code == 429
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.CrossviewStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Search(pb.SearchRequest(track=1), timeout=10)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(caught.value.trailing_metadata() or ())["retry-after"] >= "1"
        metrics = httpx.get(f"{server.url}/healthz")  # health is never limited
        assert metrics.status_code == 200
        counted = server.app.state.crossview.metrics.render().decode()
        assert 'crossview_gate_refusals_total{code="too_many_failures"} 3.0' in counted
    finally:
        server.stop()


# ------------------------------------------------------------------------- 6. cardinality
def test_metric_labels_and_drift_streams_come_from_closed_sets(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "ops", "admin")
    rng = random.Random(0)
    methods = {"".join(rng.choices(string.ascii_uppercase, k=12)) for _ in range(300)}
    for method in methods:
        answer = httpx.request(method, f"{server.url}/v1/tracks", headers=auth(token))
        assert answer.status_code == 405 and answer.headers["X-Request-ID"]
    made_up = httpx.post(
        f"{server.url}/v1/ingest/detections",
        json={"camera_id": "gate", "model": "made-up-1", "frames": object_frames({0: look(0)}, 0, 2)},
        headers=auth(token),
    )
    assert made_up.status_code == 422 and "unknown model 'made-up-1'" in error_of(made_up)["message"]
    metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
    assert 'method="OTHER"' in metrics and not any(f'"{m}"' in metrics for m in methods)
    assert "made-up-1" not in metrics
    assert len(metrics) < 64 * 1024  # 3,000 random methods made 7.3 MB before
    assert httpx.get(f"{server.url}/v1/drift", headers=auth(token)).json() == {"reports": []}


def test_camera_ids_cannot_grow_the_metrics(data_dir: Path) -> None:
    server = thread_server(data_dir, cameras=CameraLimits(max_cameras=5))
    try:
        token, _ = make_key(data_dir, "ops", "admin")
        codes = [
            ingest(server.url, token, f"camera-{n}", object_frames({0: look(0)}, 0, 2)).status_code
            for n in range(40)
        ]
        assert codes == [202] * 5 + [429] * 35
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        assert set(re.findall(r'camera="([^"]+)"', metrics)) == {f"camera-{n}" for n in range(5)}
    finally:
        server.stop()


# ----------------------------------------------------------------- 7. admission before work
def test_a_full_queue_refuses_images_before_decoding_them(data_dir: Path) -> None:
    server = thread_server(data_dir, max_queued_batches=1)
    service = server.app.state.crossview.service
    release = threading.Event()
    service.observers.append(lambda *_: release.wait(60))  # the worker holds the first batch
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest")
        assert ingest_images(server.url, token, "gate", [encoded(noise(48, 64))]).status_code == 202
        wait_until(lambda: service.admission.full, what="the queue to fill")
        # a valid header on pixels that would not decode: refused for the queue (503), which
        # shows nothing was decoded (a decode would have answered 422)
        broken = encoded(noise(48, 64))[:60] + bytes(200)
        refused = ingest_images(server.url, token, "gate", [broken], start=1)
        assert refused.status_code == 503 and error_of(refused)["code"] == "overloaded"
        release.set()
        wait_until(lambda: service.queued == 0, what="the queue to drain")
        bad = ingest_images(server.url, token, "gate", [broken], start=1)
        assert bad.status_code == 422 and error_of(bad)["code"] == "bad_image"
    finally:
        release.set()
        server.stop()


def test_requests_beyond_the_in_flight_cap_are_refused_at_once(data_dir: Path) -> None:
    server = thread_server(data_dir, gate=GateConfig(max_inflight_ingest=2))
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest")
        head = (
            "POST /v1/ingest/detections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
        )
        # two requests whose bodies are still arriving: both in flight
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        for connection in slow:
            connection.sendall(head.encode() + b'{"camera_id"')
        gate = server.app.state.crossview.gate
        wait_until(lambda: gate.inflight("ingest") == 2, what="two requests in flight")
        refused = ingest(server.url, token, "gate", object_frames({0: look(0)}, 0, 2))
        assert refused.status_code == 503 and error_of(refused)["code"] == "overloaded"
        assert refused.headers["Retry-After"] == "1" and "2 ingest requests are in flight" in refused.text
        for connection in slow:
            connection.close()
        wait_until(lambda: gate.inflight("ingest") == 0, what="the slots to free")
        assert ingest(server.url, token, "gate", object_frames({0: look(0)}, 0, 2)).status_code == 202
    finally:
        server.stop()


# ---------------------------------------------------------------------------- 8. file modes
def test_the_data_directory_and_its_files_are_private(data_dir: Path) -> None:
    server = ServerProcess(data_dir)
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest,read")
        assert ingest(server.url, token, "gate", object_frames({0: look(0)}, 0, 30)).status_code == 202
        assert ingest(server.url, token, "gate", [{"frame_index": 99, "timestamp": 9.9}]).status_code == 202
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()["index_entries"] == 1,
            what="the track to be indexed",
        )
    finally:
        assert server.terminate()  # flushes the FAISS snapshot
    seen = 0
    for folder, _, files in os.walk(data_dir):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            mode = stat.S_IMODE(os.stat(Path(folder) / name).st_mode)
            assert mode == 0o600, f"{folder}/{name} has mode {oct(mode)}"
            seen += 1
    assert seen >= 4  # service.sqlite, keys.sqlite, index/meta.sqlite and the FAISS snapshot at least


# ----------------------------------------------------------------------------------- 9. JWT
def test_jwt_lifetime_issuer_and_audience_are_enforced(data_dir: Path) -> None:
    secret = "s" * 48
    env = {
        "CROSSVIEW_JWT_SECRET": secret,
        "CROSSVIEW_JWT_ISSUER": "https://idp.example",
        "CROSSVIEW_JWT_AUDIENCE": "crossview",
    }
    server = ServerProcess(data_dir, env=env)
    try:
        good = JwtVerifier(secret, issuer="https://idp.example", audience="crossview").issue("ops", ["read"])
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(good)).status_code == 200
        claims = {"sub": "ops", "scope": "read", "iss": "https://idp.example", "aud": "crossview"}
        forever = jwt.encode({**claims, "exp": 10**30}, secret, algorithm="HS256")
        no_issuer = jwt.encode(
            {k: v for k, v in claims.items() if k != "iss"} | {"exp": int(time.time()) + 60}, secret
        )
        elsewhere = jwt.encode({**claims, "aud": "other", "exp": int(time.time()) + 60}, secret)
        for token in (forever, no_issuer, elsewhere):
            assert httpx.get(f"{server.url}/v1/tracks", headers=auth(token)).status_code == 401
    finally:
        server.terminate()


# ------------------------------------------------------------------------------- 10. SIGTERM
def test_sigterm_drains_with_503_before_the_listener_closes_and_loses_nothing(data_dir: Path) -> None:
    server = ServerProcess(data_dir, "--drain", "3")
    token, _ = make_key(data_dir, "camera-box", "ingest,read")
    acknowledged: list[int] = []
    seen: list[tuple[float, str]] = []
    stop = threading.Event()
    signalled = threading.Event()

    def camera(number: int) -> None:
        frame = 0
        with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post(
                        "/v1/ingest/detections",
                        json={"camera_id": f"cam-{number}", "frames": object_frames({0: look(0)}, frame, 5)},
                    )
                    outcome = str(answer.status_code)
                    if answer.status_code == 202:
                        acknowledged.append(answer.json()["batch_id"])
                        frame += 5
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                if signalled.is_set():
                    seen.append((time.monotonic(), outcome))
                time.sleep(0.02)

    readiness: list[int] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                readiness.append(httpx.get(f"{server.url}/readyz", timeout=2).status_code)
            except httpx.HTTPError:
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=camera, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 10, what="some acknowledged batches")
    prober = threading.Thread(target=probe)
    prober.start()
    signalled_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    signalled.set()
    server.process.wait(timeout=60)
    stop.set()
    for thread in [*threads, prober]:
        thread.join(30)
    assert '"event": "draining"' in server.logs() and '"event": "stopped"' in server.logs()
    assert 503 in readiness  # readiness turned 503 while the listener was still open
    during = [outcome for at, outcome in seen if at - signalled_at < 2.5]
    assert "503" in during and all(outcome in {"202", "503"} for outcome in during), during
    restarted = ServerProcess(data_dir)
    try:
        stats = httpx.get(f"{restarted.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] + stats["batches_queued"] == len(acknowledged)
        assert stats["batches_failed"] == 0
    finally:
        restarted.terminate()


# ------------------------------------------------------------------------- 11. smaller items
def test_credentials_in_query_strings_never_reach_the_log(server: ServerProcess) -> None:
    secret = "cvk_0123456789ab_" + "S" * 43
    httpx.get(f"{server.url}/v1/tracks?api_key={secret}&token={secret}")
    httpx.get(f"{server.url}/healthz?api_key={secret}")
    assert server.terminate()
    assert "SSSSSSSS" not in server.logs()


def test_slow_headers_are_cut_off(data_dir: Path) -> None:
    server = ServerProcess(data_dir, "--header-timeout", "1")
    try:
        half_sent = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(25)]
        for connection in half_sent:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # still served
        for connection in half_sent:  # each is closed by the server, not held for 20 s
            assert closed_unanswered(connection)
            connection.close()
    finally:
        server.terminate()


def test_connections_per_client_address_are_capped(data_dir: Path) -> None:
    server = ServerProcess(data_dir, "--max-connections-per-client", "30")  # headers: 10 s
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(30)]
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_unanswered(extra)  # the 31st, at once (a timeout here would fail the test)
        for connection in [*idle, extra]:
            connection.close()
        wait_until(lambda: httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200, what="room")
    finally:
        server.terminate()


def closed_unanswered(connection: socket.socket) -> bool:
    """The server closed the connection without a byte of answer (a FIN, or a reset)."""
    try:
        return connection.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_no_redirect_is_built_from_the_host_header(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "dashboard", "read")
    answer = httpx.get(f"{server.url}/v1/tracks/", headers={**auth(token), "Host": "evil.example"})
    assert answer.status_code in {401, 404, 422} and "location" not in answer.headers


def test_request_ids_are_capped_and_sanitised(server: ServerProcess) -> None:
    for given in ("x" * 8192, 'bad"id\\', "with space"):
        answer = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": given})
        echoed = answer.headers["X-Request-ID"]
        assert echoed != given and re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert (
        httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "req-42.a:b"}).headers["X-Request-ID"]
        == "req-42.a:b"
    )


def test_an_idempotent_retry_gets_the_first_acknowledgement(data_dir: Path) -> None:
    server = ServerProcess(data_dir)
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest,read")
        frames = object_frames({0: look(0)}, 0, 5)
        first = ingest(server.url, token, "gate", frames, **{"Idempotency-Key": "batch-0001"})
        assert first.status_code == 202
        # the client never saw that answer and sends again: the same acknowledgement, no duplicate
        retry = ingest(server.url, token, "gate", frames, **{"Idempotency-Key": "batch-0001"})
        assert retry.status_code == 202 and retry.json()["batch_id"] == first.json()["batch_id"]
        assert retry.headers["Idempotent-Replayed"] == "true"
        # without the key, the same batch is (rightly) refused as going back in time
        assert ingest(server.url, token, "gate", frames).status_code == 422
        reused = ingest(
            server.url, token, "gate", object_frames({0: look(0)}, 5, 5), **{"Idempotency-Key": "batch-0001"}
        )
        assert reused.status_code == 422 and error_of(reused)["code"] == "idempotency_key_reused"
    finally:
        server.terminate()
    restarted = ServerProcess(data_dir)  # keys are durable, stored with their batch
    try:
        again = ingest(restarted.url, token, "gate", frames, **{"Idempotency-Key": "batch-0001"})
        assert again.status_code == 202 and again.json()["batch_id"] == first.json()["batch_id"]
        stats = httpx.get(f"{restarted.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] + stats["batches_queued"] == 1
    finally:
        restarted.terminate()
