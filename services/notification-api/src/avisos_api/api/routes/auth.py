"""Login, logout, the current user, and WebSocket tickets."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response, status

from avisos_api.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CacheDep,
    CurrentUser,
    PrincipalDep,
    SessionDep,
    SettingsDep,
)
from avisos_api.core import security
from avisos_api.exceptions import InvalidInput, Unauthenticated
from avisos_api.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChange,
    ProfileUpdate,
    TicketResponse,
    UserPublic,
)
from avisos_api.services import sessions, users

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/login", response_model=LoginResponse)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    db: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> LoginResponse:
    """Start a browser session: sets the HttpOnly session cookie and the CSRF cookie.

    Failed attempts are limited per account (``AVISOS_LOGIN_MAX_FAILURES`` per
    ``AVISOS_LOGIN_WINDOW_SECS``); past the limit the answer is 429 with Retry-After."""
    email = str(body.email).lower()
    await sessions.check_login_rate(
        cache, email, settings.login_max_failures, settings.login_window_secs
    )
    user = await users.by_email(db, email)
    # Verify against a dummy hash for unknown users: same time, no account enumeration.
    ok, needs_rehash = security.verify_password(
        user.password_hash if user else security.DUMMY_PASSWORD_HASH, body.password
    )
    if user is None or not ok or not user.is_active:
        await sessions.record_login_failure(cache, email, settings.login_window_secs)
        raise Unauthenticated("wrong email or password")
    if needs_rehash:
        user.password_hash = security.hash_password(body.password)
    await sessions.clear_login_failures(cache, email)
    client = request.client.host if request.client else None
    token, info = await sessions.start(
        db, cache, user, settings.session_ttl_secs, request.headers.get("user-agent"), client
    )
    secure = settings.secure_cookies
    max_age = settings.session_ttl_secs
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        info.csrf,
        max_age=max_age,
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )
    await db.refresh(user)
    return LoginResponse(
        user=UserPublic.model_validate(user), csrf_token=info.csrf, expires_at=info.expires_at
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    principal: PrincipalDep, response: Response, db: SessionDep, cache: CacheDep
) -> None:
    """End this session; the user's sockets on this session are closed."""
    if principal.session is None:
        raise Unauthenticated("no browser session")
    await sessions.revoke(db, cache, principal.session, reason="logout")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.patch("/me", response_model=UserPublic)
async def update_me(body: ProfileUpdate, user: CurrentUser, db: SessionDep) -> UserPublic:
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(user, name, value)
    await db.commit()
    await db.refresh(user)
    return UserPublic.model_validate(user)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: PasswordChange, user: CurrentUser, db: SessionDep) -> None:
    ok, _ = security.verify_password(user.password_hash, body.current_password)
    if not ok:
        raise InvalidInput("current password is wrong")
    user.password_hash = security.hash_password(body.new_password)
    await db.commit()


@router.post("/realtime/ticket", response_model=TicketResponse)
async def realtime_ticket(principal: PrincipalDep, settings: SettingsDep) -> TicketResponse:
    """A single-use ticket (valid ``AVISOS_TICKET_TTL_SECS``) to open the WebSocket:
    ``/ws?ticket=…``. Only browser sessions get one."""
    if principal.session is None or principal.user is None:
        raise Unauthenticated("tickets are for browser sessions")
    ticket = security.mint_ticket(
        settings.ticket_secret.get_secret_value(),
        principal.user.id,
        principal.session.sid,
        settings.ticket_ttl_secs,
        dt.datetime.now(dt.UTC),
    )
    return TicketResponse(ticket=ticket, expires_in=settings.ticket_ttl_secs)
