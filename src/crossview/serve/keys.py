"""API keys and JWT bearer tokens for the crossview service: who is calling, and what they may do.

Scopes
------
Every credential carries a set of :class:`Scope` values: ``read``, ``search``, ``ingest`` and
``admin``. ``admin`` implies every other scope (see :meth:`Principal.allows`).

API key token format
--------------------
An API key is handed out exactly once, as ``cvk_<key_id>_<secret>``:

* ``cvk_`` is a fixed prefix so that leaked keys are easy to recognise (secret scanners, log greps);
* ``key_id`` is 12 lowercase hex characters (``secrets.token_hex(6)``). It is *not* secret: it names the
  key in listings, logs and revocations, and it is the SQLite primary key the token is looked up by;
* ``secret`` is ``secrets.token_urlsafe(32)``: 43 URL-safe base64 characters carrying 256 bits from the
  operating system's CSPRNG. It may itself contain ``_`` and ``-``; the parser splits after the
  fixed-width key id, so that is unambiguous.

Hashing choice
--------------
Only a salted hash of the secret is stored: ``sha256(salt || secret)`` in hex, with a fresh 16-byte
random salt per key, compared with :func:`hmac.compare_digest`. The secret itself never touches the
database file (nor its WAL), so a copy of the database does not let anyone authenticate.

A fast hash is the right tool here, unlike for passwords. Slow KDFs (bcrypt, scrypt, Argon2) exist to
make guessing *low-entropy* human-chosen passwords expensive; a 256-bit random secret cannot be guessed
or brute-forced from its hash at any hashing speed, so stretching buys nothing. It would, however, cost
tens of milliseconds of CPU on *every* request, because API keys are presented on every call (and would
hand an unauthenticated caller a cheap way to burn server CPU). The salt is defence in depth: equal
secrets (which will not happen) would still hash differently, and precomputed tables are useless.

Verification is one primary-key lookup by ``key_id`` (microseconds) followed by one SHA-256 and a
constant-time comparison. Nothing is cached between calls, so a key revoked by another process on the
same file (the CLI, while the server runs) is refused on the very next request: SQLite in WAL mode with
autocommit starts a fresh read snapshot for every query.

Threat model
------------
Defended against:

* theft of the database file or a backup of it: it holds only salted hashes, scopes and metadata;
* online guessing: a token is 60 characters of which 256 bits are random; malformed tokens are
  rejected by shape before any database access, and garbage of any length never raises;
* timing attacks on the secret comparison (:func:`hmac.compare_digest`);
* use of a key after revocation, including revocation from a different process or connection;
* other local users reading the database: the file is created with mode ``0o600`` (SQLite gives its
  ``-wal`` and ``-shm`` files the same mode).

Not defended against (out of scope for this module):

* the timing of the ``key_id`` lookup revealing whether a key id exists: key ids are not secret;
* an attacker who can *write* the database file (they can add their own key) or who controls the
  server process (they see tokens in flight);
* tokens leaked by the client or sent over plain HTTP: terminate TLS in front of the service;
* rate limiting and lock-out: belongs in the HTTP layer.

JWT bearer tokens
-----------------
:class:`JwtVerifier` optionally accepts HMAC-signed JWTs (HS256 by default) from an identity provider
or an operator sharing a secret of at least 32 bytes (at least the digest size for HS384/HS512). A
token must carry ``exp`` and ``sub``; its scopes come from the OAuth2-style ``scope`` claim (a
space-separated string) and/or a ``scopes`` claim (a list of strings). A token naming a scope this
service does not know, or naming none, is refused rather than silently narrowed. JWTs cannot be
revoked individually, so their lifetime is capped (``max_lifetime_s``, a day by default; None lifts
the cap): a token whose ``exp`` lies further ahead (beyond ``leeway_s``), or whose ``exp - iat`` is
longer, is refused, and ``issue`` refuses such a ``ttl_s``. ``exp`` and ``iat`` must be finite
numbers (``exp = 10**30``, ``1e308`` or ``"soon"`` is refused, never an error) and ``iat`` may not
lie in the future. With an ``issuer`` and ``audience`` configured, ``iss`` and ``aud`` are required
and must match.

Example:

>>> sorted(parse_scopes("read, search"))
[<Scope.READ: 'read'>, <Scope.SEARCH: 'search'>]
>>> Principal("ops", frozenset({Scope.ADMIN}), "jwt").allows(Scope.INGEST)
True
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import jwt

from crossview.io.files import private_file

__all__ = [
    "TOKEN_PREFIX",
    "JwtVerifier",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "Scope",
    "parse_scopes",
]


class Scope(StrEnum):
    """What a credential may do. ``ADMIN`` implies all the others."""

    READ = "read"
    SEARCH = "search"
    INGEST = "ingest"
    ADMIN = "admin"


_SCOPE_ORDER: Final[tuple[Scope, ...]] = tuple(Scope)
_SCOPE_CHOICES: Final[str] = ", ".join(s.value for s in _SCOPE_ORDER)
_SCOPE_SPLIT: Final[re.Pattern[str]] = re.compile(r"[\s,]+")

TOKEN_PREFIX: Final[str] = "cvk_"
_KEY_ID_HEX_CHARS: Final[int] = 12
_SECRET_BYTES: Final[int] = 32
_SECRET_CHARS: Final[int] = 43  # len(secrets.token_urlsafe(32)): 32 bytes in unpadded base64url
_TOKEN_LEN: Final[int] = len(TOKEN_PREFIX) + _KEY_ID_HEX_CHARS + 1 + _SECRET_CHARS
_TOKEN_RE: Final[re.Pattern[str]] = re.compile(
    rf"{TOKEN_PREFIX}(?P<key_id>[0-9a-f]{{{_KEY_ID_HEX_CHARS}}})_(?P<secret>[A-Za-z0-9_-]{{{_SECRET_CHARS}}})"
)
_SALT_BYTES: Final[int] = 16
_MAX_NAME_LEN: Final[int] = 200
_MAX_JWT_LEN: Final[int] = 8192
_MIN_JWT_SECRET_BYTES: Final[int] = 32
_HMAC_DIGEST_BYTES: Final[dict[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_SCHEMA_VERSION: Final[int] = 1


def _ordered(scopes: frozenset[Scope]) -> list[Scope]:
    return [s for s in _SCOPE_ORDER if s in scopes]


def parse_scopes(values: Iterable[str] | str) -> frozenset[Scope]:
    """Parse scope names given as ``"read,search"``, ``"read search"`` or a list (items may be lists too).

    Names are matched case-insensitively after stripping whitespace. Raises :class:`ValueError` for an
    unknown name, a non-string item, or when no scope is given at all.
    """
    items: Iterable[object] = [values] if isinstance(values, str) else values
    found: set[Scope] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(
                f"scope must be a string, got {type(item).__name__}; choose from {_SCOPE_CHOICES}"
            )
        for name in _SCOPE_SPLIT.split(item):
            if not name:
                continue
            try:
                found.add(Scope(name.lower()))
            except ValueError:
                raise ValueError(f"unknown scope {name!r}; choose from {_SCOPE_CHOICES}") from None
    if not found:
        raise ValueError(f"no scopes given; choose from {_SCOPE_CHOICES}")
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who (``subject``), what they may do, and how they authenticated.

    For API keys ``subject`` is the key's name and ``key_id`` its id; for JWTs ``subject`` is the
    ``sub`` claim and ``key_id`` is ``None``.
    """

    subject: str
    scopes: frozenset[Scope]
    via: Literal["api_key", "jwt"]
    key_id: str | None = None

    def allows(self, scope: Scope) -> bool:
        """Whether this principal may act with ``scope``; ``admin`` implies every scope."""
        return Scope.ADMIN in self.scopes or scope in self.scopes


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is known about an API key, without its secret. Timestamps are epoch seconds."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        """``True`` until the key is revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (scopes in canonical order). Never includes secrets or hashes."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": [s.value for s in _ordered(self.scopes)],
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


