"""API key store (real SQLite) and JWT verification (real PyJWT)."""

from __future__ import annotations

import math
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from crossview.serve.keys import JwtVerifier, KeyRecord, KeyStore, Principal, Scope, parse_scopes

SECRET = "s" * 32
ALL_SCOPES = frozenset(Scope)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "keys.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[KeyStore]:
    with KeyStore(db_path) as s:
        yield s


def _split(token: str) -> tuple[str, str]:
    assert token.startswith("cvk_")
    key_id, secret = token[4:16], token[17:]
    assert token[16] == "_"
    return key_id, secret


# ---------------------------------------------------------------- scopes and principals


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("read", {Scope.READ}),
        ("read,search", {Scope.READ, Scope.SEARCH}),
        ("read search", {Scope.READ, Scope.SEARCH}),
        (" read ,  search\tingest ", {Scope.READ, Scope.SEARCH, Scope.INGEST}),
        (["read", "admin"], {Scope.READ, Scope.ADMIN}),
        (["read,search", "ingest"], {Scope.READ, Scope.SEARCH, Scope.INGEST}),
        ((Scope.ADMIN, "admin"), {Scope.ADMIN}),
        ("READ", {Scope.READ}),
    ],
)
def test_parse_scopes_variants(given: str | list[str], expected: set[Scope]) -> None:
    assert parse_scopes(given) == frozenset(expected)


def test_parse_scopes_unknown_names_the_scope_and_choices() -> None:
    with pytest.raises(ValueError) as err:
        parse_scopes("read,foo")
    assert str(err.value) == "unknown scope 'foo'; choose from read, search, ingest, admin"


@pytest.mark.parametrize("given", ["", " , ", [], [""], ["  "]])
def test_parse_scopes_empty(given: str | list[str]) -> None:
    with pytest.raises(ValueError, match="no scopes given"):
        parse_scopes(given)


def test_parse_scopes_non_string_item() -> None:
    with pytest.raises(ValueError, match="scope must be a string, got int"):
        parse_scopes(["read", 3])  # type: ignore[list-item]


def test_admin_implies_every_scope() -> None:
    admin = Principal("ops", frozenset({Scope.ADMIN}), "api_key", "0123456789ab")
    assert all(admin.allows(s) for s in Scope)
    reader = Principal("ui", frozenset({Scope.READ}), "jwt")
    assert reader.allows(Scope.READ)
    assert not reader.allows(Scope.SEARCH)
    assert not reader.allows(Scope.ADMIN)


# ---------------------------------------------------------------- key store


def test_create_returns_token_that_verifies(store: KeyStore) -> None:
    token, record = store.create("search-ui", "read,search")
    key_id, secret = _split(token)
    assert len(key_id) == 12 and all(c in "0123456789abcdef" for c in key_id)
    assert len(secret) == 43
    assert record.key_id == key_id
    assert record.name == "search-ui"
    assert record.scopes == {Scope.READ, Scope.SEARCH}
    assert record.active and record.revoked_at is None
    assert abs(record.created_at - time.time()) < 60

    principal = store.verify(token)
    assert principal == Principal("search-ui", frozenset({Scope.READ, Scope.SEARCH}), "api_key", key_id)
    assert principal.allows(Scope.SEARCH)
    assert not principal.allows(Scope.INGEST)


def test_create_accepts_scope_enums_and_lists(store: KeyStore) -> None:
    token, record = store.create("ops", [Scope.ADMIN])
    assert record.scopes == {Scope.ADMIN}
    principal = store.verify(token)
    assert principal is not None and all(principal.allows(s) for s in Scope)


def test_create_rejects_bad_input(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        store.create("x", ["root"])
    with pytest.raises(ValueError, match="no scopes given"):
        store.create("x", [])
    with pytest.raises(ValueError, match="key name must not be empty"):
        store.create("   ", "read")
    with pytest.raises(ValueError, match="control characters"):
        store.create("a\nb", "read")
    with pytest.raises(ValueError, match="at most 200"):
        store.create("n" * 201, "read")
    assert store.list() == []


def test_tokens_are_unique(store: KeyStore) -> None:
    tokens = [store.create(f"k{i}", "read")[0] for i in range(20)]
    assert len(set(tokens)) == 20
    assert len({_split(t)[0] for t in tokens}) == 20


def test_secret_is_never_written_to_disk(db_path: Path) -> None:
    store = KeyStore(db_path)
    tokens = [store.create(f"key-{i}", "read,ingest")[0] for i in range(5)]
    store.revoke(_split(tokens[0])[0])
    assert all(store.verify(t) is not None for t in tokens[1:])
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert db_path in files and db_path.with_name(db_path.name + "-wal") in files

    def check() -> None:
        blobs = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))
        assert b"key-3" in blobs  # sanity: we are reading the right bytes
        for token in tokens:
            _, secret = _split(token)
            assert secret.encode() not in blobs
            assert token.encode() not in blobs

    check()  # while open, data still in the WAL
    store.close()
    check()  # after the checkpoint on close


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_database_file_mode_is_0600(db_path: Path, store: KeyStore) -> None:
    store.create("k", "read")
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    wal = db_path.with_name(db_path.name + "-wal")
    assert stat.S_IMODE(os.stat(wal).st_mode) == 0o600


