"""Prometheus metrics of one service instance, in its own registry (no process-global state).

Every label takes values from a closed set, so a client cannot grow the number of series: routes
are templates (or ``unmatched``), methods the known ones (or ``OTHER``), codes and reasons the
service's own, models those the service declares, cameras those holding state (at most the camera
cap; ``forget_camera`` removes a camera's series when it goes idle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from crossview.serve.breaker import BreakerState

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class ServiceMetrics:
    """Every metric the service exports (``crossview_*``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "crossview_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "crossview_grpc_request_duration_seconds",
            "gRPC call latency by method and status code.",
            ("method", "code"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.gate_refusals = Counter(
            "crossview_gate_refusals_total",
            "Requests refused before their body was read (draining, authentication, scope, rate and "
            "failure limits, requests in flight), by error code.",
            ("code",),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "crossview_stage_duration_seconds",
            "Pipeline stage latency per ingest batch or search (track, index, search).",
            ("stage",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "crossview_ingest_queue_depth", "Accepted ingest batches not processed yet.", registry=r
        )
        self.ingested_frames = Counter(
            "crossview_ingest_frames_total",
            "Frames accepted for ingest, per camera.",
            ("camera",),
            registry=r,
        )
        self.refused_frames = Counter(
            "crossview_ingest_refused_frames_total",
            "Frames refused at ingest (dropped by the service), by reason.",
            ("reason",),
            registry=r,
        )
        self.refused_requests = Counter(
            "crossview_ingest_refused_requests_total",
            "Ingest requests refused before their body was read, by reason.",
            ("reason",),
            registry=r,
        )
        self.confidence = Histogram(
            "crossview_detection_confidence",
            "Detection confidences, per camera and model.",
            ("camera", "model"),
            buckets=_CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.embeddings = Counter(
            "crossview_embeddings_total",
            "Embeddings processed per camera (their distribution is watched by the drift gauges).",
            ("camera",),
            registry=r,
        )
        self.breaker_state = Gauge(
            "crossview_breaker_state",
            "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.",
            ("backend",),
            registry=r,
        )
        self.rate_limited = Counter(
            "crossview_rate_limited_total", "Requests refused by the per-key rate limit.", registry=r
        )
        self.drift_psi = Gauge(
            "crossview_drift_psi",
            "Population stability index of the recent window against the reference.",
            ("stream", "signal"),
            registry=r,
        )
        self.drift_ks_pvalue = Gauge(
            "crossview_drift_ks_pvalue",
            "Two-sample Kolmogorov-Smirnov p-value, recent window against the reference.",
            ("stream", "signal"),
            registry=r,
        )
        self.drifted = Gauge(
            "crossview_drift_alert",
            "1 when the stream's signal has drifted.",
            ("stream", "signal"),
            registry=r,
        )

    def forget_camera(self, camera: str, models: Iterable[str]) -> None:
        """Drop the series of a camera that went idle (its counters restart if it comes back)."""
        for counter in (self.ingested_frames, self.embeddings):
            with contextlib.suppress(KeyError):
                counter.remove(camera)
        for model in models:
            with contextlib.suppress(KeyError):
                self.confidence.remove(camera, model)
        for gauge in (self.drift_psi, self.drift_ks_pvalue, self.drifted):
            for model in models:
                for signal in ("confidence", "embedding"):
                    with contextlib.suppress(KeyError):
                        gauge.remove(f"{camera}/{model}", signal)

    def set_breaker(self, backend: str, state: BreakerState) -> None:
        self.breaker_state.labels(backend).set(BREAKER_LEVEL[state])

    def render(self) -> bytes:
        return generate_latest(self.registry)
