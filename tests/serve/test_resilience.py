"""Overload, a failing backend, and a schema-driven fuzz run, against servers on 127.0.0.1."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from crossview.core.detections import Detections
from crossview.embed.color import ColorHistogramEmbedder
from crossview.search.faiss_index import FaissIndex
from crossview.serve.app import ServeConfig, create_app
from crossview.serve.breaker import BreakerConfig
from crossview.serve.gate import GateConfig
from crossview.serve.limits import RateLimit
from crossview.serve.service import ServiceConfig

from .conftest import ServerProcess, ThreadServer, auth, make_key, object_frames, wait_until

DIM = 480


def look(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).random(DIM) ** 4
    return vector / np.linalg.norm(vector)


def ingest(url: str, token: str, frames: list[dict[str, Any]], camera: str = "gate") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/ingest/detections",
        json={"camera_id": camera, "frames": frames},
        headers=auth(token),
        timeout=30,
    )


def thread_app(data_dir: Path, **service: Any) -> ThreadServer:
    config = ServeConfig(
        service=ServiceConfig(data_dir=data_dir, **service),
        gate=GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
    )
    return ThreadServer(create_app(config))


def test_a_full_queue_refuses_with_503_and_keeps_what_it_accepted(data_dir: Path) -> None:
    server = thread_app(data_dir, max_queued_batches=3)
    service = server.app.state.crossview.service
    release = threading.Event()

    def stall(
        camera: str, model: str, tracked: Detections
    ) -> None:  # the worker waits here: nothing is processed
        release.wait(timeout=60)

    service.observers.append(stall)
    try:
        token, _ = make_key(data_dir, "camera-box", "ingest,read")
        codes, retry = [], []
        for batch in range(6):
            response = ingest(server.url, token, object_frames({0: look(0)}, batch * 5, 5))
            codes.append(response.status_code)
            retry.append(response.headers.get("Retry-After"))
        # three batches are accepted (the worker holds the first); the rest are refused, not stored
        assert codes == [202, 202, 202, 503, 503, 503]
        assert all(int(value) >= 1 for value in retry[3:])
        body = ingest(server.url, token, object_frames({0: look(0)}, 30, 5)).json()
        assert body["error"]["code"] == "overloaded" and "ingest queue is full" in body["error"]["message"]
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        # refused before their bodies were read
        assert 'crossview_ingest_refused_requests_total{reason="queue_full"} 4.0' in metrics
        assert "crossview_ingest_queue_depth 3.0" in metrics
        release.set()
        wait_until(lambda: service.queued == 0, what="the queue to drain")
        stats = httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == 3 and stats["detections"] == 15
        # the refused frames can be sent again
        assert ingest(server.url, token, object_frames({0: look(0)}, 15, 5)).status_code == 202
    finally:
        release.set()
        server.stop()


class FlakyIndex(FaissIndex):
    """The real FAISS index, made to fail on demand.

    A test double for the fault only: a real index failure (a full or lost disk under its
    SQLite) cannot be caused on this machine without root-proof tricks, so ``broken`` makes its
    calls raise what a failing FAISS or SQLite raises.
    """

    broken = False

    def _fault(self) -> None:
        if self.broken:
            raise RuntimeError("simulated index failure: disk I/O error")

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().search(*args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self._fault()
        super().add(*args, **kwargs)


@pytest.fixture
def flaky(data_dir: Path) -> Iterator[tuple[ThreadServer, FlakyIndex]]:
    config = ServeConfig(
        service=ServiceConfig(
            data_dir=data_dir,
            index_breaker=BreakerConfig(failure_threshold=3, recovery_s=0.5),
            track_idle_s=1.0,
        ),
        gate=GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
    )
    index = FlakyIndex(data_dir / "index", DIM, factory="Flat")
    app = create_app(config)
    service = app.state.crossview.service
    service.index.close()
    service.index = service.engine.index = index
    server = ThreadServer(app)
    yield server, index
    server.stop()


def test_a_failing_index_opens_its_breaker_and_recovers(flaky: tuple[ThreadServer, FlakyIndex]) -> None:
    server, index = flaky
    token, _ = make_key(server.app.state.crossview.service.config.data_dir, "ui", "admin")
    query = {"embedding": look(0).tolist(), "k": 1}
    assert httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token)).status_code == 200
    index.broken = True
    # each failure is a 503 naming the backend; after the threshold the breaker answers alone
    answers = [httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token)) for _ in range(5)]
    assert [a.status_code for a in answers] == [503] * 5
    assert [a.json()["error"]["code"] for a in answers] == ["backend_error"] * 3 + ["backend_unavailable"] * 2
    assert "disk I/O error" in answers[0].json()["error"]["message"]
    refused = httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token))
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "circuit open" in refused.json()["error"]["message"]
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["index_breaker"] == "open"
    metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
    assert 'crossview_breaker_state{backend="index"} 2.0' in metrics
    # ingest goes on while the index is down: tracks wait to be indexed, nothing is lost
    assert ingest(server.url, token, object_frames({0: look(0)}, 0, 20)).status_code == 202
    quiet = [{"frame_index": i, "timestamp": i / 10, "detections": []} for i in range(20, 40)]
    assert ingest(server.url, token, quiet).status_code == 202
    index.broken = False  # healed: after recovery_s a trial call closes the breaker
    wait_until(
        lambda: httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token)).status_code == 200,
        what="the breaker to close",
    )
    assert httpx.get(f"{server.url}/readyz").json()["index_breaker"] == "closed"
    wait_until(lambda: index.count() == 1, what="the waiting track to be indexed")
    hits = httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token)).json()["hits"]
    assert hits[0]["appearance"] < 1e-4


def test_schema_driven_fuzzing_finds_no_server_error(server: ServerProcess) -> None:
    token, _ = make_key(server.data_dir, "fuzz", "admin")
    assert ingest(server.url, token, object_frames({0: look(0), 1: look(1)}, 0, 10)).status_code == 202
    headers = auth(token)
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401  # the schema needs a credential too
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("CROSSVIEW_FUZZ_EXAMPLES", "40")),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        exercise()
    assert failures == []
    # the server survived it all
    assert httpx.get(f"{server.url}/healthz").status_code == 200


class FlakyEmbedder(ColorHistogramEmbedder):
    """The real colour embedder, made to fail on demand (a test double for a crashing model runtime)."""

    broken = False

    def embed(self, frames: Any, detections: Any) -> Any:
        if self.broken:
            raise RuntimeError("simulated model runtime failure: CUDA error")
        return super().embed(frames, detections)


def test_failing_models_hold_image_batches_until_they_heal(data_dir: Path) -> None:
    config = ServeConfig(
        service=ServiceConfig(
            data_dir=data_dir,
            model_breaker=BreakerConfig(failure_threshold=2, recovery_s=0.3),
            model_attempts=1000,
        ),
        gate=GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
    )
    embedder = FlakyEmbedder()
    embedder.broken = True
    server = ThreadServer(create_app(config, embedder))
    service = server.app.state.crossview.service
    try:
        token, _ = make_key(data_dir, "box", "admin")
        frame = np.full((120, 160, 3), 90, np.uint8)
        png = cv2.imencode(".png", frame)[1].tobytes()
        for start in range(0, 6, 2):
            response = httpx.post(
                f"{server.url}/v1/ingest/frames",
                data={"camera_id": "dock", "timestamps": f"{start / 10},{(start + 1) / 10}"},
                files=[("images", ("a.png", png, "image/png")), ("images", ("b.png", png, "image/png"))],
                headers=auth(token),
            )
            assert response.status_code == 202
        wait_until(
            lambda: httpx.get(f"{server.url}/readyz").json()["embedder_breaker"] != "closed", what="breaker"
        )
        stats = httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_queued"] == 3 and stats["batches_failed"] == 0  # held, in order, not dropped
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        assert 'crossview_breaker_state{backend="embedder"}' in metrics
        embedder.broken = False
        wait_until(lambda: service.queued == 0, what="the held batches to be processed")
        stats = httpx.get(f"{server.url}/v1/stats", headers=auth(token)).json()
        assert stats["batches_done"] == 3 and stats["batches_failed"] == 0
        assert httpx.get(f"{server.url}/readyz").json()["embedder_breaker"] == "closed"
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        counts = {
            stage: float(
                re.search(rf'crossview_stage_duration_seconds_count{{stage="{stage}"}} (\S+)', metrics)[1]
            )
            for stage in ("detect", "embed", "track", "store")
        }
        # detection ran on every try; embedding, tracking and storing once per batch once healed
        assert counts["detect"] > 3 and counts["embed"] == counts["track"] == counts["store"] == 3
    finally:
        server.stop()


def test_drift_of_confidences_shows_on_the_endpoint_and_in_metrics(data_dir: Path) -> None:
    from crossview.serve.drift import DriftConfig

    config = ServeConfig(
        service=ServiceConfig(data_dir=data_dir, models=("yolox-nano",)),
        gate=GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
        drift=DriftConfig(reference_size=300, window_size=200, min_samples=100),
    )
    server = ThreadServer(create_app(config))
    rng = np.random.default_rng(0)
    try:
        token, _ = make_key(data_dir, "ops", "admin")

        def send(start: int, confidences: np.ndarray) -> None:
            frames = [
                {
                    "frame_index": start + i,
                    "timestamp": (start + i) / 10,
                    "detections": [
                        {"xyxy": [40.0 * j, 10, 40.0 * j + 30, 90], "confidence": float(c)}
                        for j, c in enumerate(row)
                    ],
                }
                for i, row in enumerate(confidences.reshape(-1, 10))
            ]
            response = httpx.post(
                f"{server.url}/v1/ingest/detections",
                json={"camera_id": "dock", "model": "yolox-nano", "frames": frames},
                headers=auth(token),
            )
            assert response.status_code == 202

        def report() -> dict[str, Any]:
            reports = httpx.get(f"{server.url}/v1/drift", headers=auth(token)).json()["reports"]
            return next(r for r in reports if r["signal"] == "confidence")

        send(0, rng.beta(8, 2, 300))  # the reference: a confident detector
        send(30, rng.beta(8, 2, 200))  # more of the same
        wait_until(lambda: report()["recent_count"] == 200, what="the recent window")
        steady = report()
        assert steady["stream"] == "dock/yolox-nano" and not steady["drifted"] and steady["psi"] < 0.25
        send(50, rng.beta(4, 4, 200))  # the scene changed: confidences sag
        wait_until(lambda: report()["drifted"], what="drift to be flagged")
        assert report()["psi"] > 0.25 and report()["ks_pvalue"] < 0.01
        metrics = httpx.get(f"{server.url}/metrics", headers=auth(token)).text
        assert 'crossview_drift_alert{signal="confidence",stream="dock/yolox-nano"} 1.0' in metrics
    finally:
        server.stop()
