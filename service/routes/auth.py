"""Logging in (OAuth2 password flow) and API tokens for scripts."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import ROLE_SCOPES, Principal, check_password, check_role_scopes, issue_token
from service.db.models import ApiToken, User, utcnow
from service.deps import Service, db, get_service, principal

router = APIRouter(tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime | None
    scopes: list[str]


@router.post(
    "/auth/token", response_model=TokenOut, summary="Log in: username and password (form fields) for a bearer token"
)
async def login(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], service: Service = Depends(get_service)
) -> TokenOut:
    limiter = service.limiter
    assert limiter is not None
    client = request.client.host if request.client else "unknown"  # the proxy's X-Forwarded-For if trusted
    delay = limiter.enter(client, form.username)  # counted before the password is checked: no race
    if delay > 0:
        await asyncio.sleep(delay)  # a username under attack is slowed, never locked
    limit = service.config.login_limit
    if service.login_waiting >= limit.waiting + limit.concurrent:
        raise HTTPException(503, "too many logins at once; try again in a moment", headers={"Retry-After": "2"})

    def attempt() -> TokenOut | None:
        with service.sessions() as session:
            user = session.scalar(select(User).where(User.username == form.username))
            if not check_password(user, form.password) or user is None or user.disabled:
                return None
            expires = utcnow() + dt.timedelta(hours=service.config.token_ttl_hours)
            scopes = list(ROLE_SCOPES[user.role])
            token, _ = issue_token(session, user, "login", scopes, expires)
            session.commit()
            return TokenOut(access_token=token, expires_at=expires, scopes=scopes)

    service.login_waiting += 1
    try:
        async with service.login_slots:  # argon2: 64 MiB and tens of ms of CPU each, a few at a time
            answer = await asyncio.get_running_loop().run_in_executor(service.login_pool, attempt)
    finally:
        service.login_waiting -= 1
    if answer is None:
        raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    limiter.succeeded(client, form.username)
    return answer


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "write", "admin"]] = Field(default_factory=lambda: ["read"], min_length=1)
    # None: api.max_token_days, which is also the most it may ask for: no token lives for ever
    expires_days: float | None = Field(None, gt=0, le=3650)


class TokenInfo(BaseModel):
    id: int
    name: str
    kind: str
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        kind=row.kind,
        scopes=row.scopes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenOut,
    summary="Make an API token (shown once) with some of your scopes",
)
def create_token(
    body: NewToken,
    who: Principal = Depends(principal),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> TokenOut:
    """Only a person logged in (a login token) makes tokens, and never with more than that session
    holds: a read-only token handed to a dashboard cannot mint itself an admin one."""
    if who.kind != "login":
        raise HTTPException(403, "an API token cannot make tokens: log in (POST /api/v1/auth/token) to make one")
    wanted = set(body.scopes)
    check_role_scopes(who.role, wanted)
    if not wanted <= who.scopes:
        raise HTTPException(
            403, f"this session holds {sorted(who.scopes)}: it cannot grant {sorted(wanted - who.scopes)}"
        )
    limit = service.config.max_token_days
    if body.expires_days is not None and body.expires_days > limit:
        raise HTTPException(422, f"expires_days: at most {limit:g} (api.max_token_days)")
    user = session.get(User, who.user_id)
    assert user is not None
    expires = utcnow() + dt.timedelta(days=body.expires_days or limit)
    token, _ = issue_token(session, user, "api", sorted(wanted), expires, body.name)
    session.commit()
    return TokenOut(access_token=token, expires_at=expires, scopes=sorted(wanted))


@router.get("/tokens", response_model=list[TokenInfo], summary="Your API tokens (never their secret)")
def list_tokens(who: Principal = Depends(principal), session: Session = Depends(db)) -> list[TokenInfo]:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.user_id == who.user_id, ApiToken.kind == "api").order_by(ApiToken.id)
    )
    return [_info(row) for row in rows]


@router.get(
    "/auth/sessions",
    response_model=list[TokenInfo],
    summary="Your logins that are still valid (revoke one with DELETE /tokens/{id})",
)
def list_sessions(who: Principal = Depends(principal), session: Session = Depends(db)) -> list[TokenInfo]:
    rows = session.scalars(
        select(ApiToken)
        .where(
            ApiToken.user_id == who.user_id,
            ApiToken.kind == "login",
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > utcnow(),
        )
        .order_by(ApiToken.id)
    )
    return [_info(row) for row in rows]


@router.post("/auth/logout", response_model=TokenInfo, summary="End this session: the token that calls is revoked")
def logout(
    who: Principal = Depends(principal), session: Session = Depends(db), service: Service = Depends(get_service)
) -> TokenInfo:
    row = session.get(ApiToken, who.token_id)
    assert row is not None
    return _revoke(row, session, service)


@router.delete("/tokens/{token_id}", response_model=TokenInfo, summary="Revoke a token (yours; an admin: anyone's)")
def revoke_token(
    token_id: int,
    who: Principal = Depends(principal),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> TokenInfo:
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != who.user_id and "admin" not in who.scopes):
        raise HTTPException(404, f"no token {token_id}")
    return _revoke(row, session, service)


def _revoke(row: ApiToken, session: Session, service: Service) -> TokenInfo:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
        assert service.tokens is not None
        service.tokens.clear()
    return _info(row)
