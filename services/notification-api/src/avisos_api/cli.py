"""``avisos-admin``: operator commands.

avisos-admin migrate                      apply database migrations
avisos-admin create-admin EMAIL [--name N] (password from AVISOS_ADMIN_PASSWORD or prompt)
avisos-admin create-api-key NAME --scope events:publish [--scope ...]
avisos-admin list-api-keys
avisos-admin revoke-api-key PREFIX_OR_ID
avisos-admin seed-demo                    demo stores, users and notifications
avisos-admin vapid-keys                   new VAPID key pair for Web Push
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.core.config import get_settings
from avisos_api.core.db import make_engine, make_sessionmaker
from avisos_api.core.security import SCOPES
from avisos_api.exceptions import AvisosError

T = TypeVar("T")


async def _with_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    engine = make_engine(get_settings().sqlalchemy_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            return await fn(session)
    finally:
        await engine.dispose()


def cmd_migrate(_: argparse.Namespace) -> None:
    from avisos_api.migrations.runner import upgrade

    upgrade(get_settings().asyncpg_dsn)
    print("database is at the latest migration")


def cmd_create_admin(args: argparse.Namespace) -> None:
    from avisos_api.services import users

    password = os.environ.get("AVISOS_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    if len(password) < 10:
        raise SystemExit("password must have at least 10 characters")

    async def run(session: AsyncSession) -> None:
        user = await users.create(
            session,
            email=args.email,
            display_name=args.name or args.email.split("@")[0],
            password=password,
            roles=["admin"],
        )
        await session.commit()
        print(f"admin created: {user.email} ({user.id})")

    asyncio.run(_with_session(run))


def cmd_create_api_key(args: argparse.Namespace) -> None:
    from avisos_api.services import api_keys

    async def run(session: AsyncSession) -> None:
        row, plaintext = await api_keys.create(session, args.name, args.scope, None)
        await session.commit()
        print(f"API key {row.prefix} ({', '.join(row.scopes)}). Shown once, store it now:")
        print(plaintext)

    asyncio.run(_with_session(run))


def cmd_list_api_keys(_: argparse.Namespace) -> None:
    from avisos_api.services import api_keys

    async def run(session: AsyncSession) -> None:
        for k in await api_keys.list_all(session):
            state = "revoked" if k.revoked_at else "active"
            scopes = ",".join(k.scopes)
            print(f"{k.prefix}  {state:8} {scopes:40} {k.name}  last used {k.last_used_at}")

    asyncio.run(_with_session(run))


def cmd_revoke_api_key(args: argparse.Namespace) -> None:
    from avisos_api.services import api_keys

    async def run(session: AsyncSession) -> None:
        row = await api_keys.revoke(session, args.key)
        await session.commit()
        print(f"revoked {row.prefix} ({row.name})")

    asyncio.run(_with_session(run))


def cmd_seed_demo(_: argparse.Namespace) -> None:
    from avisos_api.seed import seed_demo

    result = asyncio.run(_with_session(seed_demo))
    print(
        f"demo data ready ({result.created_users} users created); "
        f"admin: {result.admin_email} / {result.password}"
    )


def vapid_keypair() -> tuple[str, str]:
    """A new P-256 key pair: (private key, public key) as unpadded base64url, the form
    browsers (applicationServerKey) and pywebpush expect."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return b64(private), b64(public)


def cmd_vapid_keys(_: argparse.Namespace) -> None:
    private, public = vapid_keypair()
    print("# Keep the private key secret (dispatcher); the public key goes to the web app.")
    print(f"AVISOS_VAPID_PRIVATE_KEY={private}")
    print(f"AVISOS_VAPID_PUBLIC_KEY={public}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="avisos-admin", description="Avisos operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    p = sub.add_parser("create-admin", help="create an admin user")
    p.add_argument("email")
    p.add_argument("--name")
    p.set_defaults(fn=cmd_create_admin)
    p = sub.add_parser("create-api-key", help="create a publisher API key (shown once)")
    p.add_argument("name")
    p.add_argument("--scope", action="append", required=True, choices=SCOPES)
    p.set_defaults(fn=cmd_create_api_key)
    sub.add_parser("list-api-keys").set_defaults(fn=cmd_list_api_keys)
    p = sub.add_parser("revoke-api-key", help="revoke a key by prefix or id")
    p.add_argument("key")
    p.set_defaults(fn=cmd_revoke_api_key)
    sub.add_parser("seed-demo", help="load demo data").set_defaults(fn=cmd_seed_demo)
    sub.add_parser("vapid-keys", help="generate a VAPID key pair").set_defaults(fn=cmd_vapid_keys)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except AvisosError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
