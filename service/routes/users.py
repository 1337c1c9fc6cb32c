"""Users: the admin manages them; everyone may see themselves."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import Principal, hash_password, validate_password
from service.db.models import ApiToken, User, utcnow
from service.deps import Service, db, get_service, principal, require

router = APIRouter(tags=["users"])
Role = Literal["admin", "analyst", "viewer"]


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: dt.datetime


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, username=user.username, role=user.role, disabled=user.disabled, created_at=user.created_at
    )


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(max_length=1024)
    role: Role = "viewer"

    @field_validator("password")
    @classmethod
    def _strong_enough(cls, value: str) -> str:
        validate_password(value)
        return value


class UserChange(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(None, max_length=1024)

    @field_validator("password")
    @classmethod
    def _strong_enough(cls, value: str | None) -> str | None:
        if value is not None:
            validate_password(value)
        return value


@router.get("/users/me", response_model=UserOut, summary="Who this token belongs to")
def me(who: Principal = Depends(principal), session: Session = Depends(db)) -> UserOut:
    user = session.get(User, who.user_id)
    assert user is not None
    return user_out(user)


@router.get("/users", response_model=list[UserOut], summary="Every user (admin)")
def list_users(_: Principal = Depends(require("admin")), session: Session = Depends(db)) -> list[UserOut]:
    return [user_out(u) for u in session.scalars(select(User).order_by(User.id))]


@router.post("/users", status_code=201, response_model=UserOut, summary="Add a user (admin)")
def add_user(body: NewUser, _: Principal = Depends(require("admin")), session: Session = Depends(db)) -> UserOut:
    user = User(username=body.username, password_hash=hash_password(body.password), role=body.role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(409, f"user {body.username!r} exists") from None
    return user_out(user)


@router.patch(
    "/users/{user_id}", response_model=UserOut, summary="Change a user's role, password or disabled flag (admin)"
)
def change_user(
    user_id: int,
    body: UserChange,
    who: Principal = Depends(require("admin")),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> UserOut:
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    if user.id == who.user_id and (body.disabled or (body.role is not None and body.role != "admin")):
        raise HTTPException(409, "an admin cannot disable or demote themselves (another admin can)")
    if body.role is not None:
        user.role = body.role
    if body.disabled is not None:
        user.disabled = body.disabled
    if body.password is not None:
        user.password_hash = hash_password(body.password)
        # a new password ends every session and API token of the old one: a leaked password may have made some
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    session.commit()
    assert service.tokens is not None
    service.tokens.clear()  # a role, a disabled flag or a password changes what its tokens may do
    return user_out(user)