def test_wal_mode(db_path: Path, store: KeyStore) -> None:
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_verify_rejects_bad_tokens(store: KeyStore) -> None:
    token, _ = store.create("k", "read")
    key_id, secret = _split(token)
    other_token, _ = store.create("other", "admin")
    other_id, other_secret = _split(other_token)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    unknown_id = "0" * 12 if key_id != "0" * 12 else "1" * 12
    bad = [
        f"cvk_{key_id}_{flipped}",  # wrong secret
        f"cvk_{key_id}_{other_secret}",  # another key's secret
        f"cvk_{other_id}_{secret}",
        f"cvk_{unknown_id}_{secret}",  # unknown key id
        "",
        "cvk_",
        "cvk__",
        token[:-1],
        token + "x",
        token.upper(),
        token.replace("cvk_", "cvx_"),
        f"cvk_{key_id.upper()}_{secret}",
        f"cvk_{key_id}-{secret}",
        f"cvk_{key_id}_{secret[:-1]}!",
        f"cvk_{key_id}_{secret[:-1]}é",
        " " + token[1:],
        token[:-1] + "\x00",
        "x" * 10_000_000,
        "cvk_" + "a" * 5000,
        "Bearer " + token,
        "\ud800" * 60,
        "cvk_" + "g" * 12 + "_" + secret,
    ]
    for candidate in bad:
        assert store.verify(candidate) is None, candidate[:80]
    for garbage in (None, 42, b"cvk_", ["cvk_"], object()):
        assert store.verify(garbage) is None  # type: ignore[arg-type]
    assert store.verify(token) is not None  # still fine after all that


def test_revoke(store: KeyStore) -> None:
    token, record = store.create("k", "read")
    keep, _ = store.create("keep", "search")
    revoked = store.revoke(record.key_id)
    assert not revoked.active
    assert revoked.revoked_at is not None and revoked.revoked_at >= record.created_at
    assert store.verify(token) is None
    assert store.verify(keep) is not None
    again = store.revoke(record.key_id)
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time
    assert store.get(record.key_id) == revoked


def test_revoke_unknown_key(store: KeyStore) -> None:
    with pytest.raises(KeyError) as err:
        store.revoke("deadbeef0000")
    assert err.value.args[0] == "no API key 'deadbeef0000'"
    with pytest.raises(KeyError, match="no API key"):
        store.get("nope")


def test_revoke_through_second_store_is_seen_by_first(db_path: Path) -> None:
    server = KeyStore(db_path)
    try:
        token, record = server.create("k", "read,search")
        assert server.verify(token) is not None  # warm up the first connection
        with KeyStore(db_path) as cli:
            cli_view = cli.list()
            assert [r.key_id for r in cli_view] == [record.key_id]
            assert cli.verify(token) is not None
            cli.revoke(record.key_id)
            # while the CLI's store is still open, the server refuses at once
            assert server.verify(token) is None
        assert server.verify(token) is None
        assert not server.get(record.key_id).active
    finally:
        server.close()


def test_list_with_and_without_revoked(store: KeyStore) -> None:
    _, a = store.create("a", "read")
    _, b = store.create("b", "search,ingest")
    _, c = store.create("c", "admin")
    store.revoke(b.key_id)
    everything = store.list()
    assert [r.key_id for r in everything] == [a.key_id, b.key_id, c.key_id]
    assert [r.active for r in everything] == [True, False, True]
    assert store.list(include_revoked=True) == everything
    assert [r.key_id for r in store.list(include_revoked=False)] == [a.key_id, c.key_id]


def test_record_to_dict_has_no_secrets(store: KeyStore) -> None:
    token, record = store.create("k", "admin,read")
    d = record.to_dict()
    assert d == {
        "key_id": record.key_id,
        "name": "k",
        "scopes": ["read", "admin"],
        "created_at": record.created_at,
        "revoked_at": None,
        "active": True,
    }
    assert _split(token)[1] not in repr(d)
    assert _split(token)[1] not in repr(record)
    revoked = store.revoke(record.key_id).to_dict()
    assert revoked["active"] is False and isinstance(revoked["revoked_at"], float)


