"""The gate, in the order it decides: draining, failures per address, credential, scope, rate,
requests in flight. A real key store on disk; a real JWT verifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crossview.serve.errors import (
    Forbidden,
    Overloaded,
    RateLimited,
    ServiceError,
    TooManyFailures,
    Unauthenticated,
    Unavailable,
)
from crossview.serve.gate import Gate, GateConfig, bearer_token
from crossview.serve.keys import JwtVerifier, KeyStore, Scope
from crossview.serve.limits import RateLimit

SECRET = "k" * 40


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    with KeyStore(tmp_path / "keys.sqlite") as store:
        yield store


def test_bearer_or_api_key_header() -> None:
    assert bearer_token("Bearer abc ", None) == "abc"
    assert bearer_token("bearer abc", "other") == "abc"
    assert bearer_token(None, " xyz ") == "xyz"
    assert bearer_token("Basic dXNlcg==", None) == ""


def test_credentials_scopes_and_rate_limits(keys: KeyStore) -> None:
    refused: list[str] = []
    gate = Gate(
        GateConfig(rate_limit=RateLimit(rate_per_s=0.001, burst=2)),
        keys,
        JwtVerifier(SECRET),
        on_refused=lambda error: refused.append(error.code),
    )
    camera, _ = keys.create("camera", "ingest")
    admitted = gate.admit(token=camera, address="10.0.0.1", needed=Scope.INGEST)
    assert admitted.principal.subject == "camera" and admitted.work == "ingest"
    admitted.release()
    admitted.release()  # once only, however often it is called
    assert gate.inflight("ingest") == 0
    with pytest.raises(Forbidden, match="'search' scope"):
        gate.admit(token=camera, address="10.0.0.1", needed=Scope.SEARCH)
    with pytest.raises(Unauthenticated, match="send an API key"):
        gate.admit(token="", address="10.0.0.1", needed=Scope.READ)
    token = JwtVerifier(SECRET).issue("ops", ["read"])
    gate.admit(token=token, address="10.0.0.2", needed=Scope.READ).release()
    gate.admit(token=camera, address="10.0.0.1", needed=Scope.INGEST).release()
    with pytest.raises(RateLimited) as limited:
        gate.admit(token=camera, address="10.0.0.1", needed=Scope.INGEST)
    assert limited.value.retry_after_s is not None and limited.value.retry_after_s > 100
    assert refused == ["forbidden", "unauthenticated", "rate_limited"]


def test_failures_are_limited_per_address_before_any_credential_check(keys: KeyStore) -> None:
    gate = Gate(GateConfig(failure_limit=RateLimit(rate_per_s=0.01, burst=3)), keys)
    good, _ = keys.create("dashboard", "read")
    for token in ("cvk_guess", "", "a.b.c"):
        with pytest.raises(Unauthenticated):
            gate.admit(token=token, address="10.0.0.9", needed=Scope.READ)
    with pytest.raises(TooManyFailures) as limited:
        gate.admit(token=good, address="10.0.0.9", needed=Scope.READ)  # even a good key: no oracle
    assert limited.value.http_status == 429 and limited.value.retry_after_s == pytest.approx(100, rel=0.01)
    gate.admit(token=good, address="10.0.0.10", needed=Scope.READ).release()  # other addresses are not


def test_requests_in_flight_are_capped_per_kind_of_work(keys: KeyStore) -> None:
    gate = Gate(GateConfig(max_inflight_ingest=2, max_inflight_search=1), keys)
    token, _ = keys.create("all", "admin")
    held = [gate.admit(token=token, address="a", needed=Scope.INGEST) for _ in range(2)]
    with pytest.raises(Overloaded, match="2 ingest requests are in flight"):
        gate.admit(token=token, address="a", needed=Scope.INGEST)
    search = gate.admit(token=token, address="a", needed=Scope.SEARCH)  # its own cap
    held[0].release()
    gate.admit(token=token, address="a", needed=Scope.INGEST).release()
    search.release()
    assert gate.inflight("ingest") == 1 and gate.inflight("search") == 0


def test_draining_refuses_new_work(keys: KeyStore) -> None:
    gate = Gate(GateConfig(), keys)
    token, _ = keys.create("all", "admin")
    gate.drain()
    with pytest.raises(Unavailable, match="shutting down") as refused:
        gate.admit(token=token, address="a", needed=Scope.READ)
    assert isinstance(refused.value, ServiceError) and refused.value.http_status == 503
