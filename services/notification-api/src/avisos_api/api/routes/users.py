"""User and location management (admins)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, status

from avisos_api.api.deps import AdminUser, CacheDep, CurrentUser, SessionDep
from avisos_api.core import security
from avisos_api.exceptions import InvalidInput
from avisos_api.models import Location
from avisos_api.schemas import (
    LocationCreate,
    LocationPublic,
    PasswordReset,
    UserCreate,
    UserPage,
    UserPublic,
    UserUpdate,
)
from avisos_api.services import sessions, users

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/admin/users", response_model=UserPage)
async def list_users(
    _: AdminUser,
    db: SessionDep,
    q: str | None = Query(default=None, max_length=200, description="email or name contains"),
    role: str | None = None,
    active: bool | None = None,
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=50, ge=1, le=200),
) -> UserPage:
    rows, total = await users.search(db, q, role, active, offset, limit)
    return UserPage(items=[UserPublic.model_validate(u) for u in rows], total=total)


@router.post("/admin/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, _: AdminUser, db: SessionDep) -> UserPublic:
    user = await users.create(
        db,
        email=str(body.email),
        display_name=body.display_name,
        password=body.password,
        roles=body.roles,
        location_codes=body.location_codes,
        locale=body.locale,
        timezone=body.timezone,
        phone=body.phone,
    )
    await db.commit()
    await db.refresh(user)
    return UserPublic.model_validate(user)


@router.get("/admin/users/{user_id}", response_model=UserPublic)
async def get_user(user_id: uuid.UUID, _: AdminUser, db: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await users.get(db, user_id))


@router.patch("/admin/users/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, admin: AdminUser, db: SessionDep, cache: CacheDep
) -> UserPublic:
    """Change roles, locations, profile or the active flag. Deactivating a user ends all
    their sessions at once and closes their sockets."""
    user = await users.get(db, user_id)
    changes = body.model_dump(exclude_unset=True)
    if user.id == admin.id and (
        changes.get("is_active") is False
        or ("roles" in changes and "admin" not in changes["roles"])
    ):
        raise InvalidInput("admins cannot deactivate or demote themselves")
    codes = changes.pop("location_codes", None)
    if codes is not None:
        user.locations = await users.locations_by_code(db, codes)
    for name, value in changes.items():
        setattr(user, name, value)
    if changes.get("is_active") is False:
        await sessions.revoke_all(db, cache, user.id, reason="deactivated")
    await db.commit()
    await sessions.forget_revoked(db, cache)
    await db.refresh(user)
    return UserPublic.model_validate(user)


@router.post("/admin/users/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(
    user_id: uuid.UUID, body: PasswordReset, _: AdminUser, db: SessionDep, cache: CacheDep
) -> None:
    """Set a new password; the user's sessions end."""
    user = await users.get(db, user_id)
    user.password_hash = security.hash_password(body.new_password)
    await sessions.revoke_all(db, cache, user.id, reason="password reset")
    await db.commit()
    await sessions.forget_revoked(db, cache)


@router.get("/locations", response_model=list[LocationPublic])
async def list_locations(_: CurrentUser, db: SessionDep) -> list[LocationPublic]:
    from sqlalchemy import select

    rows = await db.scalars(select(Location).order_by(Location.code))
    return [LocationPublic.model_validate(r) for r in rows]


@router.post("/admin/locations", response_model=LocationPublic, status_code=status.HTTP_201_CREATED)
async def create_location(body: LocationCreate, _: AdminUser, db: SessionDep) -> LocationPublic:
    loc = await users.create_location(db, body.code, body.name, body.kind, body.region)
    await db.commit()
    return LocationPublic.model_validate(loc)