def test_reopen_keeps_keys(db_path: Path) -> None:
    with KeyStore(db_path) as s:
        token, record = s.create("k", "ingest")
    with KeyStore(db_path) as s:
        assert s.list() == [record]
        p = s.verify(token)
        assert p is not None and p.scopes == {Scope.INGEST}


def test_closed_store_raises(db_path: Path) -> None:
    s = KeyStore(db_path)
    token, _ = s.create("k", "read")
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.verify(token)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        KeyStore(path)


def test_concurrent_verify_while_revoking(db_path: Path) -> None:
    server = KeyStore(db_path)
    victim, victim_rec = server.create("victim", "read")
    survivors = [server.create(f"s{i}", "search")[0] for i in range(3)]
    revoked = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []
    late_accepts: list[Principal] = []
    survivor_failures: list[str] = []
    counts = [0] * 8

    def worker(i: int) -> None:
        try:
            while not stop.is_set():
                was_revoked = revoked.is_set()
                got = server.verify(victim)
                if was_revoked and got is not None:
                    late_accepts.append(got)
                if server.verify(survivors[i % len(survivors)]) is None:
                    survivor_failures.append(survivors[i % len(survivors)])
                assert server.verify("cvk_garbage") is None
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(counts))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        with KeyStore(db_path) as cli:  # another connection, as the CLI would be
            for i in range(5):
                cli.create(f"extra{i}", "read")
            cli.revoke(victim_rec.key_id)
        revoked.set()
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    server.close()
    assert not errors
    assert not late_accepts
    assert not survivor_failures
    assert all(c > 0 for c in counts)


# ---------------------------------------------------------------- JWT


