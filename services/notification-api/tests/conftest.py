"""Fixtures for the notification API tests: the real app (lifespan, relay and all) on the
run's own database, vhost and Redis prefix, driven in-process through httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from avisos_api.api.deps import AppState
from avisos_api.core.config import Settings
from avisos_api.main import create_app
from avisos_api.services import users
from avisos_testkit.infra import Backing

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def settings(backing: Backing) -> Settings:
    return Settings(
        env="test",
        database_url=backing.database_url,
        amqp_url=backing.amqp_url,
        redis_url=backing.redis_url,
        redis_prefix=backing.redis_prefix,
        relay_poll_secs=0.2,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def state(app: FastAPI) -> AppState:
    st: AppState = app.state.avisos
    return st


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5555)),
        base_url="http://testserver",
    )


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as c:
        yield c


@dataclass
class Person:
    id: uuid.UUID
    email: str
    client: httpx.AsyncClient


class People:
    """Creates users directly in the database and logs them in over HTTP."""

    def __init__(self, app: FastAPI, state: AppState) -> None:
        self.app = app
        self.state = state
        self._clients: list[httpx.AsyncClient] = []

    async def create(
        self,
        roles: list[str] | None = None,
        locations: list[str] | None = None,
        locale: str = "es",
        login: bool = True,
    ) -> Person:
        email = f"u-{uuid.uuid4().hex[:10]}@test.avisos"
        async with self.state.sessionmaker() as s:
            user = await users.create(
                s,
                email=email,
                display_name=email.split("@")[0],
                password=PASSWORD,
                roles=roles or ["staff"],
                location_codes=locations or [],
                locale=locale,
            )
            await s.commit()
        client = _client(self.app)
        self._clients.append(client)
        if login:
            await self.login(client, email)
        return Person(user.id, email, client)

    async def login(self, client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
        r = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    async def location(self, code: str | None = None) -> str:
        code = code or f"L{uuid.uuid4().hex[:8].upper()}"
        async with self.state.sessionmaker() as s:
            await users.create_location(s, code, f"Store {code}")
            await s.commit()
        return code

    async def close(self) -> None:
        for c in self._clients:
            await c.aclose()


@pytest.fixture
async def people(app: FastAPI, state: AppState) -> AsyncIterator[People]:
    p = People(app, state)
    yield p
    await p.close()
