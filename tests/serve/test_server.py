"""The service over HTTP, against a real ``crossview serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import jwt
import numpy as np
import pytest

from crossview.serve.keys import JwtVerifier

from .conftest import ServerProcess, auth, make_key, object_frames, wait_until

DIM = 480  # the default colour-histogram embedder's size


def looks(count: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.random((count, DIM)) ** 4  # peaked, histogram-like, clearly distinct
    return {i: v / np.linalg.norm(v) for i, v in enumerate(vectors)}


def ingest(url: str, token: str, camera: str, frames: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/ingest/detections",
        json={"camera_id": camera, "model": "test-detector", "frames": frames},
        headers=auth(token),
        timeout=30,
    )


def idle(url: str, token: str) -> None:
    wait_until(
        lambda: httpx.get(f"{url}/v1/stats", headers=auth(token)).json()["batches_queued"] == 0,
        what="the ingest queue to drain",
    )


def test_auth_scopes_revocation_and_request_ids(server: ServerProcess) -> None:
    reader, _ = make_key(server.data_dir, "dashboard", "read")
    searcher, searcher_id = make_key(server.data_dir, "search-ui", "read,search")
    url = server.url
    missing = httpx.get(f"{url}/v1/tracks")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    assert httpx.get(f"{url}/v1/tracks", headers=auth("cvk_nothing")).status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200  # health needs no credential
    listed = httpx.get(f"{url}/v1/tracks", headers={"X-API-Key": reader, "X-Request-ID": "req-42"})
    assert listed.status_code == 200 and listed.json() == {"tracks": [], "next_after_id": None}
    assert listed.headers["X-Request-ID"] == "req-42"
    forbidden = httpx.post(f"{url}/v1/search", json={"track": 1}, headers=auth(reader))
    assert forbidden.status_code == 403 and "'search' scope" in forbidden.json()["error"]["message"]
    assert ingest(url, searcher, "gate", object_frames(looks(1), 0, 2)).status_code == 403
    # revoked with the CLI while the server runs: refused from the next request on
    assert httpx.get(f"{url}/v1/tracks", headers=auth(searcher)).status_code == 200
    revoke = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossview.cli",
            "keys",
            "revoke",
            searcher_id,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert revoke.returncode == 0, revoke.stderr
    assert httpx.get(f"{url}/v1/tracks", headers=auth(searcher)).status_code == 401
    # the request log is JSON, one line per request, with the request id
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "req-42" and line["status"] == 200 for line in lines)


def test_keys_cli_creates_lists_and_never_prints_secrets(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = subprocess.run(
        [sys.executable, "-m", "crossview.cli", "keys", "create", "ops", "--scopes", "admin", *data],
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("cvk_")
    listed = subprocess.run(
        [sys.executable, "-m", "crossview.cli", "keys", "list", "--json", *data],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(listed.stdout)
    assert [(r["name"], r["scopes"], r["active"]) for r in records] == [("ops", ["admin"], True)]
    assert token.split("_")[2] not in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "crossview.cli", "keys", "create", "x", "--scopes", "root", *data],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "unknown scope 'root'" in bad.stderr


def test_rate_limit_answers_429_with_retry_after(data_dir: Path) -> None:
    server = ServerProcess(data_dir, "--rate", "0.01", "--burst", "3")
    try:
        token, _ = make_key(data_dir, "greedy", "read")
        other, _ = make_key(data_dir, "polite", "read")
        codes = [httpx.get(f"{server.url}/v1/tracks", headers=auth(token)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = httpx.get(f"{server.url}/v1/tracks", headers=auth(token))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 60
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(other)).status_code == 200  # per key
    finally:
        server.terminate()


def test_jwt_bearer_tokens(data_dir: Path) -> None:
    secret = "s" * 48
    server = ServerProcess(data_dir, env={"CROSSVIEW_JWT_SECRET": secret})
    try:
        issuer = JwtVerifier(secret)
        good = issuer.issue("svc-a", ["read"])
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(good)).status_code == 200
        forged = JwtVerifier("f" * 48).issue("svc-a", ["admin"])
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(forged)).status_code == 401
        expired = jwt.encode({"sub": "svc-a", "scope": "read", "exp": int(time.time()) - 10}, secret, "HS256")
        assert httpx.get(f"{server.url}/v1/tracks", headers=auth(expired)).status_code == 401
        assert httpx.post(f"{server.url}/v1/search", json={"track": 1}, headers=auth(good)).status_code == 403
    finally:
        server.terminate()


def test_ingest_track_index_and_search(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "all", "admin")
    url = server.url
    objects = looks(3)
    accepted = ingest(url, token, "gate", object_frames(objects, 0, 30))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["frames"] == 30 and accepted.json()["detections"] == 90
    # the camera goes on without them for 6 s: their tracks end and become searchable
    quiet = [{"frame_index": i, "timestamp": i / 10, "detections": []} for i in range(30, 100)]
    assert ingest(url, token, "gate", quiet).status_code == 202
    idle(url, token)
    wait_until(lambda: httpx.get(f"{url}/v1/stats", headers=auth(token)).json()["index_entries"] == 3)
    stats = httpx.get(f"{url}/v1/stats", headers=auth(token)).json()
    assert stats["detections"] == 90 and stats["tracks"] == 3 and stats["batches_done"] == 2
    tracks = httpx.get(f"{url}/v1/tracks", params={"camera_id": "gate"}, headers=auth(token)).json()["tracks"]
    assert len(tracks) == 3 and all(t["indexed"] for t in tracks)
    assert {t["t_end"] for t in tracks} == {2.9}
    detail = httpx.get(f"{url}/v1/tracks/{tracks[1]['id']}", headers=auth(token)).json()
    assert len(detail["boxes"]) == tracks[1]["detections"] >= 28
    # by embedding: each object's own track ranks first
    by_id = {}
    for number, look in objects.items():
        hits = httpx.post(
            f"{url}/v1/search", json={"embedding": look.tolist(), "k": 3}, headers=auth(token)
        ).json()["hits"]
        assert len(hits) == 3 and hits[0]["appearance"] < 1e-4 and hits[1]["appearance"] > 0.1
        by_id[number] = hits[0]["track"]
    assert len(set(by_id.values())) == 3
    # by track: the track itself is excluded; filters apply
    hits = httpx.post(f"{url}/v1/search", json={"track": by_id[0], "k": 5}, headers=auth(token)).json()[
        "hits"
    ]
    assert by_id[0] not in [h["track"] for h in hits] and len(hits) == 2
    none = httpx.post(
        f"{url}/v1/search",
        json={"embedding": objects[0].tolist(), "filter": {"cameras": ["exit"]}},
        headers=auth(token),
    ).json()["hits"]
    assert none == []
    # by image: a decodable crop is embedded by the service
    crop = np.zeros((64, 32, 3), np.uint8)
    crop[:] = (30, 40, 200)
    ok, png = cv2.imencode(".png", crop)
    assert ok
    found = httpx.post(
        f"{url}/v1/search/image",
        files={"image": ("crop.png", png.tobytes(), "image/png")},
        headers=auth(token),
    )
    assert found.status_code == 200 and len(found.json()["hits"]) == 3
    # metrics: per-route latency, queue depth, confidences per camera and model
    metrics = httpx.get(f"{url}/metrics", headers=auth(token)).text
    assert (
        'crossview_http_request_duration_seconds_count{method="POST",route="/v1/search",status="200"}'
        in metrics
    )
    assert 'crossview_detection_confidence_count{camera="gate",model="test-detector"} 90.0' in metrics
    assert "crossview_ingest_queue_depth 0.0" in metrics
    assert 'crossview_breaker_state{backend="index"} 0.0' in metrics


def test_bad_input_is_a_4xx_naming_the_problem(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "all", "admin")
    url = server.url
    garbage = httpx.post(
        f"{url}/v1/search/image",
        files={"image": ("x.jpg", b"not an image", "image/jpeg")},
        headers=auth(token),
    )
    assert garbage.status_code == 415 and garbage.json()["error"]["code"] == "unsupported_image"
    assert "supported formats: jpeg, png, webp, bmp" in garbage.json()["error"]["message"]
    truncated = httpx.post(
        f"{url}/v1/search/image", files={"image": ("x.jpg", b"\xff\xd8\xff\xe0\x00")}, headers=auth(token)
    )
    assert truncated.status_code == 422 and truncated.json()["error"]["code"] == "bad_image"
    malformed = httpx.post(
        f"{url}/v1/ingest/detections",
        content=b"{nope",
        headers={**auth(token), "content-type": "application/json"},
    )
    assert malformed.status_code == 422
    short = httpx.post(f"{url}/v1/search", json={"embedding": [1.0, 0.0]}, headers=auth(token))
    assert short.status_code == 422 and "480 finite numbers" in short.json()["error"]["message"]
    both = httpx.post(f"{url}/v1/search", json={"embedding": [1.0] * DIM, "track": 3}, headers=auth(token))
    assert both.status_code == 422
    assert httpx.post(f"{url}/v1/search", json={"track": 999}, headers=auth(token)).status_code == 404
    backwards = {"embedding": [1.0] * DIM, "filter": {"time_range": [3e-171, 2e-206]}}  # found by the fuzzer
    reversed_range = httpx.post(f"{url}/v1/search", json=backwards, headers=auth(token))
    assert reversed_range.status_code == 422 and "is before its start" in reversed_range.text
    frames = object_frames(looks(1), 0, 3)
    frames[0]["detections"][0]["embedding"] = [1.0, 2.0]  # type: ignore[index]
    wrong = ingest(url, token, "gate", frames)
    assert wrong.status_code == 422 and "embeddings must be 1 x 480" in wrong.json()["error"]["message"]
    assert ingest(url, token, "gate", object_frames(looks(1), 5, 3)).status_code == 202
    late = ingest(url, token, "gate", object_frames(looks(1), 2, 2))
    assert (
        late.status_code == 422 and "must come after the last accepted one" in late.json()["error"]["message"]
    )
    inverted = object_frames(looks(1), 10, 1)
    inverted[0]["detections"][0]["xyxy"] = [50, 50, 10, 10]  # type: ignore[index]
    assert ingest(url, token, "gate", inverted).status_code == 422
    huge = httpx.post(
        f"{url}/v1/ingest/detections",
        content=b"x" * (17 * 1024 * 1024),
        headers={**auth(token), "content-type": "application/json"},
        timeout=60,
    )
    assert huge.status_code == 413
    # nothing above reached the journal but the one good batch
    idle(url, token)
    stats = httpx.get(f"{url}/v1/stats", headers=auth(token)).json()
    assert stats["batches_done"] == 1 and stats["detections"] == 3


def test_kill_9_after_acknowledged_ingest_loses_nothing(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "all", "admin")
    objects = looks(4, seed=1)
    sent = 0
    for batch in range(20):
        response = ingest(server.url, token, "lot", object_frames(objects, batch * 10, 10))
        assert response.status_code == 202
        sent += response.json()["detections"]
    server.kill()  # SIGKILL right after the last acknowledgement: no shutdown code runs
    again = ServerProcess(server.data_dir)
    try:
        idle(again.url, token)
        stats = httpx.get(f"{again.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == 20 and stats["batches_failed"] == 0
        assert stats["detections"] == sent == 800
        # the next batch continues the camera after what was acknowledged before the kill
        assert ingest(again.url, token, "lot", object_frames(objects, 200, 5)).status_code == 202
    finally:
        assert again.terminate()


def test_graceful_shutdown_flushes_what_was_accepted(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "all", "admin")
    for batch in range(10):
        assert ingest(server.url, token, "lot", object_frames(looks(2), batch * 10, 10)).status_code == 202
    assert server.terminate()
    assert '"event": "stopped", "drained": true' in server.logs()
    again = ServerProcess(server.data_dir)
    try:
        stats = httpx.get(f"{again.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == 10 and stats["batches_queued"] == 0
        assert stats["index_entries"] == 2  # the tracks open at shutdown were ended and indexed
    finally:
        again.terminate()


@pytest.mark.parametrize(
    "path",
    ["/v1/tracks", "/v1/global-tracks", "/metrics", "/v1/drift", "/v1/models", "/v1/stats", "/openapi.json"],
)
def test_every_route_but_health_needs_a_credential(server: ServerProcess, path: str) -> None:
    assert httpx.get(f"{server.url}{path}").status_code == 401


def test_frames_ingest_detects_and_tracks_like_the_library_pipeline(
    server: ServerProcess, tmp_path: Path
) -> None:
    from crossview.core.frame import Frame
    from crossview.detect.factory import make_detector
    from crossview.embed.color import ColorHistogramEmbedder
    from crossview.pipeline import Pipeline
    from crossview.sim.video import SceneSpec, render_scene
    from crossview.track.factory import make_tracker

    token, _ = make_key(server.data_dir, "camera-box", "admin")
    video = render_scene(tmp_path / "scene", SceneSpec(num_frames=80, num_people=3), seed=3)
    capture = cv2.VideoCapture(str(video.video))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    assert len(images) == 80
    for start in range(0, 80, 20):
        files = [
            ("images", (f"{i}.png", cv2.imencode(".png", images[i])[1].tobytes(), "image/png"))
            for i in range(start, start + 20)
        ]
        form = {
            "camera_id": "street",
            "timestamps": ",".join(f"{i / 10:.1f}" for i in range(start, start + 20)),
            "frame_indices": ",".join(str(i) for i in range(start, start + 20)),
        }
        accepted = httpx.post(
            f"{server.url}/v1/ingest/frames", data=form, files=files, headers=auth(token), timeout=60
        )
        assert accepted.status_code == 202, accepted.text
    idle(server.url, token)
    served = set()
    for track in httpx.get(f"{server.url}/v1/tracks", headers=auth(token)).json()["tracks"]:
        for box in httpx.get(f"{server.url}/v1/tracks/{track['id']}", headers=auth(token)).json()["boxes"]:
            served.add((box["frame_index"], track["track_id"], tuple(round(v, 2) for v in box["xyxy"])))
    # the same detector, embedder and tracker run by the library on the same pixels
    pipeline = Pipeline(
        make_detector("motion"), lambda: make_tracker("sort", frame_rate=10.0), ColorHistogramEmbedder()
    )
    expected = set()
    for index, image in enumerate(images):
        tracked = pipeline.process([Frame(image, "street", index, index / 10)])[0]
        for row in np.flatnonzero(tracked.tracker_id >= 0).tolist():
            expected.add(
                (index, int(tracked.tracker_id[row]), tuple(round(float(v), 2) for v in tracked.xyxy[row]))
            )
    assert len(expected) > 100 and served == expected
    # undecodable uploads and mismatched counts are refused, naming the problem
    bad = httpx.post(
        f"{server.url}/v1/ingest/frames",
        data={"camera_id": "street", "timestamps": "9.0"},
        files=[("images", ("x.jpg", b"garbage", "image/jpeg"))],
        headers=auth(token),
    )
    assert bad.status_code == 415 and "image 0 (frame index 0)" in bad.json()["error"]["message"]
    cut = cv2.imencode(".jpg", images[0])[1].tobytes()[:400]  # a valid header, then nothing
    broken = httpx.post(
        f"{server.url}/v1/ingest/frames",
        data={"camera_id": "street", "timestamps": "9.0"},
        files=[("images", ("x.jpg", cut, "image/jpeg"))],
        headers=auth(token),
    )
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "bad_image"
    short = httpx.post(
        f"{server.url}/v1/ingest/frames",
        data={"camera_id": "street", "timestamps": "9.0,9.1"},
        files=[("images", ("a.png", cv2.imencode(".png", images[0])[1].tobytes(), "image/png"))],
        headers=auth(token),
    )
    assert (
        short.status_code == 422
        and "1 images need as many timestamps (2)" in short.json()["error"]["message"]
    )


def test_serve_also_speaks_grpc_on_request(data_dir: Path) -> None:
    import grpc

    from crossview.serve.grpc_gen import crossview_pb2 as pb
    from crossview.serve.grpc_gen import crossview_pb2_grpc as pb_grpc

    from .conftest import free_port

    port = free_port()
    server = ServerProcess(data_dir, "--grpc-port", str(port))
    try:
        token, _ = make_key(data_dir, "both", "admin")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.CrossviewStub(channel)
            assert stub.Health(pb.HealthRequest(), timeout=10).ready
            frames = [
                pb.Frame(
                    frame_index=i,
                    timestamp=i / 10,
                    detections=[pb.Detection(xyxy=[10 + i, 10, 50 + i, 110], confidence=0.9)],
                )
                for i in range(5)
            ]
            reply = stub.IngestDetections(
                pb.IngestRequest(camera_id="gate", frames=frames),
                metadata=[("authorization", f"Bearer {token}")],
            )
            assert reply.batch_id == 1 and reply.detections == 5
        # the same service behind both APIs: the batch is visible over REST
        idle(server.url, token)
        stats = httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == 1 and stats["detections"] == 5
    finally:
        assert server.terminate()


GATE_AND_YARD = """\
name: two-gates
cameras:
  - id: gate
    source: push
  - id: yard
    source: push
