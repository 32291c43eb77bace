"""The streaming writer on its own: formats, safety rules, and flat memory."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from avisos_reports.xlsx import Chart, Column, Summary, Table, safe_sheet_title, write_workbook

COLUMNS = [
    Column("Id", "int"),
    Column("Text"),
    Column("When", "datetime"),
    Column("Day", "date"),
    Column("Amount", "float"),
    Column("Rate", "percent"),
    Column("Flag", "bool"),
]
DANGEROUS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("a")']


def gen(n: int) -> Iterator[tuple[Any, ...]]:
    base = dt.datetime(2026, 1, 1, 8, 0)
    for i in range(n):
        yield (
            i,
            f"row {i}",
            base + dt.timedelta(minutes=i),
            dt.date(2026, 2, 1),
            i / 3,
            0.5,
            i % 2 == 0,
        )


def test_values_formats_and_text_safety(tmp_path: Path) -> None:
    rows: list[tuple[Any, ...]] = [
        (i, s, None, None, None, None, None) for i, s in enumerate(DANGEROUS)
    ]
    rows.append((99, "a < b & c > d _x0041_ \x01", None, None, None, None, None))
    rows.extend(gen(3))
    summary = Summary(
        "Título",
        [("=evil label", "-1")],
        [("Total", 5, "int")],
        [Chart("c", ["a", "b"], [("s", [1.0, 2.0])])],
    )
    path = tmp_path / "x.xlsx"
    write_workbook(path, summary, [Table("Data", COLUMNS, rows)])
    wb = openpyxl.load_workbook(path)
    ws = wb["Data"]
    for r, text in enumerate(DANGEROUS, start=2):
        cell = ws.cell(r, 2)
        assert cell.value == text and cell.data_type == "s" and cell.quotePrefix
    # Markup is escaped; a literal "_x0041_" is escaped as Excel reads it (_x005F_ = "_").
    assert ws.cell(len(DANGEROUS) + 2, 2).value.startswith("a < b & c > d _x005F_x0041_ ")
    last = len(DANGEROUS) + 3
    assert ws.cell(last, 3).value == dt.datetime(2026, 1, 1, 8, 0)
    assert ws.cell(last, 3).number_format == "yyyy-mm-dd hh:mm"
    assert ws.cell(last, 4).number_format == "yyyy-mm-dd"
    assert ws.cell(last + 1, 5).value == pytest.approx(1 / 3)
    assert ws.cell(last, 6).number_format == "0.0%"
    assert ws.cell(last, 7).value is True
    assert ws.cell(last, 1).data_type == "n"
    summary_ws = wb.worksheets[0]
    assert summary_ws["A3"].value == "=evil label" and summary_ws["A3"].data_type == "s"
    assert summary_ws["B3"].value == "-1" and summary_ws["B3"].quotePrefix
    assert summary_ws["B5"].value == 5


def test_memory_stays_flat(tmp_path: Path) -> None:
    def peak(n: int) -> int:
        tracemalloc.start()
        table = Table("Data", COLUMNS, gen(n), expected_rows=n)
        write_workbook(tmp_path / f"m{n}.xlsx", Summary("m"), [table])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2_000), peak(16_000)
    assert large < small * 1.5 + 2_000_000, (small, large)
    wb = openpyxl.load_workbook(tmp_path / "m16000.xlsx", read_only=True)
    assert wb["Data"].max_row == 16_001


def test_sheet_titles_are_valid_and_unique() -> None:
    assert safe_sheet_title("a/b:c*?[d]") == "a b c   d"
    assert safe_sheet_title("x" * 40) == "x" * 31
    assert safe_sheet_title("Data", ["Data"]) == "Data (2)"