def _encode(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def test_jwt_issue_and_verify() -> None:
    v = JwtVerifier(SECRET)
    token = v.issue("alice", ["read", Scope.SEARCH], ttl_s=60)
    p = v.verify(token)
    assert p == Principal("alice", frozenset({Scope.READ, Scope.SEARCH}), "jwt", None)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["scope"] == "read search"
    assert claims["exp"] > time.time()


def test_jwt_scope_claim_forms() -> None:
    v = JwtVerifier(SECRET)
    exp = int(time.time()) + 60
    by_string = v.verify(_encode({"sub": "a", "exp": exp, "scope": "read ingest"}))
    assert by_string is not None and by_string.scopes == {Scope.READ, Scope.INGEST}
    by_list = v.verify(_encode({"sub": "a", "exp": exp, "scopes": ["admin"]}))
    assert by_list is not None and by_list.allows(Scope.INGEST)
    both = v.verify(_encode({"sub": "a", "exp": exp, "scope": "read", "scopes": ["search"]}))
    assert both is not None and both.scopes == {Scope.READ, Scope.SEARCH}


@pytest.mark.parametrize(
    "scope_claims",
    [
        {"scope": "read superuser"},
        {"scopes": ["read", "root"]},
        {"scope": "READ"},
        {"scope": "read,search"},
        {"scope": ["read"]},
        {"scopes": "read"},
        {"scopes": [1]},
        {},
        {"scope": ""},
        {"scopes": []},
    ],
)
def test_jwt_bad_or_unknown_scopes_refused(scope_claims: dict[str, object]) -> None:
    v = JwtVerifier(SECRET)
    token = _encode({"sub": "a", "exp": int(time.time()) + 60, **scope_claims})
    assert v.verify(token) is None


def test_jwt_expired() -> None:
    v = JwtVerifier(SECRET, leeway_s=0.0)
    token = _encode({"sub": "a", "exp": int(time.time()) - 10, "scope": "read"})
    assert v.verify(token) is None
    assert JwtVerifier(SECRET, leeway_s=60.0).verify(token) is not None


def test_jwt_wrong_secret_and_algorithm() -> None:
    v = JwtVerifier(SECRET)
    claims: dict[str, object] = {"sub": "a", "exp": int(time.time()) + 60, "scope": "read"}
    assert v.verify(_encode(claims, secret="t" * 32)) is None
    assert v.verify(_encode(claims, secret=SECRET + "x")) is None
    # a correctly keyed token with an algorithm we did not allow
    assert v.verify(_encode(claims, secret="s" * 64, alg="HS512")) is None
    assert JwtVerifier("s" * 64, algorithms=["HS512"]).verify(_encode(claims, "s" * 64, "HS512")) is not None
    # alg=none
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert v.verify(unsigned) is None


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_jwt_missing_required_claim(missing: str) -> None:
    claims: dict[str, object] = {"sub": "a", "exp": int(time.time()) + 60, "scope": "read"}
    del claims[missing]
    assert JwtVerifier(SECRET).verify(_encode(claims)) is None


def test_jwt_bad_subject() -> None:
    v = JwtVerifier(SECRET)
    exp = int(time.time()) + 60
    assert v.verify(_encode({"sub": "", "exp": exp, "scope": "read"})) is None
    assert v.verify(_encode({"sub": 42, "exp": exp, "scope": "read"})) is None


def test_jwt_garbage() -> None:
    v = JwtVerifier(SECRET)
    good = v.issue("a", "read")
    garbage_tokens = ["", "a.b.c", "...", "x" * 100_000, good + "x", good[:-2], "é.é.é", "\ud800"]
    for garbage in [*garbage_tokens, good.upper()]:
        assert v.verify(garbage) is None
    for wrong_type in (None, 42, good.encode(), [good]):
        assert v.verify(wrong_type) is None  # type: ignore[arg-type]


def test_jwt_audience_and_issuer() -> None:
    v = JwtVerifier(SECRET, audience="crossview", issuer="https://idp.example")
    exp = int(time.time()) + 60
    base: dict[str, object] = {"sub": "a", "exp": exp, "scope": "read"}
    ok = v.verify(_encode({**base, "aud": "crossview", "iss": "https://idp.example"}))
    assert ok is not None
    multi_aud = _encode({**base, "aud": ["other", "crossview"], "iss": "https://idp.example"})
    assert v.verify(multi_aud) is not None
    assert v.verify(_encode({**base, "aud": "other", "iss": "https://idp.example"})) is None
    assert v.verify(_encode({**base, "aud": "crossview", "iss": "https://evil.example"})) is None
    assert v.verify(_encode({**base, "iss": "https://idp.example"})) is None  # no aud
    assert v.verify(_encode({**base, "aud": "crossview"})) is None  # no iss
    issued = v.issue("bob", "search")
    assert v.verify(issued) is not None
    # a verifier without an audience refuses tokens that are meant for some audience
    assert JwtVerifier(SECRET).verify(issued) is None
    assert JwtVerifier(SECRET, audience="crossview", issuer="https://other").verify(issued) is None


def test_jwt_not_before() -> None:
    v = JwtVerifier(SECRET)
    now = int(time.time())
    assert v.verify(_encode({"sub": "a", "exp": now + 600, "nbf": now + 300, "scope": "read"})) is None


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_jwt_short_secret(secret: str) -> None:
    with pytest.raises(ValueError, match="JWT secret"):
        JwtVerifier(secret)


def test_jwt_constructor_validation() -> None:
    with pytest.raises(ValueError, match="at least 64 bytes"):
        JwtVerifier("x" * 32, algorithms=["HS512"])
    with pytest.raises(ValueError, match="unsupported JWT algorithm 'RS256'"):
        JwtVerifier(SECRET, algorithms=["RS256"])
    with pytest.raises(ValueError, match="unsupported JWT algorithm 'none'"):
        JwtVerifier(SECRET, algorithms=["none"])
    with pytest.raises(ValueError, match="no JWT algorithms"):
        JwtVerifier(SECRET, algorithms=[])
    with pytest.raises(ValueError, match="not the string"):
        JwtVerifier(SECRET, algorithms="HS256")
    with pytest.raises(ValueError, match="leeway_s"):
        JwtVerifier(SECRET, leeway_s=-1)
    with pytest.raises(ValueError, match="audience"):
        JwtVerifier(SECRET, audience="")
    assert SECRET not in repr(JwtVerifier(SECRET))


def test_jwt_issue_validation() -> None:
    v = JwtVerifier(SECRET)
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        v.issue("a", ["root"])
    with pytest.raises(ValueError, match="subject"):
        v.issue("", ["read"])
    with pytest.raises(ValueError, match="ttl_s"):
        v.issue("a", ["read"], ttl_s=0)


def test_key_record_active_property() -> None:
    rec = KeyRecord("0123456789ab", "n", ALL_SCOPES, 1.0, None)
    assert rec.active
    assert not KeyRecord("0123456789ab", "n", ALL_SCOPES, 1.0, 2.0).active


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> int:
    """The verifier's clock stopped at a whole second, so that "one second over" is exact."""
    now = int(time.time())
    monkeypatch.setattr(time, "time", lambda: float(now))
    return now


LIFETIME_CLAIMS: dict[str, object] = {"sub": "alice", "scope": "read"}


def test_jwt_exp_at_most_max_lifetime_ahead(frozen_now: int) -> None:
    verifier = JwtVerifier(SECRET, max_lifetime_s=3600.0)
    assert verifier.verify(_encode({**LIFETIME_CLAIMS, "exp": frozen_now + 3600})) is not None  # the limit
    assert verifier.verify(_encode({**LIFETIME_CLAIMS, "exp": frozen_now + 3601})) is None  # 1 s over
    lenient = JwtVerifier(SECRET, max_lifetime_s=3600.0, leeway_s=30.0)
    assert lenient.verify(_encode({**LIFETIME_CLAIMS, "exp": frozen_now + 3630})) is not None
    assert lenient.verify(_encode({**LIFETIME_CLAIMS, "exp": frozen_now + 3631})) is None


def test_jwt_exp_minus_iat_at_most_max_lifetime(frozen_now: int) -> None:
    verifier = JwtVerifier(SECRET, max_lifetime_s=3600.0)
    at_limit = {**LIFETIME_CLAIMS, "iat": frozen_now - 3000, "exp": frozen_now + 600}
    assert verifier.verify(_encode(at_limit)) is not None
    over = {**LIFETIME_CLAIMS, "iat": frozen_now - 3000, "exp": frozen_now + 601}
    assert verifier.verify(_encode(over)) is None  # only 601 s ahead, but a lifetime of 3601 s


def test_jwt_absurd_or_malformed_times_are_refused_without_raising(frozen_now: int) -> None:
    capped = JwtVerifier(SECRET)  # a day by default
    for exp in (10**30, 10**400, 1e308, math.inf, math.nan, "soon", True, None, [1]):
        assert capped.verify(_encode({**LIFETIME_CLAIMS, "exp": exp})) is None, exp
    unlimited = JwtVerifier(SECRET, max_lifetime_s=None)
    assert unlimited.verify(_encode({**LIFETIME_CLAIMS, "exp": 10**30})) is not None
    assert unlimited.verify(_encode({**LIFETIME_CLAIMS, "exp": 1e308})) is not None
    for verifier in (capped, unlimited):
        for exp in (math.inf, math.nan, "soon"):
            assert verifier.verify(_encode({**LIFETIME_CLAIMS, "exp": exp})) is None, exp
        for iat in (math.inf, -math.inf, math.nan, "yesterday", True, 10**400):
            token = _encode({**LIFETIME_CLAIMS, "iat": iat, "exp": frozen_now + 60})
            assert verifier.verify(token) is None, iat


def test_jwt_issued_in_the_future_is_refused(frozen_now: int) -> None:
    for verifier in (JwtVerifier(SECRET), JwtVerifier(SECRET, max_lifetime_s=None)):
        ahead = {**LIFETIME_CLAIMS, "iat": frozen_now + 600, "exp": frozen_now + 1200}
        assert verifier.verify(_encode(ahead)) is None
    lenient = JwtVerifier(SECRET, leeway_s=30.0)
    soon = {**LIFETIME_CLAIMS, "iat": frozen_now + 30, "exp": frozen_now + 60}
    assert lenient.verify(_encode(soon)) is not None


def test_jwt_issue_refuses_a_ttl_over_the_cap() -> None:
    verifier = JwtVerifier(SECRET, max_lifetime_s=60.0)
    token = verifier.issue("alice", "read", ttl_s=60)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60
    assert verifier.verify(token) is not None
    with pytest.raises(ValueError, match="exceeds this verifier's max_lifetime_s"):
        verifier.issue("alice", "read", ttl_s=61)
    with pytest.raises(ValueError, match="exceeds this verifier's max_lifetime_s"):
        verifier.issue("alice", "read", ttl_s=60.5)  # rounded up to 61
    with pytest.raises(ValueError, match="exceeds this verifier's max_lifetime_s"):
        JwtVerifier(SECRET).issue("alice", "read", ttl_s=86401)
    assert JwtVerifier(SECRET, max_lifetime_s=None).issue("alice", "read", ttl_s=10 * 86400)


def test_jwt_max_lifetime_is_validated_and_shown() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan, "a day", True):
        with pytest.raises(ValueError, match="max_lifetime_s"):
            JwtVerifier(SECRET, max_lifetime_s=bad)  # type: ignore[arg-type]
    assert "max_lifetime_s=86400.0" in repr(JwtVerifier(SECRET))
    assert "max_lifetime_s=None" in repr(JwtVerifier(SECRET, max_lifetime_s=None))
    assert "_max_lifetime_s" in JwtVerifier.__slots__
