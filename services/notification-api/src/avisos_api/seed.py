"""Demo data for ``make run``: stores, a warehouse, people in every role, notifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.services import notifications as svc
from avisos_api.services import users
from avisos_common.messages import Priority

DEMO_PASSWORD = "avisos-demo-2026"  # noqa: S105 - demo data, printed by make run
DEMO_ADMIN_EMAIL = "admin@avisos.demo"

LOCATIONS = [
    ("MAD-01", "Madrid Centro", "store", "centro"),
    ("MAD-02", "Madrid Norte", "store", "centro"),
    ("BCN-01", "Barcelona Diagonal", "store", "noreste"),
    ("GET-WH", "Almacén Getafe", "warehouse", "centro"),
]

PEOPLE = [
    (
        DEMO_ADMIN_EMAIL,
        "Ana Admin",
        ["admin", "manager"],
        ["MAD-01", "MAD-02", "BCN-01", "GET-WH"],
        "es",
    ),
    ("lucia@avisos.demo", "Lucía Gerente", ["manager"], ["MAD-01"], "es"),
    ("marco@avisos.demo", "Marco Staff", ["staff"], ["MAD-01"], "es"),
    ("jordi@avisos.demo", "Jordi Manager", ["manager"], ["BCN-01"], "es"),
    ("emma@avisos.demo", "Emma Staff", ["staff"], ["BCN-01"], "en"),
    ("pablo@avisos.demo", "Pablo Almacén", ["staff"], ["GET-WH"], "es"),
]

SAMPLES = [
    (
        "stock.out",
        "inventory",
        "high",
        "Agotado: Leche entera 1L en Madrid Centro",
        "SKU LECHE-1L sin existencias en MAD-01.",
        ["MAD-01"],
    ),
    (
        "stock.low",
        "inventory",
        "normal",
        "Stock bajo: Aceite de oliva 750ml",
        "Quedan 4 unidades (umbral 10) en MAD-01.",
        ["MAD-01"],
    ),
    (
        "order.delayed",
        "orders",
        "high",
        "Pedido PO-2291 retrasado",
        "El proveedor ha retrasado la entrega 2 días.",
        ["GET-WH"],
    ),
    (
        "lot.expiring",
        "expiry",
        "critical",
        "Lote L-77 caduca mañana",
        "Retire el lote L-77 de yogur natural antes del cierre.",
        ["BCN-01"],
    ),
    (
        "price.changed",
        "pricing",
        "low",
        "Cambio de precio: Café molido 250g",
        "Nuevo precio 3,49 € desde mañana.",
        ["MAD-01", "BCN-01"],
    ),
]


@dataclass(frozen=True)
class SeedResult:
    created_users: int
    admin_email: str
    password: str


async def seed_demo(session: AsyncSession) -> SeedResult:
    """Idempotent: existing locations and users are left as they are."""
    created = 0
    for code, name, kind, region in LOCATIONS:
        try:
            async with session.begin_nested():
                await users.create_location(session, code, name, kind, region)
        except Exception:  # noqa: S112 - already there
            continue
    for email, name, roles, codes, locale in PEOPLE:
        if await users.by_email(session, email) is None:
            await users.create(
                session,
                email=email,
                display_name=name,
                password=DEMO_PASSWORD,
                roles=roles,
                location_codes=codes,
                locale=locale,
            )
            created += 1
    if created:
        for type_, category, priority, subject, message, codes in SAMPLES:
            recipients = await svc.resolve_recipients(session, location_codes=codes)
            await svc.create(
                session,
                svc.NotificationSpec(
                    type=type_,
                    category=category,
                    subject=subject,
                    message=message,
                    priority=cast(Priority, priority),
                ),
                recipients,
            )
    await session.commit()
    return SeedResult(created, DEMO_ADMIN_EMAIL, DEMO_PASSWORD)
