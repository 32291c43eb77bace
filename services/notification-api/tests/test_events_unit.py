"""Fast checks without the backing services: the committed JSON Schema, the condition
language, template sandbox/escaping, SMS segments, quiet-hour arithmetic."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from avisos_api.events.schemas import EVENT_TYPES, EXAMPLES, json_schema_text, parse_event
from avisos_api.rules.conditions import Condition, all_hold
from avisos_api.services import templates as tpl
from avisos_api.services.preferences import UserPrefs

REPO = Path(__file__).resolve().parents[3]


def test_committed_json_schema_matches_the_models() -> None:
    committed = (REPO / "docs" / "events.schema.json").read_text("utf-8")
    assert committed == json_schema_text(), (
        "docs/events.schema.json is stale: run "
        "`uv run --frozen python -m avisos_api.events.schemas > docs/events.schema.json`"
    )
    schema = json.loads(committed)
    consts = {
        b["properties"]["type"]["const"]
        for b in schema["$defs"].values()
        if "type" in b.get("properties", {})
    }
    assert consts == set(EVENT_TYPES)


def test_every_example_is_valid_and_rendered_in_both_languages() -> None:
    for type_, data in EXAMPLES.items():
        ev = parse_event(
            {"id": "1", "source": "s", "type": type_, "time": "2026-11-28T08:00:00Z", "data": data}
        )
        ctx = {
            "data": ev.data_json(),
            "alert": {},
            "claim": {},
            "recipient": {"name": "Ana"},
            "location": {"code": "MAD-01", "name": "Madrid"},
            "link": "https://avisos.example/",
        }
        for locale in tpl.LOCALES:
            for channel, parts in tpl.CHANNEL_PARTS.items():
                source = tpl.builtin(type_, channel, locale)
                assert source is not None and set(source) == set(parts), (type_, channel, locale)
                out = tpl.render_parts(source, ctx)
                assert all(out.values()), (type_, channel, locale, out)


@pytest.mark.parametrize(
    ("cond", "data", "expected"),
    [
        ({"field": "quantity", "op": "lt", "value": 3}, {"quantity": 2}, True),
        ({"field": "quantity", "op": "lt", "value": 3}, {"quantity": 3}, False),
        ({"field": "quantity", "op": "lte", "value": 3}, {"quantity": 3}, True),
        ({"field": "quantity", "op": "gt", "value": 3}, {"quantity": "9"}, False),
        ({"field": "quantity", "op": "gte", "value": 3}, {}, False),
        ({"field": "category", "op": "eq", "value": "frozen"}, {"category": "frozen"}, True),
        ({"field": "category", "op": "ne", "value": "frozen"}, {"category": "dairy"}, True),
        ({"field": "category", "op": "in", "value": ["a", "b"]}, {"category": "b"}, True),
        (
            {"field": "product_name", "op": "contains", "value": "leche"},
            {"product_name": "Leche 1L"},
            True,
        ),
        ({"field": "tags", "op": "contains", "value": "x"}, {"tags": ["x", "y"]}, True),
        ({"field": "a.b", "op": "eq", "value": 1}, {"a": {"b": 1}}, True),
        ({"field": "a.b", "op": "eq", "value": 1}, {"a": 5}, False),
    ],
)
def test_conditions(cond: dict[str, object], data: dict[str, object], expected: bool) -> None:
    assert all_hold([cond], data) is expected


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "quantity", "op": "matches", "value": 1},
        {"field": "quantity", "op": "in", "value": 1},
        {"field": "quantity", "op": "eq", "value": [1]},
        {"field": "__class__.__mro__", "op": "eq", "value": 1},
        {"field": "q", "op": "lt", "value": True},
        {"field": "q", "op": "eq", "value": 1, "extra": 2},
    ],
)
def test_conditions_refuse_what_they_do_not_know(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Condition.model_validate(bad)


def test_sandbox_escaping_and_sms_segments() -> None:
    with pytest.raises(SecurityError):
        tpl.render_parts({"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}, {})
    out = tpl.render_parts(
        {"html": "<p>{{ data.x }}</p>", "text": "{{ data.x }}"}, {"data": {"x": "<b>&"}}
    )
    assert out == {"html": "<p>&lt;b&gt;&amp;</p>", "text": "<b>&"}
    assert tpl.check_syntax({"text": "{% if %}"}) is not None
    assert tpl.sms_info("Stock bajo en MAD-01") == tpl.SmsInfo(20, "GSM-7", 1)
    assert tpl.sms_info("x" * 160).segments == 1 and tpl.sms_info("x" * 161).segments == 2
    assert tpl.sms_info("€" * 80) == tpl.SmsInfo(160, "GSM-7", 1)
    assert tpl.sms_info("caducó") == tpl.SmsInfo(6, "UCS-2", 1)
    assert tpl.sms_info("ó" * 71).segments == 2 and tpl.sms_info("ó" * 134).segments == 2


def test_quiet_hours_cross_midnight_in_the_users_zone() -> None:
    prefs = UserPrefs(uuid.uuid4(), ["staff"], "Europe/Madrid")
    prefs.quiet_start, prefs.quiet_end = dt.time(22), dt.time(7)
    # 23:30 in Madrid (winter, UTC+1) is 22:30 UTC: quiet until 07:00 Madrid = 06:00 UTC.
    late = dt.datetime(2026, 11, 28, 22, 30, tzinfo=dt.UTC)
    assert prefs.quiet_until(late) == dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC)
    early = dt.datetime(2026, 11, 29, 5, 0, tzinfo=dt.UTC)  # 06:00 Madrid
    assert prefs.quiet_until(early) == dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC)
    assert prefs.quiet_until(dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)) is None
    prefs.quiet_start, prefs.quiet_end = dt.time(13), dt.time(15)
    assert prefs.quiet_until(dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)) == dt.datetime(
        2026, 11, 29, 14, 0, tzinfo=dt.UTC
    )
    prefs.digest = "daily"
    key, end = prefs.digest_window(dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)) or ("", None)
    assert end == dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC) and key.startswith("daily:")


def test_time_without_offset_is_utc() -> None:
    ev = parse_event(
        {
            "id": "1",
            "source": "s",
            "type": "stock.out",
            "time": "2026-11-28T09:00:00",
            "data": EXAMPLES["stock.out"],
        }
    )
    assert ev.envelope.time == dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
