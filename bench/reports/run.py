"""Benchmark: a 12-column report from PostgreSQL written to .xlsx by several writers.

Standalone: ``uv run --frozen python bench/reports/run.py [--rows N] [--quick]``.
It creates a throwaway database with N rows (``generate_series``), then runs each writer
in its own process (so peak RSS is that writer's alone) and prints one table:

* ``fetch only``: the server-side cursor read without writing (the floor).
* ``avisos``: the reports service's path (psycopg server-side cursor fetched ahead on a
  thread, ``avisos_reports.fetch`` -> openpyxl workbook with the streaming sheet writer of
  ``avisos_reports.xlsx``), summary sheet included.
* ``openpyxl write-only``: stock openpyxl ``write_only=True`` with per-column styles.
* ``xlsxwriter constant_memory``: xlsxwriter with per-column formats.
* ``rustpy-xlsxwriter``: rows handed as dicts from a generator (if installed).

Every writer gets the same rows from the same query (times already converted to the
reader's zone in SQL, as the reports do).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

ADMIN_DSN = os.environ.get("AVISOS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
FETCH_ROWS = 5000
HEADINGS = [
    "Created",
    "Recipient",
    "Email",
    "Location",
    "Category",
    "Priority",
    "Type",
    "Subject",
    "Read at",
    "Minutes to read",
    "Archived",
    "Seq",
]
KINDS = [
    "datetime",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "datetime",
    "float",
    "bool",
    "int",
]
QUERY = """
    SELECT created_at AT TIME ZONE 'Europe/Madrid', recipient, email, location, category,
           priority, type, subject, read_at AT TIME ZONE 'Europe/Madrid', minutes, archived, seq
    FROM bench_rows ORDER BY id
"""
#: Above this the stock openpyxl run is skipped by default (minutes of CPU).
STOCK_OPENPYXL_MAX_ROWS = 200_000
WRITERS = [
    "fetch only",
    "avisos",
    "openpyxl write-only",
    "xlsxwriter constant_memory",
    "rustpy-xlsxwriter",
]


def create_db(rows: int) -> str:
    name = f"avisos_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE bench_rows AS
            SELECT g AS id,
                   timestamptz '2026-01-01 00:00Z' + g * interval '7 seconds' AS created_at,
                   'Usuario ' || (g %% 5000) AS recipient,
                   'user' || (g %% 5000) || '@tienda.example' AS email,
                   'T' || lpad((g %% 300)::text, 3, '0') AS location,
                   (ARRAY['stock', 'recall', 'security', 'ops'])[1 + g %% 4] AS category,
                   (ARRAY['low', 'normal', 'high', 'critical'])[1 + g %% 4] AS priority,
                   (ARRAY['stock.low', 'stock.out', 'product.recall'])[1 + g %% 3] AS type,
                   'Stock bajo del SKU ' || (100000 + g %% 90000) || ' en tienda' AS subject,
                   CASE WHEN g %% 3 = 0 THEN NULL
                        ELSE timestamptz '2026-01-01 00:00Z' + g * interval '7 seconds'
                             + (g %% 600) * interval '1 minute' END AS read_at,
                   CASE WHEN g %% 3 = 0 THEN NULL ELSE (g %% 600)::float8 END AS minutes,
                   g %% 10 = 0 AS archived,
                   g::bigint AS seq
            FROM generate_series(1, %s) g
            """,
            (rows,),
        )
        conn.execute("ANALYZE bench_rows")
    return name


