"""Dependencies for the routes, as ``Annotated`` aliases.

* ``SessionDep``: a database session for the request.
* ``CacheDep``, ``SettingsDep``, ``StateDep``.
* ``PrincipalDep``: who is calling: a browser session (cookie; CSRF checked on unsafe
  methods) or a publisher API key (``Authorization: Bearer avk_…``).
* ``CurrentUser``: a logged-in, active user (API keys are refused).
* ``AdminUser``: a logged-in admin.
* ``require_scope("events:publish")``: an API key with that scope, or an admin session.
* ``InternalCaller``: another Avisos service (``X-Avisos-Internal-Token``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from avisos_api.core import security
from avisos_api.core.cache import Cache
from avisos_api.core.config import Settings
from avisos_api.exceptions import CsrfFailed, PermissionDenied, Unauthenticated
from avisos_api.models import ApiKey, User
from avisos_api.services import api_keys, sessions

SESSION_COOKIE = "avisos_session"
CSRF_COOKIE = "avisos_csrf"
CSRF_HEADER = "X-CSRF-Token"
INTERNAL_TOKEN_HEADER = "X-Avisos-Internal-Token"  # noqa: S105 - a header name
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class AppState:
    """Everything the composition root (main.py) builds once per process."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: Cache
    extras: dict[str, Any] = field(default_factory=dict)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.avisos
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_cache(state: StateDep) -> Cache:
    return state.cache


async def get_db(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db)]
CacheDep = Annotated[Cache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass
class Principal:
    user: User | None = None
    api_key: ApiKey | None = None
    session: sessions.SessionInfo | None = None

    @property
    def key(self) -> str:
        """A stable identity for per-caller records (idempotency keys)."""
        if self.api_key is not None:
            return f"key:{self.api_key.id}"
        assert self.user is not None
        return f"user:{self.user.id}"

    def has_scope(self, scope: str) -> bool:
        if self.api_key is not None:
            return scope in self.api_key.scopes
        return self.user is not None and "admin" in self.user.roles


async def get_principal(request: Request, db: SessionDep, cache: CacheDep) -> Principal:
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthenticated("use 'Authorization: Bearer <api key>'")
        return Principal(api_key=await api_keys.authenticate(db, value.strip()))
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthenticated("log in first")
    info = await sessions.resolve(db, cache, token)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not security.constant_time_equals(sent, info.csrf):
            raise CsrfFailed(f"send the CSRF token from login in the {CSRF_HEADER} header")
    user = await db.get(User, info.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("account disabled")
    return Principal(user=user, session=info)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    if principal.user is None:
        raise PermissionDenied("this endpoint is for users, not API keys")
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> User:
    if "admin" not in user.roles:
        raise PermissionDenied("admins only")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """An API key with ``scope`` or an admin session."""

    async def dep(principal: PrincipalDep) -> Principal:
        if not principal.has_scope(scope):
            raise PermissionDenied(f"requires the {scope!r} scope")
        return principal

    return dep


async def get_internal_caller(request: Request, settings: SettingsDep) -> str:
    sent = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    if not sent or not security.constant_time_equals(
        sent, settings.internal_token.get_secret_value()
    ):
        raise Unauthenticated("internal endpoint")
    return "internal"


InternalCaller = Annotated[str, Depends(get_internal_caller)]


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