topology:
  transitions: {"gate->yard": [1, 10]}
"""


def test_global_tracks_follow_an_object_across_cameras(data_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GATE_AND_YARD)
    server = ServerProcess(data_dir, "--site", str(site))
    try:
        token, _ = make_key(data_dir, "all", "admin")
        people = looks(2, seed=5)
        # both walk past the gate; only person 0 goes on to the yard, 3 s after leaving the gate
        assert ingest(server.url, token, "gate", object_frames(people, 0, 30)).status_code == 202
        later = [dict(f, timestamp=f["timestamp"] + 3.0) for f in object_frames({0: people[0]}, 30, 30)]
        assert ingest(server.url, token, "yard", later).status_code == 202
        for camera, first in (("gate", 30), ("yard", 60)):  # both cameras go on, empty: the tracks end
            quiet = [
                {"frame_index": i, "timestamp": i / 10 + 3.0 * (camera == "yard"), "detections": []}
                for i in range(first, first + 70)
            ]
            assert ingest(server.url, token, camera, quiet).status_code == 202
        idle(server.url, token)
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()["index_entries"] == 3
        )
        found = httpx.get(f"{server.url}/v1/global-tracks", headers=auth(token)).json()["global_tracks"]
        spans = sorted((g["cameras"], len(g["tracks"])) for g in found)
        assert spans == [(["gate"], 1), (["gate", "yard"], 2)]
        walker = next(g for g in found if len(g["tracks"]) == 2)
        assert walker["t_start"] == 0.0 and walker["t_end"] == pytest.approx(8.9)
        in_yard = httpx.get(
            f"{server.url}/v1/global-tracks", params={"camera_id": "yard"}, headers=auth(token)
        )
        assert [g["global_id"] for g in in_yard.json()["global_tracks"]] == [walker["global_id"]]
        one = httpx.get(f"{server.url}/v1/global-tracks/{walker['global_id']}", headers=auth(token)).json()
        assert [t["camera_id"] for t in one["tracks"]] == ["gate", "yard"]
        assert httpx.get(f"{server.url}/v1/global-tracks/999", headers=auth(token)).status_code == 404
        hits = httpx.post(
            f"{server.url}/v1/search", json={"embedding": people[0].tolist(), "k": 2}, headers=auth(token)
        ).json()["hits"]
        assert {h["global_id"] for h in hits} == {walker["global_id"]}
    finally:
        assert server.terminate()
    for mistake, message in (
        (("    source: push", "    source: {images: x}"), "camera 'gate': source.fps: Field required"),
        (("[1, 10]", "[10, 1]"), "transition ('gate', 'yard'): min_seconds 10.0 exceeds max_seconds 1.0"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(GATE_AND_YARD.replace(*mistake))
        refused = subprocess.run(
            [sys.executable, "-m", "crossview.cli", "serve", "--data-dir", str(data_dir), "--site", str(bad)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr


def test_a_streamed_body_over_the_limit_is_refused_while_it_arrives(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "all", "admin")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked, 1 MiB at a time
        yield b'{"camera_id": "gate", "frames": ['
        for _ in range(20):
            yield b" " * (1024 * 1024)

    response = httpx.post(
        f"{server.url}/v1/ingest/detections",
        content=chunks(),
        headers={**auth(token), "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413 and "over 16777216 bytes" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_global_identities_survive_a_restart(data_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GATE_AND_YARD)
    person = looks(2, seed=5)[0]
    quiet = [{"frame_index": i, "timestamp": i / 10, "detections": []} for i in range(30, 40)]
    server = ServerProcess(data_dir, "--site", str(site))
    token, _ = make_key(data_dir, "all", "admin")
    try:
        assert ingest(server.url, token, "gate", object_frames({0: person}, 0, 30)).status_code == 202
        assert ingest(server.url, token, "gate", quiet).status_code == 202
        idle(server.url, token)
    finally:
        assert server.terminate()  # the gate track is ended and given its identity on the way down
    again = ServerProcess(data_dir, "--site", str(site))
    try:
        later = [dict(f, timestamp=f["timestamp"] + 3.0) for f in object_frames({0: person}, 30, 30)]
        assert ingest(again.url, token, "yard", later).status_code == 202
        assert again.terminate()
    finally:
        if again.process.poll() is None:
            again.terminate()
    third = ServerProcess(data_dir, "--site", str(site))
    try:
        found = httpx.get(f"{third.url}/v1/global-tracks", headers=auth(token)).json()["global_tracks"]
        assert [(g["cameras"], len(g["tracks"])) for g in found] == [(["gate", "yard"], 2)]
    finally:
        assert third.terminate()
