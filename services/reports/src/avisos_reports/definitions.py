"""The four reports: their SQL, sheets and summary.

Each builder reads in the caller's transaction (REPEATABLE READ, so the summary and the
detail rows agree) and returns a :class:`Report` whose tables stream their rows through
server-side cursors while the file is written. Times are converted to the requester's
wall clock in SQL (``AT TIME ZONE``); a date range is a range of local days.

Data contracts read here (documented in docs/reports.md): ``notifications`` with
``data.location_code``; stock alerts as notifications of type ``stock.low`` /
``stock.out`` / ``stock.restored`` with ``data.sku``, ``data.quantity`` and
``data.alert`` {id, state, opened_at, resolved_at, acknowledged_by_name,
acknowledged_at}; acknowledgements in ``data.ack`` {at, by_name} (or
``data.acknowledged_at`` / ``data.acknowledged_by_name``); the dispatcher's
``deliveries`` and ``delivery_attempts``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from avisos_reports.fetch import stream_rows
from avisos_reports.i18n import Lang, t
from avisos_reports.params import ReportKind, ReportParams, Requester, location_scope
from avisos_reports.xlsx import Chart, Column, Summary, Table


class ReportError(Exception):
    """The report cannot be built as asked (shown to the requester as the failure reason)."""


@dataclass
class Report:
    title: str
    summary: Summary
    tables: list[Table]

    @property
    def expected_rows(self) -> int:
        return sum(tb.expected_rows or 0 for tb in self.tables)


@dataclass
class BuildContext:
    conn: psycopg.Connection[Any]
    requester: Requester
    params: ReportParams
    now: dt.datetime
    fetch_rows: int = 5000

    @property
    def lang(self) -> Lang:
        return self.requester.lang

    def sql_params(self) -> dict[str, Any]:
        today = self.now.astimezone(self.requester.zone).date()
        date_from, date_to = self.params.resolved_period(today)
        return {
            "tz": self.requester.zone.key,
            "dfrom": date_from,
            "dto": date_to,
            "locs": location_scope(self.requester, self.params.locations),
            "cats": list(self.params.categories) or None,
            "src": self.params.source_event_id,
            "now": self.now,
        }

    def stream(self, sql: str, params: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` through a server-side cursor, fetched ahead (see :func:`stream_rows`)."""
        return stream_rows(self.conn, sql, params, self.fetch_rows)

    def all(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
        rows = self.all(sql, params)
        return rows[0]

    def table_exists(self, name: str) -> bool:
        return bool(self.one("SELECT to_regclass(%(n)s) IS NOT NULL", {"n": name})[0])


# Filters shared by the notification-based reports (alias n).
_PERIOD = (
    "n.created_at >= (%(dfrom)s::date::timestamp AT TIME ZONE %(tz)s)"
    " AND n.created_at < ((%(dto)s::date + 1)::timestamp AT TIME ZONE %(tz)s)"
)
_SCOPE = (
    "(%(locs)s::text[] IS NULL OR n.data->>'location_code' = ANY(%(locs)s::text[]))"
    " AND (%(cats)s::text[] IS NULL OR n.category = ANY(%(cats)s::text[]))"
)
_NOTIF_FILTER = f"{_PERIOD} AND {_SCOPE}"


def _ts(expr: str) -> str:
    """SQL casting a JSON text value to timestamptz when it looks like one (else NULL)."""
    return (
        f"(CASE WHEN ({expr}) ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}[T ]\\d{{2}}:\\d{{2}}'"
        f" THEN ({expr})::timestamptz END)"
    )


def _summary_lines(ctx: BuildContext, with_period: bool = True) -> list[tuple[str, str]]:
    p = ctx.sql_params()
    lang = ctx.lang
    lines: list[tuple[str, str]] = []
    if with_period:
        lines.append((t(lang, "period"), f"{p['dfrom'].isoformat()} – {p['dto'].isoformat()}"))
    lines.append((t(lang, "timezone"), p["tz"]))
    lines.append((t(lang, "locations"), ", ".join(p["locs"]) if p["locs"] else t(lang, "all")))
    lines.append((t(lang, "categories"), ", ".join(p["cats"]) if p["cats"] else t(lang, "all")))
    local_now = ctx.now.astimezone(ctx.requester.zone)
    lines.append((t(lang, "generated_at"), local_now.strftime("%Y-%m-%d %H:%M")))
    lines.append((t(lang, "requested_by"), ctx.requester.display_name))
    return lines


def _f(value: Any) -> float:
    return float(value) if value is not None else 0.0


# --- notification activity --------------------------------------------------------------


def notification_activity(ctx: BuildContext) -> Report:
    lang = ctx.lang
    p = ctx.sql_params()
    title = t(lang, "notification_activity")
    totals = ctx.one(
        f"""
        SELECT count(*), count(n.read_at), count(DISTINCT n.recipient_id),
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM n.read_at - n.created_at) / 60.0)
        FROM notifications n WHERE {_NOTIF_FILTER}
        """,
        p,
    )
    sent, read, recipients, median = int(totals[0]), int(totals[1]), int(totals[2]), totals[3]
    by_cat = ctx.all(
        f"""SELECT n.category, count(*), count(n.read_at) FROM notifications n
            WHERE {_NOTIF_FILTER} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""",
        p,
    )
    by_prio = ctx.all(
        f"""SELECT n.priority, count(*) FROM notifications n
            WHERE {_NOTIF_FILTER} GROUP BY 1 ORDER BY 2 DESC, 1""",
        p,
    )
    summary = Summary(
        title=title,
        sheet_title=t(lang, "summary"),
        lines=_summary_lines(ctx),
        totals=[
            (t(lang, "sent"), sent, "int"),
            (t(lang, "read"), read, "int"),
            (t(lang, "read_rate"), (read / sent) if sent else 0.0, "percent"),
            (t(lang, "median_minutes_to_read"), _f(median), "float"),
            (t(lang, "recipients"), recipients, "int"),
        ],
        charts=[
            Chart(
                t(lang, "sent_read_by_category"),
                [str(r[0]) for r in by_cat],
                [
                    (t(lang, "sent"), [_f(r[1]) for r in by_cat]),
                    (t(lang, "read"), [_f(r[2]) for r in by_cat]),
                ],
            ),
            Chart(
                t(lang, "sent_by_priority"),
                [str(r[0]) for r in by_prio],
                [(t(lang, "sent"), [_f(r[1]) for r in by_prio])],
                kind="pie",
            ),
        ],
    )
    groups = int(
        ctx.one(
            f"""SELECT count(*) FROM (SELECT 1 FROM notifications n WHERE {_NOTIF_FILTER}
                GROUP BY n.recipient_id, n.category, n.priority, n.data->>'location_code') g""",
            p,
        )[0]
    )
    activity = Table(
        t(lang, "sheet_activity"),
        [
            Column(t(lang, "user")),
            Column(t(lang, "email")),
            Column(t(lang, "category")),
            Column(t(lang, "priority")),
            Column(t(lang, "location")),
            Column(t(lang, "sent"), "int"),
            Column(t(lang, "read"), "int"),
            Column(t(lang, "read_rate"), "percent"),
            Column(t(lang, "median_minutes_to_read"), "float"),
        ],
        ctx.stream(
            f"""
            SELECT u.display_name, u.email, n.category, n.priority,
                   coalesce(n.data->>'location_code', ''),
                   count(*), count(n.read_at), count(n.read_at)::float8 / count(*),
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY extract(epoch FROM n.read_at - n.created_at) / 60.0)
            FROM notifications n JOIN users u ON u.id = n.recipient_id
            WHERE {_NOTIF_FILTER}
            GROUP BY u.id, u.display_name, u.email, n.category, n.priority,
                     n.data->>'location_code'
            ORDER BY u.display_name, u.id, n.category, n.priority, 5
            """,
            p,
        ),
        expected_rows=groups,
    )
    detail = Table(
        t(lang, "sheet_notifications"),
        [
            Column(t(lang, "created_at"), "datetime"),
            Column(t(lang, "recipient")),
            Column(t(lang, "email")),
            Column(t(lang, "location")),
            Column(t(lang, "category")),
            Column(t(lang, "priority")),
            Column(t(lang, "type")),
            Column(t(lang, "subject")),
            Column(t(lang, "read_at"), "datetime"),
            Column(t(lang, "minutes_to_read"), "float"),
            Column(t(lang, "archived"), "bool"),
            Column(t(lang, "source_event")),
        ],
        ctx.stream(
            f"""
            SELECT n.created_at AT TIME ZONE %(tz)s, u.display_name, u.email,
                   n.data->>'location_code', n.category, n.priority, n.type, n.subject,
                   n.read_at AT TIME ZONE %(tz)s,
                   (extract(epoch FROM n.read_at - n.created_at) / 60.0)::float8,
                   n.archived_at IS NOT NULL, n.source_event_id
            FROM notifications n JOIN users u ON u.id = n.recipient_id
            WHERE {_NOTIF_FILTER}
            ORDER BY n.created_at, n.id
            """,
            p,
        ),
        expected_rows=sent,
    )
    return Report(title, summary, [activity, detail])


# --- delivery performance ---------------------------------------------------------------

_ATTEMPTS = f"""
    SELECT a.*, coalesce(a.latency_ms::float8,
                         extract(epoch FROM a.finished_at - a.started_at) * 1000.0) AS lat
    FROM delivery_attempts a LEFT JOIN notifications n ON n.id = a.notification_id
    WHERE a.started_at >= (%(dfrom)s::date::timestamp AT TIME ZONE %(tz)s)
      AND a.started_at < ((%(dto)s::date + 1)::timestamp AT TIME ZONE %(tz)s)
      AND {_SCOPE}
"""
_DELIVERIES = f"""
    SELECT d.* FROM deliveries d LEFT JOIN notifications n ON n.id = d.notification_id
    WHERE d.created_at >= (%(dfrom)s::date::timestamp AT TIME ZONE %(tz)s)
      AND d.created_at < ((%(dto)s::date + 1)::timestamp AT TIME ZONE %(tz)s)
      AND {_SCOPE}
"""
FAILED_STATUSES = ("failed", "bounced", "undelivered")
#: Failure reasons listed per channel.
TOP_FAILURE_REASONS = 20


def delivery_performance(ctx: BuildContext) -> Report:
    if not (ctx.table_exists("delivery_attempts") and ctx.table_exists("deliveries")):
        raise ReportError("delivery tables are not available in this database yet")
    lang = ctx.lang
    p = ctx.sql_params()
    title = t(lang, "delivery_performance")
    attempts = {
        r[0]: r
        for r in ctx.all(
            f"""
            SELECT a.channel, count(*), count(*) FILTER (WHERE a.attempt > 1),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY a.lat),
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY a.lat),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY a.lat)
            FROM ({_ATTEMPTS}) a GROUP BY 1
            """,
            p,
        )
    }
    outcomes = {
        r[0]: r
        for r in ctx.all(
            f"""
            SELECT d.channel, count(*),
                   count(*) FILTER (WHERE d.status IN ('sent', 'delivered')),
                   count(*) FILTER (WHERE d.status = 'delivered'),
                   count(*) FILTER (WHERE d.status IN ('failed', 'bounced', 'undelivered'))
            FROM ({_DELIVERIES}) d GROUP BY 1
            """,
            p,
        )
    }
    channels = sorted(set(attempts) | set(outcomes))
    channel_rows: list[tuple[Any, ...]] = []
    for ch in channels:
        a = attempts.get(ch, (ch, 0, 0, None, None, None))
        o = outcomes.get(ch, (ch, 0, 0, 0, 0))
        rate = (o[2] / o[1]) if o[1] else None
        channel_rows.append((ch, a[1], o[1], o[2], o[3], o[4], a[2], rate, a[3], a[4], a[5]))
    tot = [sum(int(r[i] or 0) for r in channel_rows) for i in range(1, 7)]
    summary = Summary(
        title=title,
        sheet_title=t(lang, "summary"),
        lines=_summary_lines(ctx),
        totals=[
            (t(lang, "attempts"), tot[0], "int"),
            (t(lang, "deliveries"), tot[1], "int"),
            (t(lang, "accepted"), tot[2], "int"),
            (t(lang, "delivered"), tot[3], "int"),
            (t(lang, "failed"), tot[4], "int"),
            (t(lang, "retries"), tot[5], "int"),
            (t(lang, "success_rate"), (tot[2] / tot[1]) if tot[1] else 0.0, "percent"),
        ],
        charts=[
            Chart(
                t(lang, "outcomes_by_channel"),
                channels,
                [
                    (t(lang, "accepted"), [_f(r[3]) for r in channel_rows]),
                    (t(lang, "delivered"), [_f(r[4]) for r in channel_rows]),
                    (t(lang, "failed"), [_f(r[5]) for r in channel_rows]),
                ],
            ),
            Chart(
                t(lang, "latency_by_channel"),
                channels,
                [
                    ("p50", [_f(r[8]) for r in channel_rows]),
                    ("p90", [_f(r[9]) for r in channel_rows]),
                    ("p99", [_f(r[10]) for r in channel_rows]),
                ],
            ),
        ],
    )
    per_channel = Table(
        t(lang, "sheet_channels"),
        [
            Column(t(lang, "channel")),
            Column(t(lang, "attempts"), "int"),
            Column(t(lang, "deliveries"), "int"),
            Column(t(lang, "accepted"), "int"),
            Column(t(lang, "delivered"), "int"),
            Column(t(lang, "failed"), "int"),
            Column(t(lang, "retries"), "int"),
            Column(t(lang, "success_rate"), "percent"),
            Column(t(lang, "latency_p50_ms"), "float"),
            Column(t(lang, "latency_p90_ms"), "float"),
            Column(t(lang, "latency_p99_ms"), "float"),
        ],
        channel_rows,
        expected_rows=len(channel_rows),
    )
    failures = Table(
        t(lang, "sheet_failures"),
        [
            Column(t(lang, "channel")),
            Column(t(lang, "provider")),
            Column(t(lang, "error")),
            Column(t(lang, "count"), "int"),
        ],
        ctx.all(
            f"""
            SELECT channel, provider, reason, c FROM (
                SELECT a.channel, coalesce(a.provider, '') AS provider,
                       left(coalesce(nullif(a.error, ''), '(' || a.status || ')'), 300) AS reason,
                       count(*) AS c,
                       row_number() OVER (PARTITION BY a.channel ORDER BY count(*) DESC,
                                          left(coalesce(nullif(a.error, ''), ''), 300)) AS rk
                FROM ({_ATTEMPTS}) a
                WHERE a.status IN ('failed', 'bounced', 'undelivered')
                GROUP BY 1, 2, 3, a.error, a.status
            ) x WHERE rk <= {TOP_FAILURE_REASONS} ORDER BY channel, c DESC, reason
            """,
            p,
        ),
    )
    n_attempts = tot[0]
    detail = Table(
        t(lang, "sheet_attempts"),
        [
            Column(t(lang, "started_at"), "datetime"),
            Column(t(lang, "finished_at"), "datetime"),
            Column(t(lang, "channel")),
            Column(t(lang, "provider")),
            Column(t(lang, "status")),
            Column(t(lang, "attempt"), "int"),
            Column(t(lang, "latency_ms"), "float"),
            Column(t(lang, "error")),
            Column(t(lang, "recipient")),
            Column(t(lang, "delivery_id")),
            Column(t(lang, "notification_id")),
            Column(t(lang, "provider_message_id")),
        ],
        ctx.stream(
            f"""
            SELECT a.started_at AT TIME ZONE %(tz)s, a.finished_at AT TIME ZONE %(tz)s,
                   a.channel, a.provider, a.status, a.attempt, a.lat, a.error, u.email,
                   a.delivery_id::text, a.notification_id::text, a.provider_message_id
            FROM ({_ATTEMPTS}) a LEFT JOIN users u ON u.id = a.user_id
            ORDER BY a.started_at, a.id
            """,
            p,
        ),
        expected_rows=n_attempts,
    )
    return Report(title, summary, [per_channel, failures, detail])


# --- inventory alerts -------------------------------------------------------------------

STOCK_TYPES = ("stock.low", "stock.out", "stock.restored")

_ALERTS = f"""
    WITH base AS (
        SELECT n.*, coalesce(n.data->'alert'->>'id', n.source_event_id, n.id::text) AS akey
        FROM notifications n
        WHERE n.type IN ('stock.low', 'stock.out', 'stock.restored') AND {_NOTIF_FILTER}
    ),
    agg AS (
        SELECT akey, max(type) FILTER (WHERE type <> 'stock.restored') AS cond,
               min(created_at) AS first_at, count(DISTINCT recipient_id) AS recipients
        FROM base GROUP BY akey
    ),
    latest AS (
        SELECT DISTINCT ON (akey) akey, type, data, created_at FROM base
        ORDER BY akey, coalesce(updated_at, created_at) DESC, seq DESC
    ),
    alerts AS (
        SELECT l.akey,
               l.data->>'location_code' AS store,
               l.data->>'sku' AS sku,
               coalesce(g.cond, l.type) AS cond,
               coalesce(l.data->'alert'->>'state',
                        CASE WHEN l.type = 'stock.restored' THEN 'resolved' ELSE 'open' END)
                   AS state,
               CASE WHEN (l.data->>'quantity') ~ '^-?\\d+(\\.\\d+)?$'
                    THEN (l.data->>'quantity')::float8 END AS quantity,
               coalesce({_ts("l.data->'alert'->>'opened_at'")}, g.first_at) AS opened_at,
               coalesce({_ts("l.data->'alert'->>'resolved_at'")},
                        CASE WHEN l.type = 'stock.restored' THEN l.created_at END)
                   AS resolved_at,
               l.data->'alert'->>'acknowledged_by_name' AS ack_by,
               {_ts("l.data->'alert'->>'acknowledged_at'")} AS ack_at,
               g.recipients
        FROM latest l JOIN agg g USING (akey)
    )
"""


def inventory_alerts(ctx: BuildContext) -> Report:
    lang = ctx.lang
    p = ctx.sql_params()
    title = t(lang, "inventory_alerts")
    tot = ctx.one(
        f"""{_ALERTS}
        SELECT count(*), count(*) FILTER (WHERE state = 'open'),
               count(*) FILTER (WHERE state <> 'open'),
               count(*) FILTER (WHERE cond = 'stock.out'),
               count(*) FILTER (WHERE cond = 'stock.low'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY
                   extract(epoch FROM coalesce(resolved_at, %(now)s) - opened_at) / 3600.0)
        FROM alerts""",
        p,
    )
    by_store = ctx.all(
        f"""{_ALERTS}
        SELECT coalesce(store, ''), count(*) FILTER (WHERE state = 'open'),
               count(*) FILTER (WHERE state <> 'open')
        FROM alerts GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 15""",
        p,
    )
    summary = Summary(
        title=title,
        sheet_title=t(lang, "summary"),
        lines=_summary_lines(ctx),
        totals=[
            (t(lang, "alerts"), int(tot[0]), "int"),
            (t(lang, "open"), int(tot[1]), "int"),
            (t(lang, "resolved"), int(tot[2]), "int"),
            (t(lang, "stock_outs"), int(tot[3]), "int"),
            (t(lang, "low_stock"), int(tot[4]), "int"),
            (t(lang, "median_hours_open"), _f(tot[5]), "float"),
        ],
        charts=[
            Chart(
                t(lang, "alerts_by_store"),
                [str(r[0]) for r in by_store],
                [
                    (t(lang, "open"), [_f(r[1]) for r in by_store]),
                    (t(lang, "resolved"), [_f(r[2]) for r in by_store]),
                ],
            ),
            Chart(
                t(lang, "alerts_by_condition"),
                [t(lang, "stock_outs"), t(lang, "low_stock")],
                [(t(lang, "alerts"), [_f(tot[3]), _f(tot[4])])],
                kind="pie",
            ),
        ],
    )
    alerts = Table(
        t(lang, "sheet_alerts"),
        [
            Column(t(lang, "store")),
            Column(t(lang, "store_name")),
            Column(t(lang, "sku")),
            Column(t(lang, "condition")),
            Column(t(lang, "state")),
            Column(t(lang, "quantity"), "float"),
            Column(t(lang, "opened_at"), "datetime"),
            Column(t(lang, "resolved_at"), "datetime"),
            Column(t(lang, "hours_open"), "float"),
            Column(t(lang, "acknowledged_by")),
            Column(t(lang, "acknowledged_at"), "datetime"),
            Column(t(lang, "recipients"), "int"),
        ],
        ctx.stream(
            f"""{_ALERTS}
            SELECT a.store, loc.name, a.sku, a.cond, a.state, a.quantity,
                   a.opened_at AT TIME ZONE %(tz)s, a.resolved_at AT TIME ZONE %(tz)s,
                   (extract(epoch FROM coalesce(a.resolved_at, %(now)s) - a.opened_at)
                    / 3600.0)::float8,
                   a.ack_by, a.ack_at AT TIME ZONE %(tz)s, a.recipients
            FROM alerts a LEFT JOIN locations loc ON loc.code = a.store
            ORDER BY a.store, a.sku, a.opened_at
            """,
            p,
        ),
        expected_rows=int(tot[0]),
    )
    grouped = Table(
        t(lang, "sheet_by_store"),
        [
            Column(t(lang, "store")),
            Column(t(lang, "sku")),
            Column(t(lang, "alerts"), "int"),
            Column(t(lang, "stock_outs"), "int"),
            Column(t(lang, "low_stock"), "int"),
            Column(t(lang, "open"), "int"),
            Column(t(lang, "resolved"), "int"),
            Column(t(lang, "median_hours_open"), "float"),
        ],
        ctx.stream(
            f"""{_ALERTS}
            SELECT store, sku, count(*), count(*) FILTER (WHERE cond = 'stock.out'),
                   count(*) FILTER (WHERE cond = 'stock.low'),
                   count(*) FILTER (WHERE state = 'open'),
                   count(*) FILTER (WHERE state <> 'open'),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY
                       extract(epoch FROM coalesce(resolved_at, %(now)s) - opened_at) / 3600.0)
            FROM alerts GROUP BY 1, 2 ORDER BY 1, 2
            """,
            p,
        ),
    )
    return Report(title, summary, [alerts, grouped])


# --- acknowledgement ledger -------------------------------------------------------------

_ACK_AT = (
    "coalesce("
    + ", ".join(
        _ts(e)
        for e in (
            "n.data->'ack'->>'at'",
            "n.data->>'acknowledged_at'",
            "n.data->'alert'->>'acknowledged_at'",
        )
    )
    + ")"
)
_ACK_BY = (
    "coalesce(n.data->'ack'->>'by_name', n.data->>'acknowledged_by_name',"
    " n.data->'alert'->>'acknowledged_by_name')"
)


def ack_ledger(ctx: BuildContext) -> Report:
    lang = ctx.lang
    if not ctx.params.source_event_id:
        raise ReportError("the acknowledgement ledger needs a source_event_id")
    p = ctx.sql_params()
    title = t(lang, "ack_ledger")
    scope = "(%(locs)s::text[] IS NULL OR n.data->>'location_code' = ANY(%(locs)s::text[]))"
    where = f"n.source_event_id = %(src)s AND {scope}"
    tot = ctx.one(
        f"""SELECT count(*), count(n.read_at), count({_ACK_AT})
            FROM notifications n WHERE {where}""",
        p,
    )
    total, read, acked = int(tot[0]), int(tot[1]), int(tot[2])
    if ctx.table_exists("deliveries"):
        channels = (
            "(SELECT 'in_app' || coalesce(', ' || string_agg(DISTINCT d.channel, ', '), '')"
            " FROM deliveries d WHERE d.notification_id = n.id)"
        )
        statuses = (
            "(SELECT string_agg(d.channel || ': ' || d.status, '; ' ORDER BY d.channel)"
            " FROM deliveries d WHERE d.notification_id = n.id)"
        )
    else:
        channels, statuses = "'in_app'", "NULL::text"
    lines = _summary_lines(ctx, with_period=False)
    lines.insert(0, (t(lang, "source_event"), ctx.params.source_event_id))
    summary = Summary(
        title=title,
        sheet_title=t(lang, "summary"),
        lines=lines,
        totals=[
            (t(lang, "recipients"), total, "int"),
            (t(lang, "read"), read, "int"),
            (t(lang, "acknowledged"), acked, "int"),
            (t(lang, "pending"), total - acked, "int"),
            (t(lang, "ack_rate"), (acked / total) if total else 0.0, "percent"),
        ],
        charts=[
            Chart(
                t(lang, "ledger_progress"),
                [t(lang, "received"), t(lang, "read"), t(lang, "acknowledged")],
                [(t(lang, "recipients"), [float(total), float(read), float(acked)])],
            )
        ],
    )
    ledger = Table(
        t(lang, "sheet_ledger"),
        [
            Column(t(lang, "recipient")),
            Column(t(lang, "email")),
            Column(t(lang, "location")),
            Column(t(lang, "channels")),
            Column(t(lang, "delivery_status")),
            Column(t(lang, "received_at"), "datetime"),
            Column(t(lang, "read_at"), "datetime"),
            Column(t(lang, "acknowledged_at"), "datetime"),
            Column(t(lang, "acknowledged_by")),
            Column(t(lang, "minutes_to_ack"), "float"),
            Column(t(lang, "priority")),
            Column(t(lang, "subject")),
        ],
        ctx.stream(
            f"""
            SELECT u.display_name, u.email, n.data->>'location_code', {channels}, {statuses},
                   n.created_at AT TIME ZONE %(tz)s, n.read_at AT TIME ZONE %(tz)s,
                   {_ACK_AT} AT TIME ZONE %(tz)s, {_ACK_BY},
                   (extract(epoch FROM {_ACK_AT} - n.created_at) / 60.0)::float8,
                   n.priority, n.subject
            FROM notifications n JOIN users u ON u.id = n.recipient_id
            WHERE {where}
            ORDER BY u.display_name, u.email, n.created_at
            """,
            p,
        ),
        expected_rows=total,
    )
    return Report(title, summary, [ledger])


BUILDERS: dict[ReportKind, Callable[[BuildContext], Report]] = {
    "notification_activity": notification_activity,
    "delivery_performance": delivery_performance,
    "inventory_alerts": inventory_alerts,
    "ack_ledger": ack_ledger,
}
