"""Excel files: a summary sheet built with openpyxl, then bulk sheets streamed fast.

The workbook is an ordinary :class:`openpyxl.Workbook` (the summary sheet with its charts
and every style come from openpyxl), saved by :class:`_StreamingExcelWriter`, which
replaces openpyxl's per-cell worksheet writer for the table sheets: their XML is
generated row by row from an iterator with one compiled function per sheet, and
compressed on a second thread while the next rows are being built. Memory stays flat
whatever the row count (only one chunk of XML is held at a time); the first
:data:`WIDTH_SAMPLE_ROWS` rows are held briefly to fit the column widths.

Safety: strings are written as inline strings (``t="inlineStr"``), never as formulas;
one that starts with ``=``, ``+``, ``-``, ``@``, tab or CR also gets a style with
``quotePrefix`` so that Excel keeps it as text even when the cell is edited. The same
rule applies to the summary sheet (:func:`put`).

What the caller must do: build :class:`Table` objects whose ``rows`` iterator yields
sequences of Python values in column order; ``datetime`` values must already be in the
reader's wall-clock time (naive; the report SQL converts with ``AT TIME ZONE``).
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

from openpyxl import Workbook
from openpyxl.chart import BarChart, PieChart, Reference
from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
from openpyxl.packaging.relationship import RelationshipList
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

ColumnKind = Literal["text", "int", "float", "percent", "datetime", "date", "bool"]

#: Rows held in memory to fit column widths before streaming the rest.
WIDTH_SAMPLE_ROWS = 500
#: Rows between two progress callbacks.
PROGRESS_EVERY_ROWS = 10_000
#: Approximate characters of XML handed to the compressing thread at once.
CHUNK_CHARS = 1 << 20
#: Excel's limit on the characters of one cell.
MAX_CELL_CHARS = 32_767
MIN_WIDTH_CHARS = 8.0
MAX_WIDTH_CHARS = 60.0

NUMBER_FORMATS: dict[ColumnKind, str] = {
    "text": "@",
    "int": "#,##0",
    "float": "#,##0.00",
    "percent": "0.0%",
    "datetime": "yyyy-mm-dd hh:mm",
    "date": "yyyy-mm-dd",
    "bool": "General",
}
FIXED_WIDTHS: dict[ColumnKind, float] = {"datetime": 17.0, "date": 11.0, "percent": 9.0}

#: First characters that make spreadsheet programs treat a typed value as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
HEADER_BORDER = Border(bottom=Side(style="thin", color="000000"))
TITLE_FONT = Font(bold=True, size=14)

_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_EXCEL_EPOCH_DATE = dt.date(1899, 12, 30)
_DAY = dt.timedelta(days=1)

# Characters XML cannot carry verbatim (or that a parser would normalise), and the
# literal ``_xHHHH_`` sequences Excel would decode.
_NEEDS_ESCAPE = re.compile(r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LITERAL_ESCAPE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")


def xml_text(value: str) -> str:
    """``value`` escaped for an XML text node of a worksheet (Excel's rules)."""
    if len(value) > MAX_CELL_CHARS:
        value = value[:MAX_CELL_CHARS]
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    value = _LITERAL_ESCAPE.sub(r"_x005F_\1", value)
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = value.replace("\r", "&#13;")
    return _CONTROL.sub(lambda m: f"_x{ord(m.group()):04X}_", value)


def is_formula_like(value: str) -> bool:
    return value.startswith(FORMULA_TRIGGERS)


@dataclass(frozen=True)
class Column:
    heading: str
    kind: ColumnKind = "text"


@dataclass
class Table:
    """One sheet of rows. ``rows`` is consumed once, lazily, while the file is written."""

    title: str
    columns: Sequence[Column]
    rows: Iterable[Sequence[Any]]
    #: Expected number of rows (for progress); None if unknown.
    expected_rows: int | None = None
    #: Filled in while writing.
    written_rows: int = 0


@dataclass(frozen=True)
class Chart:
    title: str
    categories: Sequence[str]
    series: Sequence[tuple[str, Sequence[float]]]
    kind: Literal["bar", "pie"] = "bar"


@dataclass
class Summary:
    title: str
    #: Free lines under the title (filters, period, generated at), as (label, text).
    lines: Sequence[tuple[str, str]] = ()
    #: Totals as (label, value, kind).
    totals: Sequence[tuple[str, Any, ColumnKind]] = ()
    charts: Sequence[Chart] = ()
    sheet_title: str = "Summary"


@dataclass
class WriteResult:
    rows_by_sheet: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows_by_sheet.values())


ProgressFn = Callable[[int], None]


