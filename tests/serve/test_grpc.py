"""The gRPC API against a real server on 127.0.0.1 around a real ``Service``, through a real channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from crossview.embed.color import ColorHistogramEmbedder
from crossview.serve.breaker import BreakerConfig
from crossview.serve.gate import Gate, GateConfig
from crossview.serve.grpc_gen import crossview_pb2 as pb
from crossview.serve.grpc_gen import crossview_pb2_grpc as pb_grpc
from crossview.serve.grpc_server import start_grpc_server
from crossview.serve.keys import JwtVerifier, KeyStore
from crossview.serve.limits import RateLimit
from crossview.serve.service import Service, ServiceConfig

from .conftest import wait_until

DIM = 480  # the default colour-histogram embedder's size
JWT_SECRET = "j" * 48
TIMEOUT = 30.0  # per call: a deadline, not an assertion
PROTO = Path(__file__).resolve().parents[2] / "proto"


@dataclass
class Grpc:
    """A running server: the service behind it, its key store and a client stub."""

    service: Service
    keys: KeyStore
    gate: Gate
    stub: pb_grpc.CrossviewStub
    port: int

    def token(self, name: str, scopes: str) -> str:
        token, _ = self.keys.create(name, scopes)
        return token


@contextmanager
def serving(
    data_dir: Path,
    *,
    rate: RateLimit | None = None,
    start: bool = True,
    max_message_bytes: int = 16 * 1024 * 1024,
    gate_config: dict[str, Any] | None = None,
    **config: Any,
) -> Iterator[Grpc]:
    config.setdefault("models", ("test-detector",))
    service = Service(ServiceConfig(data_dir=data_dir, **config), ColorHistogramEmbedder())
    keys = KeyStore(data_dir / "keys.sqlite")
    if start:
        service.start()
    gate = Gate(
        GateConfig(rate_limit=rate or RateLimit(rate_per_s=1000.0, burst=1000), **(gate_config or {})),
        keys,
        JwtVerifier(JWT_SECRET),
    )
    server, port = start_grpc_server(service, gate, max_message_bytes=max_message_bytes)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Grpc(service, keys, gate, pb_grpc.CrossviewStub(channel), port)
    finally:
        channel.close()
        server.stop(grace=None).wait()
        service.stop()
        keys.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Grpc]:
    with serving(tmp_path / "data") as running:
        yield running


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def looks(count: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.random((count, DIM)) ** 4  # peaked, histogram-like, clearly distinct
    return {i: v / np.linalg.norm(v) for i, v in enumerate(vectors)}


def object_frames(looks: dict[int, np.ndarray], start: int, count: int, fps: float = 10.0) -> list[pb.Frame]:
    """Frames with one box per object, moving right 4 px per frame, lanes 150 px apart."""
    frames = []
    for index in range(start, start + count):
        detections = []
        for lane, (_, look) in enumerate(sorted(looks.items())):
            x, y = 20.0 + 4.0 * index, 40.0 + 150.0 * lane
            detections.append(
                pb.Detection(
                    xyxy=[x, y, x + 40.0, y + 100.0], confidence=0.9, class_id=0, embedding=look.tolist()
                )
            )
        frames.append(pb.Frame(frame_index=index, timestamp=index / fps, detections=detections))
    return frames


def quiet_frames(start: int, stop: int, fps: float = 10.0) -> list[pb.Frame]:
    return [pb.Frame(frame_index=i, timestamp=i / fps) for i in range(start, stop)]


def ingest(api: Grpc, token: str, camera: str, frames: list[pb.Frame]) -> pb.IngestReply:
    request = pb.IngestRequest(camera_id=camera, model="test-detector", frames=frames)
    reply: pb.IngestReply = api.stub.IngestDetections(request, metadata=auth(token), timeout=TIMEOUT)
    return reply


def search(api: Grpc, token: str, **fields: Any) -> pb.SearchReply:
    reply: pb.SearchReply = api.stub.Search(pb.SearchRequest(**fields), metadata=auth(token), timeout=TIMEOUT)
    return reply


def refused(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error a call ends with (it must fail)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=TIMEOUT, **kwargs)
    return caught.value


def retry_after(error: grpc.RpcError) -> int:
    values = [value for key, value in error.trailing_metadata() or () if key == "retry-after"]
    assert len(values) == 1, error.trailing_metadata()
    return int(values[0])


def png(color: tuple[int, int, int]) -> bytes:
    crop = np.zeros((64, 32, 3), np.uint8)
    crop[:] = color
    ok, encoded = cv2.imencode(".png", crop)
    assert ok
    return encoded.tobytes()


# --------------------------------------------------------------------------------------------- tests
def test_health_needs_no_credential(api: Grpc) -> None:
    reply = api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT)
    assert reply.status == "ok" and reply.ready and reply.index_breaker == "closed"
    assert reply.queued_batches == 0


def test_ingest_is_accepted_with_a_batch_id(api: Grpc) -> None:
    token = api.token("camera", "ingest")
    reply = ingest(api, token, "gate", object_frames(looks(2), 0, 3))
    assert reply.batch_id >= 1 and reply.frames == 3 and reply.detections == 6 and reply.queued >= 0
    # X-API-Key works as well, and frames without detections are fine
    request = pb.IngestRequest(camera_id="gate", frames=quiet_frames(3, 5))
    again = api.stub.IngestDetections(request, metadata=(("x-api-key", token),), timeout=TIMEOUT)
    assert again.batch_id > reply.batch_id and again.detections == 0
    wait_until(lambda: api.service.store.counts()["batches_done"] == 2, what="both batches processed")
    assert api.service.store.counts()["detections"] == 6


def test_credentials_and_scopes(api: Grpc) -> None:
    reader = api.token("dashboard", "read")
    searcher = api.token("search-ui", "search")
    frames = object_frames(looks(1), 0, 2)
    request = pb.IngestRequest(camera_id="gate", frames=frames)
    missing = refused(api.stub.IngestDetections, request)
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED and "Bearer" in (missing.details() or "")
    for bad in ("cvk_nothing", "Bearer", "a.b.c"):
        error = refused(api.stub.Search, pb.SearchRequest(track=1), metadata=auth(bad))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    forbidden = refused(api.stub.IngestDetections, request, metadata=auth(reader))
    assert forbidden.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'ingest' scope" in (forbidden.details() or "")
    assert refused(api.stub.IngestDetections, request, metadata=auth(searcher)).code() is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    no_search = refused(api.stub.Search, pb.SearchRequest(track=1), metadata=auth(reader))
    assert no_search.code() is grpc.StatusCode.PERMISSION_DENIED and "'search'" in (no_search.details() or "")
    # the search scope gets past authorization: an unknown track is then NOT_FOUND
    unknown = refused(api.stub.Search, pb.SearchRequest(track=999), metadata=auth(searcher))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND and "999" in (unknown.details() or "")
    # JWTs: admin implies ingest; a forged one is refused
    admin = JwtVerifier(JWT_SECRET).issue("ops", ["admin"])
    assert ingest(api, admin, "gate", frames).frames == 2
    forged = JwtVerifier("f" * 48).issue("ops", ["admin"])
    assert refused(api.stub.Search, pb.SearchRequest(track=1), metadata=auth(forged)).code() is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # a revoked key is refused from the next call on
    token, record = api.keys.create("temp", "search")
    assert search(api, token, embedding=pb.Embedding(values=looks(1)[0])).hits == []
    api.keys.revoke(record.key_id)
    assert refused(api.stub.Search, pb.SearchRequest(track=1), metadata=auth(token)).code() is (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_bad_input_is_invalid_argument_naming_the_problem(api: Grpc) -> None:
    token = api.token("all", "admin")
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    def ingest_error(frames: list[pb.Frame], camera: str = "gate") -> str:
        request = pb.IngestRequest(camera_id=camera, frames=frames)
        error = refused(api.stub.IngestDetections, request, metadata=auth(token))
        assert error.code() is invalid, error.details()
        return error.details() or ""

    wrong_size = object_frames(looks(1), 0, 3)
    wrong_size[0].detections[0].embedding[:] = [1.0, 2.0]
    assert "embeddings must be 1 x 480" in ingest_error(wrong_size)
    backwards = object_frames(looks(1), 0, 3)[::-1]
    assert "strictly increasing" in ingest_error(backwards)
    short_box = object_frames(looks(1), 0, 1)
    del short_box[0].detections[0].xyxy[3]
    assert "xyxy needs 4 numbers" in ingest_error(short_box)
    inverted = object_frames(looks(1), 0, 1)
    inverted[0].detections[0].xyxy[:] = [50, 50, 10, 10]
    assert "x2 >= x1" in ingest_error(inverted)
    mixed = object_frames(looks(2), 0, 1)
    del mixed[0].detections[1].embedding[:]
    assert "either every detection has an embedding or none has" in ingest_error(mixed)
    negative = object_frames(looks(1), 0, 1)
    negative[0].detections[0].class_id = -1
    assert "class_id" in ingest_error(negative)
    assert "at least one frame" in ingest_error([])
    assert "camera_id" in ingest_error(object_frames(looks(1), 0, 1), camera="")
    # frames before the camera's last accepted one
    assert ingest(api, token, "gate", object_frames(looks(1), 5, 3)).frames == 3
    assert "must come after the last accepted one" in ingest_error(object_frames(looks(1), 2, 2))

    def search_error(**fields: Any) -> str:
        error = refused(api.stub.Search, pb.SearchRequest(**fields), metadata=auth(token))
        assert error.code() is invalid, error.details()
        return error.details() or ""

    assert "480 finite numbers" in search_error(embedding=pb.Embedding(values=[1.0, 0.0]))
    assert "480 finite numbers" in search_error(embedding=pb.Embedding(values=[0.0] * DIM))
    assert "exactly one query" in search_error(k=3)
    assert "k must be" in search_error(track=1, k=1001)
    assert "rerank" in search_error(track=1, rerank="magic")
    assert "track must be" in search_error(track=0)
    reversed_range = pb.Filter(time_range=pb.TimeRange(start=5.0, end=1.0))
    assert "before its start" in search_error(
        embedding=pb.Embedding(values=looks(1)[0]), filter=reversed_range
    )
    assert "unsupported image format" in search_error(image=b"not an image")
    assert "image is empty" in search_error(image=b"")
    # nothing refused reached the journal
    wait_until(lambda: api.service.store.counts()["batches_queued"] == 0, what="the queue to drain")
    counts = api.service.store.counts()
    assert counts["batches_done"] == 1 and counts["detections"] == 3


def test_rate_limit_is_resource_exhausted_with_retry_after(tmp_path: Path) -> None:
    with serving(tmp_path / "data", rate=RateLimit(rate_per_s=0.001, burst=2)) as api:
        greedy = api.token("greedy", "search")
        polite = api.token("polite", "search")
        query = {"embedding": pb.Embedding(values=looks(1)[0])}
        assert search(api, greedy, **query).hits == []
        assert search(api, greedy, **query).hits == []
        error = refused(api.stub.Search, pb.SearchRequest(**query), metadata=auth(greedy))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in (error.details() or "")
        assert retry_after(error) >= 1
        assert search(api, polite, **query).hits == []  # buckets are per key
        assert api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).status == "ok"  # health is not limited


def test_search_finds_ended_tracks_by_embedding_track_and_image(api: Grpc) -> None:
    token = api.token("all", "admin")
    objects = looks(3)
    accepted = ingest(api, token, "gate", object_frames(objects, 0, 30))
    assert accepted.frames == 30 and accepted.detections == 90
    # the camera goes on without them for 7 s (> track_idle_s): their tracks end, become searchable
    ingest(api, token, "gate", quiet_frames(30, 100))
    wait_until(lambda: api.service.store.counts()["batches_queued"] == 0, what="the queue to drain")
    wait_until(lambda: api.service.index.count() == 3, what="the three tracks to be indexed")
    by_object = {}
    for number, look in objects.items():
        hits = search(api, token, embedding=pb.Embedding(values=look), k=3).hits
        assert len(hits) == 3 and [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].appearance < 1e-4 and hits[1].appearance > 0.1
        assert hits[0].camera_id == "gate" and hits[0].t_end == pytest.approx(2.9)
        by_object[number] = hits[0].track
        # three people seen at once in one camera: three identities
        assert hits[0].global_id >= 0 and len({h.global_id for h in hits}) == 3
    assert len(set(by_object.values())) == 3
    # by track: the track itself is excluded
    hits = search(api, token, track=by_object[0], k=5).hits
    assert by_object[0] not in [h.track for h in hits] and len(hits) == 2
    # filters: another camera finds nothing; an overlapping time range and the class find all
    elsewhere = pb.Filter(cameras=["exit"])
    assert search(api, token, embedding=pb.Embedding(values=objects[0]), filter=elsewhere).hits == []
    during = pb.Filter(cameras=["gate"], classes=[0], time_range=pb.TimeRange(start=1.0, end=2.0))
    assert len(search(api, token, embedding=pb.Embedding(values=objects[0]), filter=during).hits) == 3
    later = pb.Filter(time_range=pb.TimeRange(start=50.0, end=60.0))
    assert search(api, token, embedding=pb.Embedding(values=objects[0]), filter=later).hits == []
    assert len(search(api, token, track=by_object[1], rerank="kreciprocal").hits) == 2
    # by image: a decodable crop is embedded by the service; garbage is INVALID_ARGUMENT
    assert len(search(api, token, image=png((30, 40, 200)), k=10).hits) == 3
    garbage = refused(api.stub.Search, pb.SearchRequest(image=b"\x89PNG garbage"), metadata=auth(token))
    assert garbage.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "the query image:" in (garbage.details() or "")


def test_track_not_ended_yet_is_failed_precondition(api: Grpc) -> None:
    token = api.token("all", "admin")
    ingest(api, token, "lane", object_frames(looks(1), 0, 10))
    wait_until(lambda: api.service.store.counts()["tracks"] == 1, what="the track to be stored")
    (track,) = api.service.tracks(camera_id="lane")
    error = refused(api.stub.Search, pb.SearchRequest(track=track.id), metadata=auth(token))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "not searchable yet" in (error.details() or "")


def test_full_queue_and_stopped_service_are_unavailable_with_retry_after(tmp_path: Path) -> None:
    with serving(tmp_path / "full", max_queued_batches=1) as api:
        token = api.token("camera", "ingest")
        release = threading.Event()
        api.service.observers.append(lambda *_: release.wait(TIMEOUT))  # holds the worker
        try:
            ingest(api, token, "gate", object_frames(looks(1), 0, 2))  # the worker holds it
            request = pb.IngestRequest(camera_id="gate", frames=object_frames(looks(1), 2, 2))
            error = refused(api.stub.IngestDetections, request, metadata=auth(token))
            assert error.code() is grpc.StatusCode.UNAVAILABLE and "queue is full" in (error.details() or "")
            assert retry_after(error) >= 1
        finally:
            release.set()
    with serving(tmp_path / "stopped", start=False) as api:
        token = api.token("camera", "ingest")
        request = pb.IngestRequest(camera_id="gate", frames=object_frames(looks(1), 0, 2))
        error = refused(api.stub.IngestDetections, request, metadata=auth(token))
        assert error.code() is grpc.StatusCode.UNAVAILABLE and "not accepting ingest" in (
            error.details() or ""
        )
        assert retry_after(error) == 1
        assert not api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).ready


def test_open_index_breaker_is_unavailable_with_retry_after(tmp_path: Path) -> None:
    breaker = BreakerConfig(failure_threshold=1, recovery_s=3600.0)
    with serving(tmp_path / "data", index_breaker=breaker) as api:
        token = api.token("ui", "search")

        def failing() -> None:
            raise RuntimeError("index unreachable")

        with pytest.raises(RuntimeError):
            api.service.index_breaker.call(failing)
        request = pb.SearchRequest(embedding=pb.Embedding(values=looks(1)[0]))
        error = refused(api.stub.Search, request, metadata=auth(token))
        assert error.code() is grpc.StatusCode.UNAVAILABLE and "circuit open" in (error.details() or "")
        assert retry_after(error) >= 1
        assert api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).index_breaker == "open"


def test_messages_over_the_limit_are_refused(tmp_path: Path) -> None:
    with serving(tmp_path / "data", max_message_bytes=64 * 1024) as api:
        token = api.token("camera", "ingest")
        error = refused(
            api.stub.IngestDetections,
            pb.IngestRequest(camera_id="gate", frames=object_frames(looks(4), 0, 20)),
            metadata=auth(token),
        )
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ingest(api, token, "gate", object_frames(looks(1), 0, 2)).frames == 2


def test_a_port_in_use_is_an_error(api: Grpc) -> None:
    with pytest.raises(RuntimeError, match="cannot bind"):
        start_grpc_server(api.service, api.gate, port=api.port)
    assert api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).status == "ok"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2

    out = tmp_path / "crossview.pb"
    status = protoc.main(
        ["protoc", f"-I{PROTO}", f"--descriptor_set_out={out}", "crossview/v1/crossview.proto"]
    )
    assert status == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    messages = list(compiled.message_type)
    while messages:  # protoc fills in JSON names, the generated code leaves them out
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    generated = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert compiled == generated, "the generated code is stale: run scripts/gen_grpc.sh"


def test_draining_refuses_new_calls_and_health_says_not_ready(api: Grpc) -> None:
    token = api.token("ui", "search")
    query = pb.SearchRequest(embedding=pb.Embedding(values=looks(1)[0]))
    assert search(api, token, embedding=query.embedding).hits == []
    assert api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).ready
    api.gate.drain()  # what SIGTERM does
    error = refused(api.stub.Search, query, metadata=auth(token))
    assert error.code() is grpc.StatusCode.UNAVAILABLE and "shutting down" in (error.details() or "")
    assert retry_after(error) == 1
    health = api.stub.Health(pb.HealthRequest(), timeout=TIMEOUT)
    assert health.status == "ok" and not health.ready
