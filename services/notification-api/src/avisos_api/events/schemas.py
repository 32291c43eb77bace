"""The ``data`` schema of every built-in event type, and envelope validation.

The envelope is :class:`avisos_common.messages.InventoryEvent`; its ``data`` is checked
against the model registered for its ``type`` in :data:`DATA_MODELS`. Every model refuses
unknown fields, so a producer that drifts from the contract gets a clear error (422 over
HTTP, a dead-letter with the reason over AMQP) instead of silently wrong notifications.

:func:`json_schema` builds the document committed as docs/events.schema.json
(regenerate with ``python -m avisos_api.events.schemas > docs/events.schema.json``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from avisos_common.messages import InventoryEvent

Sku = Annotated[str, Field(min_length=1, max_length=100, examples=["LECHE-1L"])]
LocationCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Code of the store or warehouse the event concerns (rules target it)",
        examples=["MAD-01"],
    ),
]
ProductName = Annotated[str, Field(min_length=1, max_length=200)]
ProductCategory = Annotated[
    str | None, Field(default=None, max_length=64, description="Product category, e.g. dairy")
]
Quantity = Annotated[float, Field(ge=0)]
Money = Annotated[float, Field(ge=0)]


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StockLow(EventData):
    """Stock of a SKU at a location fell below its threshold (opens or updates an alert)."""

    sku: Sku
    product_name: ProductName
    location_code: LocationCode
    quantity: Quantity
    threshold: Quantity
    unit: str = Field(default="uds", max_length=16)
    category: ProductCategory = None


class StockOut(EventData):
    """A SKU has no stock left at a location (opens or updates an alert)."""

    sku: Sku
    product_name: ProductName
    location_code: LocationCode
    category: ProductCategory = None


class StockRestored(EventData):
    """Stock is back above the threshold: resolves the open alerts of the SKU there."""

    sku: Sku
    product_name: ProductName | None = None
    location_code: LocationCode
    quantity: Quantity
    unit: str = Field(default="uds", max_length=16)
    category: ProductCategory = None


class OrderReceived(EventData):
    order_id: str = Field(min_length=1, max_length=64, examples=["PO-2291"])
    supplier: str = Field(min_length=1, max_length=200)
    location_code: LocationCode
    lines: int = Field(ge=0, description="Order lines received")
    complete: bool = True


class OrderDelayed(EventData):
    order_id: str = Field(min_length=1, max_length=64, examples=["PO-2291"])
    supplier: str = Field(min_length=1, max_length=200)
    location_code: LocationCode
    expected_at: dt.datetime
    new_expected_at: dt.datetime | None = None
    reason: str | None = Field(default=None, max_length=500)


class TransferRequested(EventData):
    """Another location asks ``location_code`` to ship goods to ``to_location_code``."""

    transfer_id: str = Field(min_length=1, max_length=64)
    location_code: LocationCode
    to_location_code: LocationCode
    items: int = Field(ge=1)
    needed_by: dt.datetime | None = None


class TransferCompleted(EventData):
    """Goods from ``from_location_code`` arrived at ``location_code``."""

    transfer_id: str = Field(min_length=1, max_length=64)
    location_code: LocationCode
    from_location_code: LocationCode
    items: int = Field(ge=0)


class PriceChanged(EventData):
    sku: Sku
    product_name: ProductName
    location_code: LocationCode
    old_price: Money
    new_price: Money
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    effective_at: dt.datetime
    category: ProductCategory = None


class LotExpiring(EventData):
    """A lot must be pulled from the shelves soon (critical; opens an alert)."""

    sku: Sku
    product_name: ProductName
    location_code: LocationCode
    lot: str = Field(min_length=1, max_length=64)
    expires_on: dt.date
    quantity: Quantity
    category: ProductCategory = None


DATA_MODELS: dict[str, type[EventData]] = {
    "stock.low": StockLow,
    "stock.out": StockOut,
    "stock.restored": StockRestored,
    "order.received": OrderReceived,
    "order.delayed": OrderDelayed,
    "transfer.requested": TransferRequested,
    "transfer.completed": TransferCompleted,
    "price.changed": PriceChanged,
    "lot.expiring": LotExpiring,
}
EVENT_TYPES: tuple[str, ...] = tuple(DATA_MODELS)

#: Event types whose events open/update a stateful alert, by condition name.
ALERT_CONDITIONS: dict[str, str] = {
    "stock.low": "stock.low",
    "stock.out": "stock.out",
    "lot.expiring": "lot.expiring",
}
#: Event types that resolve the open alerts of their (sku, location_code).
RESOLVING_TYPES: frozenset[str] = frozenset({"stock.restored"})

EXAMPLES: dict[str, dict[str, Any]] = {
    "stock.low": {
        "sku": "LECHE-1L",
        "product_name": "Leche entera 1L",
        "location_code": "MAD-01",
        "quantity": 4,
        "threshold": 10,
        "category": "dairy",
    },
    "stock.out": {"sku": "LECHE-1L", "product_name": "Leche entera 1L", "location_code": "MAD-01"},
    "stock.restored": {
        "sku": "LECHE-1L",
        "product_name": "Leche entera 1L",
        "location_code": "MAD-01",
        "quantity": 48,
    },
    "order.received": {
        "order_id": "PO-2291",
        "supplier": "Lácteos del Norte",
        "location_code": "GET-WH",
        "lines": 12,
    },
    "order.delayed": {
        "order_id": "PO-2291",
        "supplier": "Lácteos del Norte",
        "location_code": "GET-WH",
        "expected_at": "2026-11-28T10:00:00+01:00",
        "new_expected_at": "2026-11-30T10:00:00+01:00",
        "reason": "Huelga de transporte",
    },
    "transfer.requested": {
        "transfer_id": "TR-551",
        "location_code": "MAD-02",
        "to_location_code": "MAD-01",
        "items": 24,
    },
    "transfer.completed": {
        "transfer_id": "TR-551",
        "location_code": "MAD-01",
        "from_location_code": "MAD-02",
        "items": 24,
    },
    "price.changed": {
        "sku": "CAFE-250",
        "product_name": "Café molido 250g",
        "location_code": "MAD-01",
        "old_price": 3.29,
        "new_price": 3.49,
        "effective_at": "2026-11-29T00:00:00+01:00",
    },
    "lot.expiring": {
        "sku": "YOG-NAT",
        "product_name": "Yogur natural",
        "location_code": "BCN-01",
        "lot": "L-77",
        "expires_on": "2026-11-29",
        "quantity": 36,
    },
}


class InvalidEvent(ValueError):
    """The event cannot be applied; ``reason`` says why in one line a producer can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ValidEvent:
    envelope: InventoryEvent
    data: EventData

    @property
    def location_code(self) -> str:
        code: str = getattr(self.data, "location_code", "")
        return code

    def data_json(self) -> dict[str, Any]:
        """``data`` as JSON-safe values, defaults filled in."""
        dumped: dict[str, Any] = self.data.model_dump(mode="json")
        return dumped


