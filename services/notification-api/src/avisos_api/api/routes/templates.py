"""Admin templates: ``/v1/admin/templates`` (list, read, override, revert, preview).

An override replaces the built-in template of one (event type, channel, locale). Saving
checks the syntax (422); errors that only show when rendering real data are recorded on
the row as ``last_error`` and the built-in template is used meanwhile.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from avisos_api.api.deps import AdminUser, SessionDep
from avisos_api.events.schemas import EVENT_TYPES, EXAMPLES
from avisos_api.exceptions import InvalidInput, NotFound
from avisos_api.models_events import Template
from avisos_api.services import templates as tpl
from avisos_common.messages import Channel

router = APIRouter(prefix="/v1/admin/templates", tags=["templates"])

TEMPLATE_TYPES: tuple[str, ...] = (*EVENT_TYPES, *tpl.EXTRA_TYPES)
Locale = Literal["es", "en"]


class TemplateOut(BaseModel):
    event_type: str
    channel: str
    locale: str
    parts: dict[str, str]
    origin: Literal["builtin", "override"]
    builtin: dict[str, str] | None
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    updated_by: uuid.UUID | None = None


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: dict[str, str] = Field(
        description="in_app: subject, message; email: subject, html, text; sms: text; "
        "push: title, body"
    )


class SmsPreview(BaseModel):
    length: int
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str
    channel: Channel
    locale: Locale = "es"
    parts: dict[str, str] | None = Field(
        default=None, description="Unsaved parts to try; default: the current template"
    )
    data: dict[str, Any] | None = Field(
        default=None, description="Sample event data; default: the type's example"
    )
    alert: dict[str, Any] | None = None


class PreviewOut(BaseModel):
    ok: bool
    rendered: dict[str, str] | None
    error: str | None = None
    sms: SmsPreview | None = None


def _check_key(event_type: str, channel: str) -> None:
    if event_type not in TEMPLATE_TYPES:
        raise NotFound(f"unknown template type {event_type!r}")
    if channel not in tpl.CHANNEL_PARTS:
        raise NotFound(f"unknown channel {channel!r}")
    if event_type == "digest" and channel != "email":
        raise NotFound("the digest is email only")


def _check_parts(channel: str, parts: dict[str, str]) -> None:
    wanted = set(tpl.CHANNEL_PARTS[channel])
    if set(parts) != wanted:
        raise InvalidInput(f"{channel} templates have exactly these parts: {sorted(wanted)}")
    for name, source in parts.items():
        if len(source) > tpl.MAX_PART_CHARS:
            raise InvalidInput(f"{name} is longer than {tpl.MAX_PART_CHARS} characters")
    error = tpl.check_syntax(parts)
    if error:
        raise InvalidInput(f"template syntax error in {error}")


def _out(event_type: str, channel: str, locale: str, row: Template | None) -> TemplateOut:
    builtin = tpl.builtin(event_type, channel, locale)
    return TemplateOut(
        event_type=event_type,
        channel=channel,
        locale=locale,
        parts=dict(row.parts) if row else dict(builtin or {}),
        origin="override" if row else "builtin",
        builtin=builtin,
        last_error=row.last_error if row else None,
        last_error_at=row.last_error_at if row else None,
        updated_at=row.updated_at if row else None,
        updated_by=row.updated_by if row else None,
    )


async def _row(db: SessionDep, event_type: str, channel: str, locale: str) -> Template | None:
    return await db.scalar(
        select(Template).where(
            Template.event_type == event_type,
            Template.channel == channel,
            Template.locale == locale,
        )
    )


@router.get("", response_model=list[TemplateOut])
async def list_templates(_: AdminUser, db: SessionDep) -> list[TemplateOut]:
    """Every template, effective version first; overrides carry ``last_error``."""
    rows = {(r.event_type, r.channel, r.locale): r for r in await db.scalars(select(Template))}
    out = []
    for t in TEMPLATE_TYPES:
        for ch in tpl.CHANNEL_PARTS:
            for loc in tpl.LOCALES:
                if tpl.builtin(t, ch, loc) is None and (t, ch, loc) not in rows:
                    continue
                out.append(_out(t, ch, loc, rows.get((t, ch, loc))))
    return out


@router.get("/{event_type}/{channel}/{locale}", response_model=TemplateOut)
async def get_template(
    event_type: str, channel: str, locale: Locale, _: AdminUser, db: SessionDep
) -> TemplateOut:
    _check_key(event_type, channel)
    return _out(event_type, channel, locale, await _row(db, event_type, channel, locale))


@router.put("/{event_type}/{channel}/{locale}", response_model=TemplateOut)
async def put_template(
    event_type: str,
    channel: str,
    locale: Locale,
    body: TemplateIn,
    admin: AdminUser,
    db: SessionDep,
) -> TemplateOut:
    _check_key(event_type, channel)
    _check_parts(channel, body.parts)
    row = await _row(db, event_type, channel, locale)
    now = dt.datetime.now(dt.UTC)
    if row is None:
        row = Template(event_type=event_type, channel=channel, locale=locale)
        db.add(row)
    row.parts = dict(body.parts)
    row.last_error = None
    row.last_error_at = None
    row.updated_by = admin.id
    row.updated_at = now
    await db.commit()
    return _out(event_type, channel, locale, row)


@router.delete("/{event_type}/{channel}/{locale}", status_code=status.HTTP_204_NO_CONTENT)
async def revert_template(
    event_type: str, channel: str, locale: Locale, _: AdminUser, db: SessionDep
) -> Response:
    """Drop the override: the built-in template applies again."""
    _check_key(event_type, channel)
    row = await _row(db, event_type, channel, locale)
    if row is None:
        raise NotFound("no override to remove")
    await db.delete(row)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/preview", response_model=PreviewOut)
async def preview(body: PreviewIn, admin: AdminUser, db: SessionDep) -> PreviewOut:
    """Render with sample data. A broken template answers ``ok: false`` with the error
    (what delivery would do: fall back to the built-in template)."""
    _check_key(body.event_type, body.channel)
    parts = body.parts
    if parts is None:
        row = await _row(db, body.event_type, body.channel, body.locale)
        parts = dict(row.parts) if row else tpl.builtin(body.event_type, body.channel, body.locale)
    if parts is None:
        raise NotFound("no template for this type, channel and locale")
    data = dict(body.data if body.data is not None else EXAMPLES.get(body.event_type, {}))
    ctx: dict[str, Any] = {
        "event": {"id": "preview", "source": "preview", "type": body.event_type},
        "data": data,
        "alert": body.alert or {},
        "claim": {},
        "original": {"subject": "…", "message": "…"},
        "escalation": {"level": 1},
        "recipient": {"name": admin.display_name, "locale": body.locale},
        "location": {"code": data.get("location_code", ""), "name": data.get("location_code", "")},
        "priority": "normal",
        "link": "https://avisos.example/",
        "items": [{"subject": "…", "message": "…"}],
        "window": "hourly",
    }
    try:
        rendered = tpl.render_parts(parts, ctx)
    except Exception as exc:  # a preview reports any template error
        return PreviewOut(ok=False, rendered=None, error=f"{type(exc).__name__}: {exc}")
    sms = None
    if body.channel == "sms":
        info = tpl.sms_info(rendered.get("text", ""))
        sms = SmsPreview(length=info.length, encoding=info.encoding, segments=info.segments)  # type: ignore[arg-type]
    return PreviewOut(ok=True, rendered=rendered, sms=sms)
