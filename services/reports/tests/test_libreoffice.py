"""A produced file opens in a real spreadsheet application (LibreOffice Calc, headless),
not only in openpyxl: values, number/date/percent formats as the application reads them,
and formula-looking text kept as text (never evaluated)."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
from pathlib import Path

from avisos_reports.xlsx import Column, Summary, Table, write_workbook

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
# Comma-separated, UTF-8, formatted as shown, one file per sheet (-1).
CSV_FILTER = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"


def test_calc_reads_values_formats_and_keeps_formulas_as_text(tmp_path: Path) -> None:
    assert SOFFICE, "LibreOffice is installed by `make system-deps` (libreoffice-calc-nogui)"
    rows = [
        ["=1+1", 3, 2.5, 0.25, dt.datetime(2026, 11, 28, 9, 30), dt.date(2026, 11, 28), True],
        ["+34 600", -7, 1234.5, 1.0, dt.datetime(2026, 1, 2, 3, 4), dt.date(2026, 1, 2), False],
        ["@SUM(A1)", 0, 0.0, 0.0, None, None, None],
        ["-2+3", 12, 3.49, 0.5, dt.datetime(2026, 5, 6, 7, 8), dt.date(2026, 5, 6), True],
    ]
    cols = [
        Column("Texto", "text"),
        Column("Entero", "int"),
        Column("Real", "float"),
        Column("Pct", "percent"),
        Column("Fecha hora", "datetime"),
        Column("Fecha", "date"),
        Column("Bool", "bool"),
    ]
    path = tmp_path / "report.xlsx"
    write_workbook(
        path,
        Summary("Informe", [("Periodo", "nov 2026")], [("Filas", 4, "int")]),
        [Table("Datos", cols, rows)],
    )
    out = tmp_path / "out"
    subprocess.run(
        [
            SOFFICE,
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--headless",
            "--convert-to",
            CSV_FILTER,
            str(path),
            "--outdir",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with (out / "report-Datos.csv").open(encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Texto", "Entero", "Real", "Pct", "Fecha hora", "Fecha", "Bool"]
    assert table[1] == ["=1+1", "3", "2.5", "25%", "2026-11-28 09:30:00", "2026-11-28", "TRUE"]
    assert table[2][0] == "+34 600" and table[2][1] == "-7" and table[2][3] == "100%"
    assert table[3][0] == "@SUM(A1)"
    assert table[4][0] == "-2+3"  # not evaluated to 1
    with (out / "report-Summary.csv").open(encoding="utf-8") as f:
        summary = list(csv.reader(f))
    assert summary[0][0] == "Informe" and ["Filas", "4"] in summary
