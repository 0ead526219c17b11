"""The routes' dependencies (``crossview.serve.deps``): what a test hands a route through
``app.dependency_overrides`` is what the route uses, and only the routes see it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import numpy as np

from crossview.embed.color import ColorHistogramEmbedder
from crossview.search.index import Entry
from crossview.serve.app import ServeConfig, create_app
from crossview.serve.breaker import BreakerConfig
from crossview.serve.deps import get_service
from crossview.serve.gate import GateConfig
from crossview.serve.limits import RateLimit
from crossview.serve.service import Service, ServiceConfig

from .conftest import ThreadServer, auth, make_key

DIM = 480  # the colour histogram embedder's


def look(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).random(DIM) ** 4
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def failing_service(data_dir: Path) -> Service:
    """A real service whose real index fails: its metadata table was dropped behind its back (what a
    wiped or replaced disk leaves), and its breaker opens at the first failure, for a minute."""
    config = ServiceConfig(
        data_dir=data_dir,
        index_factory="Flat",
        index_breaker=BreakerConfig(failure_threshold=1, recovery_s=60.0),
    )
    service = Service(config, ColorHistogramEmbedder())
    service.index.add([1], look(0)[None], [Entry(camera_id="gate", track_id=1, t_end=1.0)])
    with sqlite3.connect(data_dir / "index" / "meta.sqlite") as other:
        other.execute("DROP TABLE entries")
    return service


def test_an_overridden_service_dependency_is_what_the_routes_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = ServeConfig(
        service=ServiceConfig(data_dir=data_dir),
        gate=GateConfig(rate_limit=RateLimit(rate_per_s=1000, burst=1000)),
    )
    app = create_app(config)
    failing = failing_service(tmp_path / "failing")
    app.dependency_overrides[get_service] = lambda: failing
    server = ThreadServer(app)
    try:
        token, _ = make_key(data_dir, "ui", "search,read")  # the gate stays the app's, keys included
        query = {"embedding": look(0).tolist(), "k": 1}
        failed = httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token))
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
        assert failed.json()["error"]["code"] == "backend_error"
        assert "no such table: entries" in failed.json()["error"]["message"]
        refused = httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token))
        assert refused.status_code == 503 and 55 <= int(refused.headers["Retry-After"]) <= 60
        body = refused.json()
        assert body["request_id"] == refused.headers["X-Request-ID"]
        assert body["error"]["code"] == "backend_unavailable"
        assert body["error"]["message"].startswith("backend 'index' is unavailable (circuit open); retry in")
        # every route that takes the service sees the override: readiness too (it was never started)
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["index_breaker"] == "open"
        # without the override the routes have the app's own service again, untouched
        del app.dependency_overrides[get_service]
        found = httpx.post(f"{server.url}/v1/search", json=query, headers=auth(token))
        assert found.status_code == 200 and found.json() == {"hits": []}
        assert httpx.get(f"{server.url}/readyz").json()["index_breaker"] == "closed"
    finally:
        server.stop()
        failing.stop()
