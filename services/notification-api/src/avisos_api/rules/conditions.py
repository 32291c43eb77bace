"""The condition language of rules: a list of ``{field, op, value}``, all of which must hold.

Deliberately tiny and data-only (no eval, no expressions): ``field`` is a dotted path into
the event's ``data`` (``quantity``, ``category``), ``op`` one of :data:`OPS`. A condition on a
missing field, or comparing values of incompatible types, is simply false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Op = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains"]
OPS: tuple[str, ...] = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains")
Scalar = str | int | float | bool | None
MAX_CONDITIONS = 20

_MISSING = object()


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(
        min_length=1,
        max_length=100,
        # Plain keys only: lookups are dict accesses, and names like __class__ are refused.
        pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9][A-Za-z0-9_]*)*$",
        description="Dotted path into the event's data, e.g. 'quantity' or 'category'",
    )
    op: Op
    value: Scalar | list[Scalar] = Field(description="A list for 'in'; a scalar otherwise")

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("'in' needs a list value")
        if self.op != "in" and isinstance(self.value, list):
            raise ValueError(f"{self.op!r} needs a single value, not a list")
        if self.op in ("lt", "lte", "gt", "gte") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"{self.op!r} needs a number or a string")
        return self


def lookup(data: Mapping[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _comparable(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def holds(cond: Condition, data: Mapping[str, Any]) -> bool:
    actual = lookup(data, cond.field)
    if actual is _MISSING:
        return False
    v = cond.value
    if cond.op == "eq":
        return bool(actual == v)
    if cond.op == "ne":
        return bool(actual != v)
    if cond.op == "in":
        return isinstance(v, list) and actual in v
    if cond.op == "contains":
        if isinstance(actual, str) and isinstance(v, str):
            return v.lower() in actual.lower()
        return isinstance(actual, list) and v in actual
    if not _comparable(actual, v):
        return False
    if cond.op == "lt":
        return bool(actual < v)  # type: ignore[operator]
    if cond.op == "lte":
        return bool(actual <= v)  # type: ignore[operator]
    if cond.op == "gt":
        return bool(actual > v)  # type: ignore[operator]
    return bool(actual >= v)  # type: ignore[operator]


def all_hold(conditions: Sequence[Condition | Mapping[str, Any]], data: Mapping[str, Any]) -> bool:
    for c in conditions:
        cond = c if isinstance(c, Condition) else Condition.model_validate(c)
        if not holds(cond, data):
            return False
    return True
