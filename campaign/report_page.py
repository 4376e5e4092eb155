"""`campaign report --html`: one self-contained page, its charts inline SVG; no script, no network.

The page's own Content-Security-Policy forbids every fetch, so it opens the same offline, mailed
as an attachment or from a shared drive. Every name and number is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from .errors import OutputError
from .report import IssueReport, ReportRow

STATUS_COLOURS = {"accepted": "#2e7d32", "rejected": "#c62828", "failed": "#ef6c00", "unknown": "#6a1b9a",
                  "skipped": "#78909c", "pending": "#bdbdbd"}
EVENT_COLOUR = "#1565c0"
BAR_WIDTH, LABEL_WIDTH, BAR_HEIGHT, GAP = 520, 150, 22, 10
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1b1b1b;
       margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 1rem 0; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } tr.total td { font-weight: 600; border-top: 2px solid #999; }
th.events { background: #eef3fb; } div.numbers { overflow-x: auto; } svg { max-width: 100%; height: auto; } svg text { font: 13px system-ui, sans-serif; }
"""


def report_page(report: IssueReport) -> str:
    """The whole page, as text."""
    title = f"Issue {report.issue}: how it did"
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">The real send, from the ledger and {report.events:,} SendGrid events; '
        f"made {escape(report.made_at)}.</p>",
        "<h2>Deliveries by list</h2>", status_chart(report),
        "<h2>What came back, all lists</h2>", events_chart(report),
        "<h2>The numbers</h2>", numbers_table(report), "</body>", "</html>", ""])


def numbers_table(report: IssueReport) -> str:
    head = "".join(f'<th scope="col"{" class=events" if index >= report.ledger_columns else ""}>{escape(column)}</th>'
                   for index, column in enumerate(report.columns))
    rows = [f"<tr><th scope=\"col\">list</th>{head}</tr>"]
    for row in report.rows:
        cells = "".join(f'<td data-column="{escape(column)}">{value:,}</td>'
                        for column, value in zip(report.columns, row.values))
        css = ' class="total"' if row is report.total else ""
        rows.append(f'<tr{css} data-list="{escape(row.name)}"><td>{escape(row.name)}</td>{cells}</tr>')
    return '<div class="numbers"><table>\n' + "\n".join(rows) + "\n</table></div>"


def status_chart(report: IssueReport) -> str:
    """One stacked bar per list (and the total): its recipients by what the ledger says."""
    largest = max(row.value("recipients", report.columns) for row in report.rows) or 1
    height = len(report.rows) * (BAR_HEIGHT + GAP) + 40
    parts = [_svg_open(height, "Deliveries by list, by ledger status")]
    for index, row in enumerate(report.rows):
        y = index * (BAR_HEIGHT + GAP)
        parts.append(_label(row.name, y))
        parts += _stack(row, report.columns, y, largest)
    legend_y = len(report.rows) * (BAR_HEIGHT + GAP) + 14
    for index, (status, colour) in enumerate(STATUS_COLOURS.items()):
        x = LABEL_WIDTH + index * 88
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="{legend_y}">{status}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _stack(row: ReportRow, columns: tuple[str, ...], y: int, largest: int) -> list[str]:
    parts, x = [], float(LABEL_WIDTH)
    for status, colour in STATUS_COLOURS.items():
        value = row.value(status, columns)
        if not value:
            continue
        width = BAR_WIDTH * value / largest
        parts.append(f'<rect class="bar" data-status="{status}" data-value="{value}" x="{x:.1f}" y="{y}" '
                     f'width="{max(width, 1):.1f}" height="{BAR_HEIGHT}" fill="{colour}">'
                     f"<title>{escape(row.name)}: {value:,} {status}</title></rect>")
        x += width
    parts.append(f'<text x="{x + 6:.1f}" y="{y + BAR_HEIGHT - 6}">{row.value("recipients", columns):,}</text>')
    return parts


def events_chart(report: IssueReport) -> str:
    """One bar per kind of event for the total, as a share of the accepted messages."""
    total, columns = report.total, report.columns[report.ledger_columns:]
    accepted = total.value("accepted", report.columns) or 1
    height = len(columns) * (BAR_HEIGHT + GAP) + 10
    parts = [_svg_open(height, "What came back, as a share of accepted messages")]
    for index, column in enumerate(columns):
        y, value = index * (BAR_HEIGHT + GAP), total.value(column, report.columns)
        width = BAR_WIDTH * min(value / accepted, 1.0)
        parts.append(_label(column, y))
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y}" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" fill="#f1f1f1"/>')
        parts.append(f'<rect class="bar" data-event="{escape(column)}" data-value="{value}" x="{LABEL_WIDTH}" '
                     f'y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" fill="{EVENT_COLOUR}"/>')
        parts.append(f'<text x="{LABEL_WIDTH + BAR_WIDTH + 6}" y="{y + BAR_HEIGHT - 6}">'
                     f"{value:,} ({100 * value / accepted:.1f}%)</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_open(height: int, label: str) -> str:
    width = LABEL_WIDTH + BAR_WIDTH + 120
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">')


def _label(text: str, y: int) -> str:
    return f'<text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 6}" text-anchor="end">{escape(text)}</text>'


def write_report_page(report: IssueReport, path: Path) -> None:
    try:
        Path(path).write_text(report_page(report), encoding="utf-8")
    except OSError as problem:
        raise OutputError(f"{path}: cannot write the report ({problem.strerror})") from None
