"""`campaign report`: how an issue did, per list and in total, from the ledger and SendGrid's events.

From the ledger's real deliveries: recipients, accepted, rejected, failed (the provider failed, or
refused the request: nothing sent), unknown, skipped (suppressed while the send ran), pending (not
sent yet). From the events (events.event_counts, each address once per kind): delivered, deferred,
bounced, blocked, dropped, spam reports, unsubscribes, and unique opens and clicks when tracking
was on (the settings say so, or such events came). Rehearsals (outbox, sandbox) are not reported.

The same IssueReport becomes a terminal table (`report_table`), a spreadsheet-safe CSV
(`write_report_csv`) and a self-contained HTML page with inline SVG charts (report_page.py).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import ledger
from .errors import UsageError
from .events import event_counts
from .spreadsheet import write_csv

TOTAL = "all lists"
# (column, the ledger statuses it counts)
LEDGER_COLUMNS = (("recipients", ledger.STATUSES), ("accepted", (ledger.ACCEPTED,)),
                  ("rejected", (ledger.REJECTED,)), ("failed", (ledger.FAILED, ledger.REFUSED)),
                  ("unknown", (ledger.UNKNOWN,)), ("skipped", (ledger.SKIPPED,)),
                  ("pending", (ledger.PENDING, ledger.IN_FLIGHT)))
# (column, the events it counts)
EVENT_COLUMNS = (("delivered", ("delivered",)), ("deferred", ("deferred",)), ("bounced", ("bounce",)),
                 ("blocked", ("blocked",)), ("dropped", ("dropped",)), ("spam reports", ("spamreport",)),
                 ("unsubscribes", ("unsubscribe", "group_unsubscribe")))
TRACKING_COLUMNS = (("unique opens", ("open",)), ("unique clicks", ("click",)))


@dataclass(frozen=True)
class ReportRow:
    name: str                  # a list's name, or TOTAL
    values: tuple[int, ...]    # in the order of IssueReport.columns

    def value(self, column: str, columns: tuple[str, ...]) -> int:
        return self.values[columns.index(column)]


@dataclass(frozen=True)
class IssueReport:
    issue: int
    columns: tuple[str, ...]
    ledger_columns: int        # the first this many columns come from the ledger, the rest from events
    rows: tuple[ReportRow, ...]  # one per list, then the total
    events: int                # events stored for this issue
    made_at: str               # when the report was made, UTC

    @property
    def total(self) -> ReportRow:
        return self.rows[-1]


def build_report(connection: sqlite3.Connection, issue: int, list_order: tuple[str, ...],
                 tracking: bool) -> IssueReport:
    """The report of `issue`'s real send; UsageError when it has none."""
    if not ledger.has_deliveries(connection, issue, ledger.REAL):
        raise UsageError(f"issue {issue} has no real send in the ledger; `campaign status --issue {issue}` "
                         "shows what it has")
    statuses = ledger.counts_by(connection, issue, ledger.REAL, "list")
    statuses[""] = ledger.counts(connection, issue, ledger.REAL)
    events = event_counts(connection, issue)
    stored = connection.execute("SELECT count(*) FROM provider_events WHERE issue = ?", (issue,)).fetchone()[0]
    tracked = tracking or any(event in events for event in ("open", "click"))
    event_columns = EVENT_COLUMNS + (TRACKING_COLUMNS if tracked else ())
    names = [name for name in list_order if name in statuses] + sorted(set(statuses) - set(list_order) - {""})
    rows = []
    for name in [*names, ""]:
        from_ledger = [sum(statuses[name].get(status, 0) for status in counted) for _, counted in LEDGER_COLUMNS]
        from_events = [sum(events.get(event, {}).get(name, 0) for event in counted) for _, counted in event_columns]
        rows.append(ReportRow(name or TOTAL, tuple(from_ledger + from_events)))
    columns = tuple(column for column, _ in LEDGER_COLUMNS + event_columns)
    return IssueReport(issue, columns, len(LEDGER_COLUMNS), tuple(rows), stored,
                       datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def report_table(report: IssueReport) -> str:
    """A plain-text table: lists down, numbers across, the total last."""
    width = max(len(row.name) for row in report.rows) + 2
    cells = [max(len(column), 7) for column in report.columns]
    lines = [f"Issue {report.issue}: the real send, from the ledger and {report.events:,} SendGrid events",
             "list".ljust(width) + " ".join(column.rjust(size) for column, size in zip(report.columns, cells))]
    for row in report.rows:
        lines.append(row.name.ljust(width) + " ".join(f"{value:,}".rjust(size)
                                                      for value, size in zip(row.values, cells)))
    return "\n".join(lines)


def write_report_csv(report: IssueReport, path: Path) -> int:
    """One row per list and the total; cells spreadsheet-safe. Returns the rows written."""
    return write_csv(path, ("issue", "list", *report.columns),
                     ((report.issue, row.name, *row.values) for row in report.rows), what="report")


def issue_report(database: Path, issue: int, list_order: tuple[str, ...], tracking: bool) -> IssueReport:
    """build_report on the ledger file at `database` (which must exist)."""
    if not Path(database).exists():
        raise UsageError(f"{database}: no ledger yet, so nothing was sent; check `database` in campaign.toml")
    connection = ledger.open_ledger(Path(database))
    try:
        return build_report(connection, issue, list_order, tracking)
    finally:
        connection.close()
