"""Users and locations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.core import security
from avisos_api.exceptions import Conflict, InvalidInput, NotFound
from avisos_api.models import Location, User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def locations_by_code(session: AsyncSession, codes: Sequence[str]) -> list[Location]:
    if not codes:
        return []
    found = list(await session.scalars(select(Location).where(Location.code.in_(list(codes)))))
    unknown = set(codes) - {loc.code for loc in found}
    if unknown:
        raise InvalidInput(f"unknown locations: {sorted(unknown)}")
    return found


async def create(
    session: AsyncSession,
    *,
    email: str,
    display_name: str,
    password: str,
    roles: Sequence[str],
    location_codes: Sequence[str] = (),
    locale: str = "es",
    timezone: str = "Europe/Madrid",
    phone: str | None = None,
) -> User:
    email = email.strip().lower()
    if await by_email(session, email) is not None:
        raise Conflict("a user with this email already exists")
    user = User(
        email=email,
        display_name=display_name,
        password_hash=security.hash_password(password),
        roles=list(dict.fromkeys(roles)),
        locale=locale,
        timezone=timezone,
        phone=phone,
        is_active=True,
        notification_seq=0,
    )
    user.locations = await locations_by_code(session, location_codes)
    session.add(user)
    await session.flush()
    return user


async def search(
    session: AsyncSession,
    q: str | None,
    role: str | None,
    active: bool | None,
    offset: int,
    limit: int,
) -> tuple[list[User], int]:
    stmt = select(User)
    if q:
        pattern = f"%{q.lower()}%"
        stmt = stmt.where(or_(User.email.ilike(pattern), User.display_name.ilike(pattern)))
    if role:
        stmt = stmt.where(User.roles.contains([role]))
    if active is not None:
        stmt = stmt.where(User.is_active.is_(active))
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(User.display_name, User.id).offset(offset).limit(limit)
    )
    return list(rows), int(total)


async def create_location(
    session: AsyncSession, code: str, name: str, kind: str = "store", region: str | None = None
) -> Location:
    if await session.scalar(select(Location).where(Location.code == code)) is not None:
        raise Conflict(f"location {code} already exists")
    loc = Location(code=code, name=name, kind=kind, region=region)
    session.add(loc)
    await session.flush()
    return loc
