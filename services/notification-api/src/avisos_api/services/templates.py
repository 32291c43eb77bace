"""Templates: built-in (package files ``avisos_api/templates/<locale>.toml``) and admins'
overrides (table ``templates``), rendered with Jinja2 in a sandbox.

Rendering never stops a delivery: an override that fails (syntax or runtime error) is
reported (logged, and recorded as ``last_error`` on its row when the caller flushes the
:class:`Renderer`) and the built-in template is used instead. The user's locale chooses
the language; :data:`FALLBACK_LOCALE` is used when a template is missing in it.
HTML parts are autoescaped; text parts are not (they never reach a browser as HTML).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.models_events import Template

log = logging.getLogger(__name__)

LOCALES: tuple[str, ...] = ("es", "en")
FALLBACK_LOCALE = "es"
#: The parts each channel's template has.
CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    "in_app": ("subject", "message"),
    "email": ("subject", "html", "text"),
    "sms": ("text",),
    "push": ("title", "body"),
}
#: Template "types" that are not event types but are rendered the same way.
EXTRA_TYPES: tuple[str, ...] = ("alert.escalated", "digest")
HTML_PARTS = frozenset({"html"})
MAX_PART_CHARS = 20_000
#: Rendered output is cut at this length (a template loop must not produce megabytes).
MAX_OUTPUT_CHARS = 100_000


def _qty(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None or isinstance(value, Undefined) else str(value)
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _money(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if isinstance(value, Undefined) else str(value)
    return f"{value:.2f}"


def _day(value: Any) -> str:
    """ISO date or datetime string (or object) -> YYYY-MM-DD (the date as sent)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()[:10]
    if isinstance(value, str):
        return value[:10]
    return "" if value is None or isinstance(value, Undefined) else str(value)


def _env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=Undefined)
    env.filters.update(qty=_qty, money=_money, day=_day)
    return env


TEXT_ENV = _env(False)
HTML_ENV = _env(True)


@lru_cache(maxsize=len(LOCALES))
def builtin_set(locale: str) -> dict[str, dict[str, dict[str, str]]]:
    """The built-in templates of one locale: ``{type: {channel: {part: source}}}``."""
    text = resources.files("avisos_api.templates").joinpath(f"{locale}.toml").read_text("utf-8")
    loaded: dict[str, dict[str, dict[str, str]]] = tomllib.loads(text)
    return loaded


def builtin(event_type: str, channel: str, locale: str) -> dict[str, str] | None:
    if locale not in LOCALES:
        return None
    return builtin_set(locale).get(event_type, {}).get(channel)


def check_syntax(parts: Mapping[str, str]) -> str | None:
    """The first syntax error of ``parts`` (as a message), or None."""
    for name, source in parts.items():
        env = HTML_ENV if name in HTML_PARTS else TEXT_ENV
        try:
            env.parse(source)
        except TemplateSyntaxError as exc:
            return f"{name}: line {exc.lineno}: {exc.message}"
    return None


def render_parts(parts: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    """Render every part; raises :class:`TemplateError` (or any error a template causes)."""
    out: dict[str, str] = {}
    for name, source in parts.items():
        env = HTML_ENV if name in HTML_PARTS else TEXT_ENV
        rendered = env.from_string(source).render(**context)
        out[name] = rendered.strip()[:MAX_OUTPUT_CHARS]
    return out


def locale_chain(locale: str | None) -> list[str]:
    chain = [locale] if locale in LOCALES else []
    if FALLBACK_LOCALE not in chain:
        chain.append(FALLBACK_LOCALE)
    return chain  # type: ignore[return-value]


@dataclass
class Rendered:
    parts: dict[str, str]
    locale: str
    #: ``override`` (an admin's template) or ``builtin``.
    origin: str
    errors: list[str] = field(default_factory=list)


@dataclass
class Renderer:
    """Renders for one unit of work; remembers override errors to record on the rows.

    Call :meth:`flush_errors` before committing."""

    session: AsyncSession
    _overrides: dict[tuple[str, str, str], Template | None] = field(default_factory=dict)
    _errors: dict[uuid.UUID, str] = field(default_factory=dict)

    async def _override(self, event_type: str, channel: str, locale: str) -> Template | None:
        key = (event_type, channel, locale)
        if key not in self._overrides:
            self._overrides[key] = await self.session.scalar(
                select(Template).where(
                    Template.event_type == event_type,
                    Template.channel == channel,
                    Template.locale == locale,
                )
            )
        return self._overrides[key]

    async def render(
        self, event_type: str, channel: str, locale: str | None, context: Mapping[str, Any]
    ) -> Rendered:
        """Override (user's locale) -> built-in (user's locale) -> same in the fallback
        locale. Raises LookupError only if no built-in renders (a bug in Avisos)."""
        errors: list[str] = []
        for loc in locale_chain(locale):
            tpl = await self._override(event_type, channel, loc)
            if tpl is not None:
                try:
                    return Rendered(render_parts(tpl.parts, context), loc, "override", errors)
                except Exception as exc:  # any template error must fall back, never fail
                    msg = f"{type(exc).__name__}: {exc}"
                    errors.append(msg)
                    self._errors[tpl.id] = msg
                    log.warning(
                        "template failed; using the built-in one",
                        extra={
                            "event_type": event_type,
                            "channel": channel,
                            "locale": loc,
                            "error": msg,
                        },
                    )
            parts = builtin(event_type, channel, loc)
            if parts is not None:
                try:
                    return Rendered(render_parts(parts, context), loc, "builtin", errors)
                except TemplateError as exc:
                    errors.append(f"builtin {loc}: {exc}")
                    log.exception("built-in template failed", extra={"event_type": event_type})
        raise LookupError(f"no template renders for {event_type}/{channel}: {errors}")

    async def flush_errors(self, now: dt.datetime) -> None:
        for tid, msg in self._errors.items():
            tpl = await self.session.get(Template, tid)
            if tpl is not None:
                tpl.last_error = msg[:2000]
                tpl.last_error_at = now
        self._errors.clear()


# --- SMS length -------------------------------------------------------------------------

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsInfo:
    length: int
    encoding: str  # GSM-7 | UCS-2
    segments: int


def sms_info(text: str) -> SmsInfo:
    """Length in code units and segments as carriers count them: GSM-7 (160 chars, 153 per
    part when split; extension chars count 2) or UCS-2 (70, 67 per part) if any character
    is outside the GSM-7 alphabet (e.g. á, í, ó, ú)."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        single, multi, enc = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, multi, enc = 70, 67, "UCS-2"
    segments = 0 if units == 0 else (1 if units <= single else math.ceil(units / multi))
    return SmsInfo(units, enc, segments)
