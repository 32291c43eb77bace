"""Login, sessions, CSRF, brute force, deactivation, stored secrets."""

from __future__ import annotations

import httpx
from argon2 import PasswordHasher
from sqlalchemy import select, text, update

from avisos_api.api.deps import AppState
from avisos_api.models import Session, User

from .conftest import PASSWORD, People


async def test_login_sets_httponly_session_and_csrf_cookie(
    people: People, anon: httpx.AsyncClient
) -> None:
    p = await people.create(login=False)
    r = await anon.post("/v1/auth/login", json={"email": p.email.upper(), "password": PASSWORD})
    assert r.status_code == 200
    cookies = r.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("avisos_session="))
    csrf_cookie = next(c for c in cookies if c.startswith("avisos_csrf="))
    assert "HttpOnly" in session_cookie and "samesite=lax" in session_cookie.lower()
    assert "HttpOnly" not in csrf_cookie
    body = r.json()
    assert body["user"]["email"] == p.email and "password_hash" not in body["user"]
    me = await anon.get("/v1/me")
    assert me.status_code == 200 and me.json()["id"] == str(p.id)


async def test_wrong_password_is_problem_json(people: People, anon: httpx.AsyncClient) -> None:
    p = await people.create(login=False)
    r = await anon.post("/v1/auth/login", json={"email": p.email, "password": "nope"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 401 and problem["title"] and problem["detail"]
    assert problem["type"].startswith("https://")
    assert r.headers["x-request-id"] == problem["request_id"]


async def test_brute_force_gets_429(people: People, anon: httpx.AsyncClient) -> None:
    p = await people.create(login=False)
    codes = [
        (
            await anon.post("/v1/auth/login", json={"email": p.email, "password": f"bad{i}"})
        ).status_code
        for i in range(5)
    ]
    assert codes == [401] * 5
    r = await anon.post("/v1/auth/login", json={"email": p.email, "password": PASSWORD})
    assert r.status_code == 429  # even the right password waits out the window
    assert int(r.headers["retry-after"]) > 0


async def test_unauthenticated_and_forged_sessions(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/v1/notifications")).status_code == 401
    anon.cookies.set("avisos_session", "forged-token-value")
    r = await anon.get("/v1/notifications")
    assert r.status_code == 401 and r.json()["status"] == 401


async def test_expired_session_is_refused(people: People, state: AppState) -> None:
    p = await people.create()
    async with state.sessionmaker() as s:
        await s.execute(
            update(Session)
            .where(Session.user_id == p.id)
            .values(expires_at=text("now() - interval '1 minute'"))
        )
        await s.commit()
    await state.cache.client.delete(
        *[k async for k in state.cache.client.scan_iter(match=state.cache.session_key("*"))]
    )
    assert (await p.client.get("/v1/me")).status_code == 401


async def test_state_change_needs_csrf_token(people: People) -> None:
    p = await people.create()
    token = p.client.headers.pop("X-CSRF-Token")
    r = await p.client.post("/v1/notifications/read-all")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = await p.client.post("/v1/notifications/read-all", headers={"X-CSRF-Token": token + "x"})
    assert r.status_code == 403
    r = await p.client.post("/v1/notifications/read-all", headers={"X-CSRF-Token": token})
    assert r.status_code == 200


async def test_logout_ends_the_session(people: People) -> None:
    p = await people.create()
    cookie = p.client.cookies.get("avisos_session")
    assert (await p.client.post("/v1/auth/logout")).status_code == 204
    p.client.cookies.set("avisos_session", cookie or "")
    assert (await p.client.get("/v1/me")).status_code == 401


async def test_deactivating_a_user_ends_their_sessions(people: People) -> None:
    admin = await people.create(roles=["admin"])
    staff = await people.create()
    assert (await staff.client.get("/v1/me")).status_code == 200
    r = await admin.client.patch(f"/v1/admin/users/{staff.id}", json={"is_active": False})
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert (await staff.client.get("/v1/me")).status_code == 401
    again = await staff.client.post(
        "/v1/auth/login", json={"email": staff.email, "password": PASSWORD}
    )
    assert again.status_code == 401


async def test_password_rehashed_on_login_when_parameters_change(
    people: People, state: AppState, anon: httpx.AsyncClient
) -> None:
    p = await people.create(login=False)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with state.sessionmaker() as s:
        await s.execute(update(User).where(User.id == p.id).values(password_hash=weak))
        await s.commit()
    r = await anon.post("/v1/auth/login", json={"email": p.email, "password": PASSWORD})
    assert r.status_code == 200
    async with state.sessionmaker() as s:
        stored = await s.scalar(select(User.password_hash).where(User.id == p.id))
    assert stored != weak and "m=19456,t=2,p=1" in (stored or "")


async def test_database_holds_no_plaintext_password_or_session(
    people: People, state: AppState
) -> None:
    p = await people.create()
    token = p.client.cookies.get("avisos_session")
    async with state.sessionmaker() as s:
        dump = " ".join(
            str(v) for row in (await s.execute(text("SELECT * FROM users"))).all() for v in row
        ) + " ".join(
            str(v) for row in (await s.execute(text("SELECT * FROM sessions"))).all() for v in row
        )
    assert PASSWORD not in dump and token and token not in dump


async def test_mass_assignment_rejected(people: People) -> None:
    p = await people.create()
    r = await p.client.patch("/v1/me", json={"roles": ["admin"]})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert (await p.client.get("/v1/me")).json()["roles"] == ["staff"]
    r = await p.client.patch("/v1/me", json={"locale": "en", "timezone": "America/Mexico_City"})
    assert r.status_code == 200 and r.json()["locale"] == "en"
    assert (await p.client.patch("/v1/me", json={"phone": "600111222"})).status_code == 422
    assert (await p.client.patch("/v1/me", json={"timezone": "Mars/Base"})).status_code == 422


async def test_only_admins_manage_users(people: People) -> None:
    staff = await people.create()
    assert (await staff.client.get("/v1/admin/users")).status_code == 403
    admin = await people.create(roles=["admin"])
    code = await people.location()
    r = await admin.client.post(
        "/v1/admin/users",
        json={
            "email": "New.Person@Test.Avisos",
            "display_name": "New",
            "password": "a-long-password",
            "roles": ["manager"],
            "location_codes": [code],
            "locale": "en",
            "phone": "+34600111222",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "new.person@test.avisos"
    assert r.json()["locations"][0]["code"] == code
    dup = await admin.client.post(
        "/v1/admin/users",
        json={
            "email": "new.person@test.avisos",
            "display_name": "Dup",
            "password": "a-long-password",
        },
    )
    assert dup.status_code == 409
    found = await admin.client.get("/v1/admin/users", params={"q": "new.person"})
    assert found.json()["total"] == 1


async def test_realtime_ticket_for_sessions_only(people: People) -> None:
    p = await people.create()
    r = await p.client.post("/v1/realtime/ticket")
    assert r.status_code == 200 and r.json()["expires_in"] == 30
    assert r.json()["ticket"].count(".") == 2


async def test_admin_system_status(people: People, state: AppState) -> None:
    import json

    staff = await people.create()
    assert (await staff.client.get("/v1/admin/system")).status_code == 403
    admin = await people.create(roles=["admin"])
    key = state.cache.key("presence", "gateway", "gw-test-1")
    await state.cache.client.set(
        key, json.dumps({"instance": "gw-test-1", "users": 3, "connections": 4}), ex=30
    )
    try:
        body = (await admin.client.get("/v1/admin/system")).json()
    finally:
        await state.cache.client.delete(key)
    assert body["services"]["notification-api"]["status"] == "ok"
    assert body["queues"]["avisos.dispatch.email.urgent"]["messages"] >= 0
    assert "avisos.dead-letters" in body["queues"]
    assert body["connected_users"] == 3
    assert body["connections"] == 4
