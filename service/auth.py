"""Who is calling, and what they may do.

Passwords are argon2id hashes. Tokens are random strings shown once; the database holds only their
SHA-256, so a leaked database opens nothing. Only a login (a person's session) makes API tokens,
each with at most that session's scopes and for at most ``api.max_token_days``. A token carries
scopes, capped by its user's role:

    viewer   read                  (everything GET)
    analyst  read, write           (upload, delete media; acknowledge events)
    admin    read, write, admin    (users)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiToken, User, utcnow

SCOPES = ("read", "write", "admin")
ROLE_SCOPES = {"viewer": ("read",), "analyst": ("read", "write"), "admin": ("read", "write", "admin")}
TOKEN_PREFIX = "dfs_"

_hasher = PasswordHasher()
# verifying against this when the user does not exist takes as long as a real check: the answer's
# timing does not tell which usernames exist
_DUMMY_HASH = _hasher.hash("dfstream: no such user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def validate_password(password: str) -> None:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")


def new_token() -> tuple[str, str]:
    """(the token to hand out once, the digest to store)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, user: User, kind: str, scopes: list[str], expires_at: dt.datetime | None, name: str = ""
) -> tuple[str, ApiToken]:
    check_role_scopes(user.role, set(scopes))
    token, digest = new_token()
    row = ApiToken(user_id=user.id, kind=kind, name=name, token_hash=digest, scopes=list(scopes), expires_at=expires_at)
    session.add(row)
    session.flush()
    return token, row


def check_role_scopes(role: str, scopes: set[str]) -> None:
    """403 unless every scope is one the role may hold."""
    allowed = set(ROLE_SCOPES[role])
    if not scopes <= allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {role} cannot hold scopes {sorted(scopes - allowed)}")


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: str
    scopes: frozenset[str]
    token_id: int
    kind: str  # login (a person's session) or api (a script's token)


def bearer(request: Request, in_url: bool = False) -> tuple[str | None, bool]:
    """(the token of ``Authorization: Bearer ...``, False) or, where ``in_url`` allows it (GET routes a
    browser loads without headers), (the token of ``?access_token=``, True). A token in the URL of
    any other route is refused, not ignored: the caller learns it leaked it for nothing."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip(), False
    in_query = request.query_params.get("access_token")
    if in_query is None:
        return None, False
    if not in_url or request.method not in ("GET", "HEAD"):
        raise unauthorized(
            "?access_token= is taken only by the feed, live views and images; send 'Authorization: Bearer'"
        )
    return in_query or None, True


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def resolve(session: Session, token: str | None) -> tuple[Principal, dt.datetime | None]:
    """Who the token speaks for, and until when; 401 for a missing, unknown, revoked or expired
    token or a disabled user."""
    if not token:
        raise unauthorized("no token: log in at POST /api/v1/auth/token and send 'Authorization: Bearer <token>'")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None:
        raise unauthorized("unknown token")
    now = utcnow()
    if row.revoked_at is not None:
        raise unauthorized("the token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise unauthorized("the token has expired: log in again")
    user = row.user
    if user.disabled:
        raise unauthorized(f"user {user.username} is disabled")
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):  # not a write per request
        row.last_used_at = now
        session.commit()
    scopes = frozenset(row.scopes) & frozenset(ROLE_SCOPES[user.role])  # a role lowered later caps old tokens
    return Principal(user.id, user.username, user.role, scopes, row.id, row.kind), row.expires_at


class TokenCache:
    """Resolved tokens for ``ttl_s``: a request then needs no database lookup (measured in process:
    GET /events 7.7 → 6.7 ms). Revoking a token or changing a user clears it, so in this process that takes
    effect at once; another process sharing the database sees it within ``ttl_s``."""

    def __init__(self, ttl_s: float = 2.0, size: int = 10_000):
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, tuple[Principal, dt.datetime | None, float]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token_digest(token))
        if entry is None:
            return None
        who, expires_at, cached_at = entry
        if time.monotonic() - cached_at > self.ttl_s or (expires_at is not None and expires_at <= utcnow()):
            return None
        return who

    def put(self, token: str, who: Principal, expires_at: dt.datetime | None) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[token_digest(token)] = (who, expires_at, time.monotonic())

    def clear(self) -> None:
        self._entries.clear()


class LoginLimiter:
    """Login attempts, recorded *before* the password is checked (so a burst of concurrent guesses
    cannot all pass before the first failure counts), per client address and per username:

    - an address with ``failures`` failed attempts within ``window_s`` is refused (429) until the
      oldest leaves the window: that is the guesser's own address;
    - a username past ``failures`` is never refused -- a stranger could lock its owner out that way
      -- but each further attempt on it waits ``base_delay_s``, doubling, up to ``max_delay_s``.

    At most ``keys`` usernames and addresses are remembered, the least recently seen forgotten first."""

    def __init__(self, failures: int, window_s: float, max_delay_s: float = 10.0, keys: int = 100_000):
        self.failures, self.window_s, self.max_delay_s, self.keys = failures, window_s, max_delay_s, keys
        self.base_delay_s = 0.5
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque(maxlen=4 * self.failures)
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
        self._seen.move_to_end(key)
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def enter(self, address: str, username: str) -> float:
        """Count an attempt now. Seconds it must wait before its password is checked; raises 429 when
        the address has failed too often. Call ``succeeded`` if the password was right."""
        now = time.monotonic()
        by_address = self._recent(f"addr:{address}", now)
        if len(by_address) >= self.failures:
            wait = self.window_s - (now - by_address[0])
            raise HTTPException(
                429,
                f"too many failed logins from this address; try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        by_user = self._recent(f"user:{username.lower()}", now)
        by_address.append(now)
        by_user.append(now)
        excess = len(by_user) - self.failures
        return 0.0 if excess <= 0 else min(self.max_delay_s, self.base_delay_s * 2 ** (excess - 1))

    def succeeded(self, address: str, username: str) -> None:
        """The password was right: this attempt does not count against the address, and the
        username starts afresh."""
        self._seen.pop(f"user:{username.lower()}", None)
        times = self._seen.get(f"addr:{address}")
        if times:
            times.pop()