def _hash_secret(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode("ascii")).hexdigest()


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"key name must be a string, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise ValueError("key name must not be empty")
    if len(stripped) > _MAX_NAME_LEN:
        raise ValueError(f"key name is {len(stripped)} characters long; at most {_MAX_NAME_LEN} allowed")
    if any(not ch.isprintable() for ch in stripped):
        raise ValueError(f"key name {stripped!r} contains control characters")
    return stripped


_SCHEMA: Final[str] = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    salt        BLOB NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  REAL NOT NULL,
    revoked_at  REAL
) WITHOUT ROWID
"""

_COLUMNS: Final[str] = "key_id, name, scopes, created_at, revoked_at"


class KeyStore:
    """API keys in a SQLite file: create, list, revoke and verify. Safe to share between threads.

    One connection (opened with ``check_same_thread=False``) is guarded by a lock; every statement runs
    in autocommit mode, so each verification reads the latest committed state of the file, including
    revocations made by other processes. Use as a context manager or call :meth:`close`.
    """

    __slots__ = ("_conn", "_lock", "_path")

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # never laxer than 0o600; SQLite gives the -wal and -shm files the database file's mode
        private_file(self._path)
        conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > _SCHEMA_VERSION:
                raise ValueError(
                    f"key store {str(self._path)!r} has schema version {version}; "
                    f"this crossview understands up to {_SCHEMA_VERSION}"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            if version < _SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ValueError(f"key store {str(self._path)!r} is not a usable SQLite database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @property
    def path(self) -> Path:
        """The SQLite file backing this store."""
        return self._path

    def __repr__(self) -> str:
        return f"KeyStore({str(self._path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"key store {str(self._path)!r} is closed")
        return self._conn

    @staticmethod
    def _record(row: tuple[Any, ...]) -> KeyRecord:
        key_id, name, scopes, created_at, revoked_at = row
        return KeyRecord(
            key_id=str(key_id),
            name=str(name),
            scopes=frozenset(Scope(s) for s in str(scopes).split()),
            created_at=float(created_at),
            revoked_at=None if revoked_at is None else float(revoked_at),
        )

    def create(self, name: str, scopes: Iterable[Scope | str] | str) -> tuple[str, KeyRecord]:
        """Create a key; returns ``(token, record)``. The token is shown once and cannot be recovered."""
        clean_name = _check_name(name)
        scope_set = parse_scopes(scopes)
        scope_text = " ".join(s.value for s in _ordered(scope_set))
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        salt = secrets.token_bytes(_SALT_BYTES)
        digest = _hash_secret(salt, secret)
        with self._lock:
            conn = self._connection()
            while True:
                key_id = secrets.token_hex(_KEY_ID_HEX_CHARS // 2)
                created_at = time.time()
                try:
                    conn.execute(
                        "INSERT INTO api_keys (key_id, name, scopes, salt, secret_hash, created_at,"
                        " revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (key_id, clean_name, scope_text, salt, digest, created_at),
                    )
                except sqlite3.IntegrityError:  # key id collision (48 random bits): draw another
                    continue
                break
        record = KeyRecord(key_id, clean_name, scope_set, created_at, None)
        return f"{TOKEN_PREFIX}{key_id}_{secret}", record

    def get(self, key_id: str) -> KeyRecord:
        """The record of one key; :class:`KeyError` when there is none."""
        with self._lock:
            row = (
                self._connection()
                .execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (str(key_id),))
                .fetchone()
            )
        if row is None:
            raise KeyError(f"no API key {key_id!r}")
        return self._record(row)

    def list(self, *, include_revoked: bool = True) -> builtins.list[KeyRecord]:
        """All keys, oldest first; only the active ones with ``include_revoked=False``."""
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._lock:
            rows = (
                self._connection()
                .execute(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_at, key_id")
                .fetchall()
            )
        return [self._record(row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (effective immediately, for every process); revoking again keeps the first time.

        Raises :class:`KeyError` when no key has this id.
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
                    (time.time(), str(key_id)),
                )
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (str(key_id),)
                ).fetchone()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if row is None:
            raise KeyError(f"no API key {key_id!r}")
        return self._record(row)

    def verify(self, token: str) -> Principal | None:
        """The principal for a token, or ``None`` when it is malformed, unknown, wrong or revoked.

        Never raises on bad input (any type, any length). Raises :class:`RuntimeError` after
        :meth:`close`, and lets SQLite errors (e.g. a vanished disk) propagate.
        """
        if not isinstance(token, str) or len(token) != _TOKEN_LEN:
            return None
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match["key_id"], match["secret"]
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT name, scopes, salt, secret_hash, revoked_at FROM api_keys WHERE key_id = ?",
                    (key_id,),
                )
                .fetchone()
            )
        if row is None:
            return None
        name, scopes, salt, stored_hash, revoked_at = row
        if not hmac.compare_digest(_hash_secret(bytes(salt), secret), str(stored_hash)):
            return None
        if revoked_at is not None:
            return None
        return Principal(
            subject=str(name),
            scopes=frozenset(Scope(s) for s in str(scopes).split()),
            via="api_key",
            key_id=key_id,
        )

    def close(self) -> None:
        """Close the database connection; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _jwt_scopes(claims: dict[str, Any]) -> frozenset[Scope] | None:
    """Scopes named by the ``scope`` (space-separated) and ``scopes`` (list) claims; ``None`` if invalid.

    Stricter than :func:`parse_scopes`: names must match exactly, and any unknown name refuses the token.
    """
    names: list[str] = []
    if "scope" in claims:
        scope = claims["scope"]
        if not isinstance(scope, str):
            return None
        names.extend(scope.split(" "))
    if "scopes" in claims:
        scope_list = claims["scopes"]
        if not isinstance(scope_list, list) or not all(isinstance(s, str) for s in scope_list):
            return None
        names.extend(scope_list)
    found: set[Scope] = set()
    for name in names:
        if name == "":
            continue
        try:
            found.add(Scope(name))
        except ValueError:
            return None
    return frozenset(found) if found else None