def _first_error(exc: ValidationError, prefix: str) -> str:
    errs = exc.errors()
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        where = f"{prefix}.{loc}" if prefix and loc else (loc or prefix)
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more


def parse_event(raw: Any) -> ValidEvent:
    """Validate an envelope (a dict, or JSON bytes/str) and its ``data`` for its type.

    Raises :class:`InvalidEvent` with a readable reason."""
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidEvent(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("the event must be a JSON object")
    try:
        env = InventoryEvent.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(_first_error(exc, "")) from None
    if env.time.tzinfo is None:
        # RFC 3339 requires an offset; a producer that omits it is taken to mean UTC.
        env = env.model_copy(update={"time": env.time.replace(tzinfo=dt.UTC)})
    model = DATA_MODELS.get(env.type)
    if model is None:
        raise InvalidEvent(
            f"unknown event type {env.type!r}; known types: {', '.join(EVENT_TYPES)}"
        )
    try:
        data = model.model_validate(env.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid data for {env.type}: {_first_error(exc, 'data')}") from None
    return ValidEvent(env, data)


# --- JSON Schema ------------------------------------------------------------------------


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=200,
        description="Unique per source; the same (source, id) is applied once",
    )
    source: str = Field(min_length=1, max_length=200, description="The producing system")
    time: dt.datetime = Field(description="When it happened (RFC 3339, with offset)")
    subject: str | None = Field(default=None, max_length=200)
    schema_version: Literal[1] = 1


def _typed_envelope(type_name: str, model: type[EventData]) -> type[BaseModel]:
    from pydantic import create_model

    return create_model(  # type: ignore[call-overload, no-any-return]
        "Event_" + type_name.replace(".", "_"),
        __base__=_Envelope,
        __doc__=model.__doc__ or f"A {type_name} event.",
        type=(Literal[type_name], Field(description="Also the AMQP routing key")),  # type: ignore[arg-type]
        data=(model, ...),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every accepted event (one branch per type, chosen by ``type``)."""
    envelopes = [_typed_envelope(t, m) for t, m in DATA_MODELS.items()]
    union: Any = Annotated[
        envelopes[0] if len(envelopes) == 1 else _union(envelopes),
        Field(discriminator="type"),
    ]
    schema: dict[str, Any] = TypeAdapter(union).json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://avisos.dev/schemas/events.schema.json"
    schema["title"] = "Avisos inventory event"
    schema["description"] = "The envelope inventory systems publish (see docs/events.md)."
    return schema


def _union(models: list[type[BaseModel]]) -> Any:
    from functools import reduce
    from operator import or_

    return reduce(or_, models)


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(json_schema_text())
