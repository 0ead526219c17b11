"""What one app holds for its lifetime: ``ServeState`` (the service, keys, gate, drift monitor, metrics).

``create_app`` builds one and keeps it as ``app.state.crossview``; routes never read it there but
receive its parts through the dependencies of ``crossview.serve.deps``.
"""

import json
import logging

import numpy as np

from crossview.core.detections import Detections
from crossview.embed.base import Embedder
from crossview.serve.breaker import BreakerState
from crossview.serve.config import ServeConfig
from crossview.serve.drift import DriftMonitor
from crossview.serve.errors import Overloaded, RateLimited, ServiceError
from crossview.serve.gate import Gate
from crossview.serve.keys import JwtVerifier, KeyStore
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import Service

__all__ = ["ServeState"]

log = logging.getLogger("crossview.serve")


class ServeState:
    """What one app holds: the service, keys, gate, drift monitor and metrics."""

    def __init__(self, config: ServeConfig, embedder: Embedder) -> None:
        self.config = config
        self.metrics = ServiceMetrics()
        self.service = Service(
            config.service,
            embedder,
            on_breaker_change=lambda name, old, new: self.metrics.set_breaker(name, new),
            on_stage=lambda stage, seconds: self.metrics.stage_seconds.labels(stage).observe(seconds),
        )
        for backend in ("index", "detector", "embedder"):
            self.metrics.set_breaker(backend, BreakerState.CLOSED)
        self.keys = KeyStore(config.service.data_dir / "keys.sqlite")
        secret = config.jwt_secret
        self.jwt = (
            None
            if secret is None
            else JwtVerifier(
                secret.get_secret_value(),
                issuer=config.jwt_issuer,
                audience=config.jwt_audience,
                max_lifetime_s=config.jwt_max_lifetime_s,
            )
        )
        self.gate = Gate(config.gate, self.keys, self.jwt, on_refused=self.refused)
        self.drift = DriftMonitor(config.drift)
        self.service.observers.append(self.observe)
        self.service.camera_freed.append(self.forget_camera)

    @property
    def models(self) -> frozenset[str]:
        """Every model name a drift stream or metric series may carry (a closed set)."""
        return self.service.models | {self.service.detector_name}

    def observe(self, camera: str, model: str, tracked: Detections) -> None:
        """Per processed frame (worker thread): confidence and embedding metrics, drift windows."""
        if len(tracked) == 0:
            return
        stream = f"{camera}/{model}"
        confidences = tracked.confidence.astype(np.float64)
        histogram = self.metrics.confidence.labels(camera, model)
        for value in confidences.tolist():
            histogram.observe(value)
        self.drift.observe_confidences(stream, confidences)
        if tracked.embedding is not None:
            self.metrics.embeddings.labels(camera).inc(len(tracked))
            self.drift.observe_embeddings(stream, tracked.embedding)

    def forget_camera(self, camera: str) -> None:
        """A camera went idle (worker thread): drop its drift windows and metric series."""
        for model in self.models:
            self.drift.forget(f"{camera}/{model}")
        self.metrics.forget_camera(camera, self.models)

    def refused(self, error: ServiceError) -> None:
        self.metrics.gate_refusals.labels(error.code).inc()
        if type(error) is RateLimited:
            self.metrics.rate_limited.inc()

    def ingest_refusal(self) -> ServiceError | None:
        """503 while the ingest queue is full, decided before the body is read."""
        admission = self.service.admission
        if not admission.full:
            return None
        self.metrics.refused_requests.labels("queue_full").inc()
        wait = admission.retry_after()
        return Overloaded(
            f"ingest queue is full ({admission.queued} batches waiting); retry in {wait:.1f} s",
            retry_after_s=wait,
        )

    def drain(self) -> None:
        """SIGTERM: readiness turns 503 and new work is refused; requests in flight finish."""
        self.gate.drain()
        log.info(json.dumps({"event": "draining", "queued_batches": self.service.queued}))