class JwtVerifier:
    """Verifies (and, for tests and operators, issues) HMAC-signed JWT bearer tokens. Thread-safe.

    Tokens must carry ``exp`` and ``sub``, plus ``aud``/``iss`` when an audience/issuer is configured.
    ``exp`` and ``iat`` must be finite numbers, ``iat`` not in the future (beyond ``leeway_s``), and
    with ``max_lifetime_s`` set (a day by default; None for no cap) ``exp`` may lie at most that far
    ahead (+ ``leeway_s``) and ``exp - iat`` may not exceed it.
    """

    __slots__ = ("_algorithms", "_audience", "_issuer", "_leeway_s", "_max_lifetime_s", "_secret")

    def __init__(
        self,
        secret: str,
        *,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 0.0,
        max_lifetime_s: float | None = 86400.0,
    ) -> None:
        if not isinstance(secret, str) or not secret:
            raise ValueError("JWT secret must be a non-empty string")
        if isinstance(algorithms, str):
            raise ValueError(f"JWT algorithms must be a sequence of names, not the string {algorithms!r}")
        algs = tuple(algorithms)
        if not algs:
            raise ValueError(f"no JWT algorithms given; choose from {', '.join(_HMAC_DIGEST_BYTES)}")
        for alg in algs:
            if alg not in _HMAC_DIGEST_BYTES:
                raise ValueError(
                    f"unsupported JWT algorithm {alg!r}; choose from {', '.join(_HMAC_DIGEST_BYTES)}"
                )
        min_bytes = max(_MIN_JWT_SECRET_BYTES, *(_HMAC_DIGEST_BYTES[a] for a in algs))
        secret_bytes = len(secret.encode("utf-8"))
        if secret_bytes < min_bytes:
            raise ValueError(
                f"JWT secret is {secret_bytes} bytes long; at least {min_bytes} bytes are required "
                f"for {', '.join(algs)}"
            )
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ValueError("JWT audience must be a non-empty string or None")
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ValueError("JWT issuer must be a non-empty string or None")
        leeway = float(leeway_s)
        if not math.isfinite(leeway) or leeway < 0:
            raise ValueError(f"JWT leeway_s must be a finite number >= 0, got {leeway_s!r}")
        self._secret = secret
        self._algorithms = algs
        self._audience = audience
        self._issuer = issuer
        self._leeway_s = leeway
        self._max_lifetime_s = _max_lifetime(max_lifetime_s)

    def __repr__(self) -> str:
        return (
            f"JwtVerifier(algorithms={list(self._algorithms)!r}, audience={self._audience!r}, "
            f"issuer={self._issuer!r}, leeway_s={self._leeway_s!r}, max_lifetime_s={self._max_lifetime_s!r})"
        )

    def verify(self, token: str) -> Principal | None:
        """The principal for a valid token; ``None`` for anything else (never raises on bad input)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_JWT_LEN:
            return None
        require = ["exp", "sub"]
        if self._audience is not None:
            require.append("aud")
        if self._issuer is not None:
            require.append("iss")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=list(self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": require, "enforce_minimum_key_length": True},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            return None
        if not self._within_lifetime(claims):
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            return None
        scopes = _jwt_scopes(claims)
        if scopes is None:
            return None
        return Principal(subject=subject, scopes=scopes, via="jwt", key_id=None)

    def _within_lifetime(self, claims: dict[str, Any]) -> bool:
        """``exp`` (and ``iat`` if present) numeric and finite, ``iat`` not ahead, the lifetime capped.

        PyJWT checks that ``exp`` has passed, not how far ahead it lies: a token valid until the
        year 10^22 is a password that never expires, whether an issuer erred or a leaked secret
        forged it. So ``exp`` may lie at most ``max_lifetime_s`` (+ leeway) ahead, and ``exp - iat``
        may not exceed ``max_lifetime_s`` when the token says when it was issued.
        """
        expires = _seconds(claims.get("exp"))
        if expires is None:
            return False
        issued: float | None = None
        if "iat" in claims:
            issued = _seconds(claims["iat"])
            if issued is None:
                return False
        now = time.time()
        if issued is not None and issued > now + self._leeway_s:
            return False
        limit = self._max_lifetime_s
        if limit is None:
            return True
        if expires - now > limit + self._leeway_s:
            return False
        return issued is None or expires - issued <= limit

    def issue(self, subject: str, scopes: Iterable[Scope | str], ttl_s: float = 3600.0) -> str:
        """Sign a token for ``subject`` with ``scopes``, valid for ``ttl_s`` seconds (rounded up).

        ``iat`` is the current whole second and ``exp`` lies ``ceil(ttl_s)`` after it, so a token
        this verifier issues always passes its own lifetime check; a ``ttl_s`` whose rounded-up
        value exceeds ``max_lifetime_s`` is a ``ValueError``. Uses the first configured algorithm
        and adds ``aud``/``iss`` when configured.
        """
        if not isinstance(subject, str) or not subject.strip():
            raise ValueError("JWT subject must be a non-empty string")
        scope_set = parse_scopes(scopes)
        ttl = float(ttl_s)
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"JWT ttl_s must be a finite number > 0, got {ttl_s!r}")
        if self._max_lifetime_s is not None and math.ceil(ttl) > self._max_lifetime_s:
            raise ValueError(
                f"JWT ttl_s {ttl_s!r} (rounded up to whole seconds) exceeds this verifier's "
                f"max_lifetime_s ({self._max_lifetime_s:g})"
            )
        now = time.time()
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(s.value for s in _ordered(scope_set)),
            "iat": int(now),
            "exp": int(now) + math.ceil(ttl),
        }
        if self._audience is not None:
            claims["aud"] = self._audience
        if self._issuer is not None:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm=self._algorithms[0])


def _max_lifetime(value: float | None) -> float | None:
    """``max_lifetime_s`` checked: a finite number of seconds > 0, or None (no cap)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"JWT max_lifetime_s must be a finite number > 0 or None, got {value!r}")
    return seconds


def _seconds(value: object) -> float | None:
    """A JWT NumericDate as seconds; None for anything else (strings, booleans, NaN, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None