def drop_db(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stream(dsn: str) -> Iterator[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn, conn.cursor(name="bench") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(QUERY)
        yield from cur


def run_child(writer: str, dsn: str, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    rows = 0
    if writer == "fetch only":
        for _ in stream(dsn):
            rows += 1
    elif writer == "avisos":
        from avisos_reports.fetch import stream_rows
        from avisos_reports.xlsx import Column, Summary, Table, write_workbook

        cols = [Column(h, k) for h, k in zip(HEADINGS, KINDS, strict=True)]  # type: ignore[arg-type]
        with psycopg.connect(dsn) as conn:  # as the service: fetched ahead on a thread
            result = write_workbook(
                out,
                Summary("Bench", [("Rows", "all")], [("Rows", 0, "int")]),
                [Table("Notifications", cols, stream_rows(conn, QUERY, {}, FETCH_ROWS))],
            )
        rows = result.total_rows
    elif writer == "openpyxl write-only":
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Notifications")
        ws.freeze_panes = "A2"
        ws.append(HEADINGS)
        fmts = {"datetime": "yyyy-mm-dd hh:mm", "float": "#,##0.00", "int": "#,##0"}
        protos = []
        for kind in KINDS:
            cell = WriteOnlyCell(ws)
            if kind in fmts:
                cell.number_format = fmts[kind]
            protos.append(cell)
        for r in stream(dsn):
            out_row = []
            for proto, v in zip(protos, r, strict=True):
                c = WriteOnlyCell(ws, v)
                c._style = proto._style  # prepared style, no per-cell lookups
                out_row.append(c)
            ws.append(out_row)
            rows += 1
        wb.save(out)
    elif writer == "xlsxwriter constant_memory":
        import xlsxwriter

        wb = xlsxwriter.Workbook(str(out), {"constant_memory": True})
        ws = wb.add_worksheet("Notifications")
        date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        float_fmt = wb.add_format({"num_format": "#,##0.00"})
        int_fmt = wb.add_format({"num_format": "#,##0"})
        bold = wb.add_format({"bold": True})
        ws.write_row(0, 0, HEADINGS, bold)
        ws.freeze_panes(1, 0)
        fmt_of = {"datetime": date_fmt, "float": float_fmt, "int": int_fmt}
        col_fmts = [fmt_of.get(k) for k in KINDS]
        for r in stream(dsn):
            rows += 1
            for c, v in enumerate(r):
                if v is None:
                    continue
                f = col_fmts[c]
                if f is date_fmt:
                    ws.write_datetime(rows, c, v, f)
                elif isinstance(v, str):
                    ws.write_string(rows, c, v)
                else:
                    ws.write(rows, c, v, f)
        ws.autofilter(0, 0, rows, len(HEADINGS) - 1)
        wb.close()
    elif writer == "rustpy-xlsxwriter":
        from rustpy_xlsxwriter import FastExcel

        count = [0]

        def records() -> Iterator[dict[str, Any]]:
            for r in stream(dsn):
                count[0] += 1
                yield dict(zip(HEADINGS, r, strict=True))

        FastExcel(str(out)).format(datetime_format="yyyy-mm-dd hh:mm").freeze(row=1, col=0).sheet(
            "Notifications", records()
        ).save()
        rows = count[0]
    else:
        raise SystemExit(f"unknown writer {writer}")
    secs = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_secs": usage.ru_utime + usage.ru_stime,
        "writer": writer,
        "rows": rows,
        "secs": secs,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "file_mb": out.stat().st_size / 1e6 if out.exists() else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument(
        "--writers",
        default=None,
        help="comma-separated; default all (stock openpyxl only up to 200,000 rows: it is slow)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dsn", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.dsn, Path(args.out))))
        return
    rows = 100_000 if args.quick else args.rows
    writers = (
        args.writers.split(",")
        if args.writers
        else [w for w in WRITERS if rows <= STOCK_OPENPYXL_MAX_ROWS or w != "openpyxl write-only"]
    )
    print(f"creating {rows:,} rows x 12 columns in PostgreSQL ...", file=sys.stderr)
    t0 = time.perf_counter()
    db = create_db(rows)
    print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for writer in writers:
                out = Path(tmp) / f"{writer.replace(' ', '_')}.xlsx"
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", writer, "--dsn", dsn, "--out", str(out)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                    results.append({"writer": writer, "error": last[:80]})
                else:
                    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"  {writer}: {results[-1]}", file=sys.stderr)
                out.unlink(missing_ok=True)
    finally:
        drop_db(db)
    load = os.getloadavg()[0]
    print(
        f"\n{rows:,} rows x 12 columns, PostgreSQL -> .xlsx, end to end "
        f"({dt.date.today().isoformat()}, {os.cpu_count()} CPUs, load average {load:.1f})\n"
    )
    print(
        f"| {'writer':<28} | {'wall s':>7} | {'CPU s':>7} | {'peak RSS MB':>11} "
        f"| {'file MB':>7} | {'rows/s':>9} |"
    )
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 11}|")
    for r in results:
        if "error" in r:
            print(f"| {r['writer']:<28} | not available: {r['error']}")
            continue
        print(
            f"| {r['writer']:<28} | {r['secs']:>7.1f} | {r['cpu_secs']:>7.1f} "
            f"| {r['rss_mb']:>11.0f} | {r['file_mb']:>7.1f} | {r['rows'] / r['secs']:>9,.0f} |"
        )


if __name__ == "__main__":
    main()