def to_excel_serial(value: dt.datetime | dt.date) -> float:
    """Days since Excel's epoch (1899-12-30), for a naive wall-clock datetime or a date."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        return (value - _EXCEL_EPOCH) / _DAY
    return float((value - _EXCEL_EPOCH_DATE).days)


def put(ws: Worksheet, row: int, column: int, value: Any, kind: ColumnKind = "text") -> None:
    """Set a cell of an ordinary (openpyxl) sheet, never as a formula."""
    cell = ws.cell(row=row, column=column)
    if isinstance(value, str):
        value = value[:MAX_CELL_CHARS]
        cell.value = value
        # openpyxl turns strings starting with "=" into formulas; force text.
        cell.data_type = "s"
        if is_formula_like(value):
            cell.quotePrefix = True
    else:
        cell.value = value
    if kind != "text":
        cell.number_format = NUMBER_FORMATS[kind]


# --- the fast sheet writer --------------------------------------------------------------


@dataclass(frozen=True)
class _SheetStyles:
    header: int
    by_kind: dict[ColumnKind, int]
    text_quoted: int


def _register_styles(ws: Worksheet) -> _SheetStyles:
    """Create the cell styles a bulk sheet uses (in the workbook's style table) and return
    their indices. The prototype cell is discarded: the sheet XML is written by us."""
    proto = ws.cell(row=1, column=1)
    proto.font = HEADER_FONT
    proto.fill = HEADER_FILL
    proto.border = HEADER_BORDER
    proto.alignment = Alignment(vertical="center")
    header = proto.style_id
    # One cell per style: openpyxl mutates a cell's style array in place, so a cell
    # must not be restyled after its style_id was taken.
    by_kind: dict[ColumnKind, int] = {}
    for i, (kind, fmt) in enumerate(NUMBER_FORMATS.items(), 1):
        cell = ws.cell(row=2, column=i)
        cell.number_format = fmt
        by_kind[kind] = cell.style_id
    cell = ws.cell(row=3, column=1)
    cell.number_format = "@"
    cell.quotePrefix = True
    quoted = cell.style_id
    ws._cells.clear()  # the prototypes are not content
    return _SheetStyles(header, by_kind, quoted)


def _text_cell(style: int, quoted_style: int) -> Callable[[Any], str]:
    plain = f'<c s="{style}" t="inlineStr"><is><t xml:space="preserve">'
    quoted = f'<c s="{quoted_style}" t="inlineStr"><is><t xml:space="preserve">'
    needs = _NEEDS_ESCAPE.search
    triggers = FORMULA_TRIGGERS

    def enc(v: Any) -> str:
        s = v if type(v) is str else str(v)
        s2 = xml_text(s) if len(s) > MAX_CELL_CHARS or needs(s) is not None else s
        return (quoted if s.startswith(triggers) else plain) + s2 + "</t></is></c>"

    return enc


def _compile_row_function(
    columns: Sequence[Column], styles: _SheetStyles
) -> Callable[[Sequence[Any]], str]:
    """Generate ``row_xml(values) -> '<row>…</row>'`` for these columns.

    Numbers are formatted inline (no call per cell); text goes through its encoder.
    Cells carry no ``r`` reference: every position is written (an empty styled cell for None), so
    cells follow each other and Excel, LibreOffice and openpyxl place them in order."""
    env: dict[str, Any] = {
        "_EPOCH": _EXCEL_EPOCH,
        "_EPOCH_DATE": _EXCEL_EPOCH_DATE,
        "_DAY": _DAY,
        "_dt": dt.datetime,
        "_serial": to_excel_serial,
        "_Decimal": Decimal,
    }
    names = [f"v{i}" for i in range(len(columns))]
    parts: list[str] = []
    for i, col in enumerate(columns):
        v = names[i]
        s = styles.by_kind[col.kind]
        if col.kind == "text":
            env[f"_t{i}"] = _text_cell(s, styles.text_quoted)
            expr = f"_t{i}({v})"
        elif col.kind == "int":
            expr = f"'<c s=\"{s}\"><v>' + str({v}) + '</v></c>'"
        elif col.kind in ("float", "percent"):
            expr = f"'<c s=\"{s}\"><v>' + repr(float({v})) + '</v></c>'"
        elif col.kind == "datetime":
            expr = (
                f"'<c s=\"{s}\"><v>' + repr((({v}.replace(tzinfo=None)) - _EPOCH) / _DAY "
                f"if type({v}) is _dt else _serial({v})) + '</v></c>'"
            )
        elif col.kind == "date":
            expr = f"'<c s=\"{s}\"><v>' + repr(_serial({v})) + '</v></c>'"
        else:  # bool
            cell = f'<c s="{s}" t="b"><v>'
            expr = f"('{cell}1</v></c>' if {v} else '{cell}0</v></c>')"
        # An empty cell keeps the column's style (a value typed in later is formatted).
        parts.append(f"('<c s=\"{s}\"/>' if {v} is None else {expr})")
    unpack = ", ".join(names) + ("," if len(names) == 1 else "")
    src = (
        "def row_xml(values):\n"
        f"    {unpack} = values\n"
        "    return ''.join(('<row>', " + ", ".join(parts) + ", '</row>'))\n"
    )
    exec(compile(src, "<avisos_reports.xlsx row>", "exec"), env)  # noqa: S102 - our own template
    fn: Callable[[Sequence[Any]], str] = env["row_xml"]
    return fn


def _fit_width(kind: ColumnKind, heading: str, sample: Iterable[Any]) -> float:
    width = float(len(heading) + 3)  # room for the autofilter button
    if kind in FIXED_WIDTHS:
        return max(width, FIXED_WIDTHS[kind])
    longest = 0
    for value in sample:
        if value is None:
            continue
        if kind == "float":
            n = len(f"{float(value):,.2f}")
        elif kind == "int":
            n = len(f"{value:,}") if isinstance(value, int) else len(str(value))
        else:
            n = max((len(line) for line in str(value).split("\n")), default=0)
        longest = max(longest, n)
    return min(MAX_WIDTH_CHARS, max(MIN_WIDTH_CHARS, width, longest + 2.0))


class _CompressingSink:
    """Hands chunks of XML to a thread that encodes and writes them into the zip member.

    zlib releases the GIL while compressing, so compression overlaps with building the
    next rows on the other core."""

    _STOP = object()

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xlsx-compress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None:
                try:
                    assert isinstance(item, str)
                    self._out.write(item.encode("utf-8"))
                except BaseException as exc:  # reported to the producer in put()/close()
                    self._error = exc

    def put(self, chunk: str) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error


_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
)
# After the optional <dimension> (the schema's element order matters to Excel).
_SHEET_VIEWS = (
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    "</sheetView></sheetViews>"
    '<sheetFormatPr defaultRowHeight="15"/>'
)


def write_table_xml(
    out: IO[bytes],
    table: Table,
    styles: _SheetStyles,
    on_rows: Callable[[int], None],
) -> int:
    """Write one table as worksheet XML into ``out``; return the number of data rows."""
    columns = table.columns
    rows = iter(table.rows)
    sample = list(islice(rows, WIDTH_SAMPLE_ROWS))
    widths = [
        _fit_width(col.kind, col.heading, (r[i] for r in sample)) for i, col in enumerate(columns)
    ]
    head = [_SHEET_HEAD]
    if table.expected_rows is not None:
        # A hint for readers that size the sheet up front (openpyxl's read-only mode);
        # it must come before sheetData, so it is the expected count, not the written one.
        last_col = get_column_letter(len(columns))
        head.append(f'<dimension ref="A1:{last_col}{table.expected_rows + 1}"/>')
    head.append(_SHEET_VIEWS)
    head.append("<cols>")
    for i, w in enumerate(widths, 1):
        head.append(f'<col min="{i}" max="{i}" width="{w:.1f}" customWidth="1"/>')
    head.append("</cols><sheetData>")
    head.append('<row r="1">')
    for col in columns:
        head.append(
            f'<c s="{styles.header}" t="inlineStr"><is><t xml:space="preserve">'
            f"{xml_text(col.heading)}</t></is></c>"
        )
    head.append("</row>")

    row_xml = _compile_row_function(columns, styles)
    sink = _CompressingSink(out)
    count = 0
    try:
        sink.put("".join(head))
        buf: list[str] = []
        size = 0
        for source in (sample, rows):
            for values in source:
                x = row_xml(values)
                buf.append(x)
                size += len(x)
                count += 1
                if size >= CHUNK_CHARS:
                    sink.put("".join(buf))
                    buf.clear()
                    size = 0
                if count % PROGRESS_EVERY_ROWS == 0:
                    on_rows(PROGRESS_EVERY_ROWS)
        buf.append("</sheetData>")
        last = get_column_letter(len(columns))
        buf.append(f'<autoFilter ref="A1:{last}{count + 1}"/>')
        buf.append(
            '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>'
            "</worksheet>"
        )
        sink.put("".join(buf))
    finally:
        sink.close()
    on_rows(count % PROGRESS_EVERY_ROWS)
    return count


class _StreamingExcelWriter(ExcelWriter):  # type: ignore[misc]
    """openpyxl's writer, except that sheets listed in ``tables`` are streamed by us."""

    def __init__(
        self,
        workbook: Workbook,
        archive: zipfile.ZipFile,
        tables: dict[str, tuple[Table, _SheetStyles]],
        on_rows: Callable[[int], None],
        result: WriteResult,
    ) -> None:
        super().__init__(workbook, archive)
        self._bulk = tables
        self._on_rows = on_rows
        self._result = result

    def write_worksheet(self, ws: Worksheet) -> None:
        entry = self._bulk.get(ws.title)
        if entry is None:
            super().write_worksheet(ws)
            return
        table, styles = entry
        ws._drawing = SpreadsheetDrawing()
        ws._rels = RelationshipList()
        with self._archive.open(ws.path[1:], "w", force_zip64=True) as out:
            count = write_table_xml(out, table, styles, self._on_rows)
        table.written_rows = count
        self._result.rows_by_sheet[ws.title] = count
        # The workbook part (written after the sheets) names the filter range.
        ws.auto_filter.ref = f"A1:{get_column_letter(len(table.columns))}{count + 1}"
        self.manifest.append(ws)


def _write_summary(ws: Worksheet, summary: Summary) -> None:
    ws.title = summary.sheet_title
    put(ws, 1, 1, summary.title)
    ws.cell(row=1, column=1).font = TITLE_FONT
    row = 3
    for label, text in summary.lines:
        put(ws, row, 1, label)
        ws.cell(row=row, column=1).font = Font(bold=True)
        put(ws, row, 2, text)
        row += 1
    if summary.lines:
        row += 1
    for label, value, kind in summary.totals:
        put(ws, row, 1, label)
        put(ws, row, 2, value, kind)
        row += 1
    ws.column_dimensions["A"].width = max(
        [24.0] + [len(label) + 2.0 for label, *_ in [*summary.lines, *summary.totals]]
    )
    ws.column_dimensions["B"].width = 28.0
    ws.freeze_panes = "A2"

    # Chart data blocks go to the right (columns E...), each chart beside its block.
    data_col = 5
    anchor_row = 3
    for chart_spec in summary.charts:
        if not chart_spec.categories:
            continue
        put(ws, anchor_row, data_col, chart_spec.title)
        ws.cell(row=anchor_row, column=data_col).font = Font(bold=True)
        for j, (name, _values) in enumerate(chart_spec.series, 1):
            put(ws, anchor_row, data_col + j, name)
        for i, category in enumerate(chart_spec.categories, 1):
            put(ws, anchor_row + i, data_col, str(category))
            for j, (_name, values) in enumerate(chart_spec.series, 1):
                put(ws, anchor_row + i, data_col + j, values[i - 1], "float")
        n = len(chart_spec.categories)
        cats = Reference(ws, min_col=data_col, min_row=anchor_row + 1, max_row=anchor_row + n)
        data = Reference(
            ws,
            min_col=data_col + 1,
            max_col=data_col + len(chart_spec.series),
            min_row=anchor_row,
            max_row=anchor_row + n,
        )
        chart: BarChart | PieChart = PieChart() if chart_spec.kind == "pie" else BarChart()
        chart.title = chart_spec.title
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(cats)
        chart.width = 16
        chart.height = 7.5
        chart_col = get_column_letter(data_col + len(chart_spec.series) + 2)
        ws.add_chart(chart, f"{chart_col}{anchor_row}")
        anchor_row += max(n + 3, 16)
    ws.column_dimensions[get_column_letter(data_col)].width = 24.0


def write_workbook(
    path: Path,
    summary: Summary,
    tables: Sequence[Table],
    *,
    on_rows: ProgressFn | None = None,
    zip_level: int = 1,
) -> WriteResult:
    """Write ``summary`` then one sheet per table to ``path`` (.xlsx).

    ``on_rows(n)`` is called from the writing thread each time ``n`` more rows are done."""
    wb = Workbook()
    _write_summary(wb.active, summary)
    bulk: dict[str, tuple[Table, _SheetStyles]] = {}
    for table in tables:
        ws = wb.create_sheet(safe_sheet_title(table.title, bulk))
        bulk[ws.title] = (table, _register_styles(ws))
    result = WriteResult()
    archive = zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=zip_level
    )
    writer = _StreamingExcelWriter(wb, archive, bulk, on_rows or (lambda _n: None), result)
    try:
        writer.save()
    finally:
        archive.close()
    return result


_SHEET_FORBIDDEN = re.compile(r"[\[\]\*\?/\\:]")


def safe_sheet_title(title: str, taken: Iterable[str] = ()) -> str:
    """A valid, unique sheet title (max 31 chars, none of []*?/\\:)."""
    base = _SHEET_FORBIDDEN.sub(" ", title).strip("' ")[:31] or "Sheet"
    used = set(taken)
    candidate, n = base, 2
    while candidate in used:
        suffix = f" ({n})"
        candidate = base[: 31 - len(suffix)] + suffix
        n += 1
    return candidate
