"""Publisher API keys: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import httpx
from sqlalchemy import select, text

from avisos_api.api.deps import AppState
from avisos_api.models import ApiKey

from .conftest import People


async def _key(admin_client: httpx.AsyncClient, scopes: list[str]) -> dict[str, str]:
    r = await admin_client.post("/v1/admin/api-keys", json={"name": "erp", "scopes": scopes})
    assert r.status_code == 201, r.text
    body: dict[str, str] = r.json()
    return body


async def test_key_is_shown_once_and_stored_hashed(people: People, state: AppState) -> None:
    admin = await people.create(roles=["admin"])
    created = await _key(admin.client, ["notifications:write"])
    assert created["key"].startswith(f"avk_{created['prefix']}_")
    listed = (await admin.client.get("/v1/admin/api-keys")).json()
    assert all("key" not in k for k in listed)
    async with state.sessionmaker() as s:
        rows = (await s.execute(text("SELECT * FROM api_keys"))).all()
    assert created["key"] not in " ".join(str(v) for row in rows for v in row)


async def test_scope_revocation_and_last_used(
    people: People, anon: httpx.AsyncClient, state: AppState
) -> None:
    admin = await people.create(roles=["admin"])
    target = await people.create()
    body = {
        "user_ids": [str(target.id)],
        "type": "t",
        "category": "c",
        "subject": "s",
        "message": "m",
    }
    writer = await _key(admin.client, ["notifications:write"])
    reader = await _key(admin.client, ["reports:read"])

    r = await anon.post(
        "/v1/notifications", json=body, headers={"Authorization": f"Bearer {reader['key']}"}
    )
    assert r.status_code == 403 and "notifications:write" in r.json()["detail"]

    r = await anon.post(
        "/v1/notifications", json=body, headers={"Authorization": f"Bearer {writer['key']}"}
    )
    assert r.status_code == 201
    async with state.sessionmaker() as s:
        used = await s.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == writer["prefix"]))
    assert used is not None

    # Keys cannot act as users.
    r = await anon.get("/v1/notifications", headers={"Authorization": f"Bearer {writer['key']}"})
    assert r.status_code == 403

    assert (
        await admin.client.post(f"/v1/admin/api-keys/{writer['prefix']}/revoke")
    ).status_code == 200
    r = await anon.post(
        "/v1/notifications", json=body, headers={"Authorization": f"Bearer {writer['key']}"}
    )
    assert r.status_code == 401 and "revoked" in r.json()["detail"]

    tampered = writer["key"][:-2] + ("aa" if not writer["key"].endswith("aa") else "bb")
    r = await anon.post(
        "/v1/notifications", json=body, headers={"Authorization": f"Bearer {tampered}"}
    )
    assert r.status_code == 401
    r = await anon.post("/v1/notifications", json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
