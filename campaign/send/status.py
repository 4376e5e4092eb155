"""What the ledger says about one issue's send, for `campaign status`: it reads, and changes no record."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .. import ledger
from ..errors import LedgerError
from ..ledger import SendRun
from ..spreadsheet import write_csv

# Shown for a row whose status says more than its (empty) last error.
NO_REASON = {"in_flight": "with the provider right now, or left there by a send that was killed: delivery unknown "
                          "(the next send marks it unknown)"}
PROBLEMS = ("failed", "unknown", "refused", "rejected", "skipped", "in_flight")   # the statuses listed with their reasons


@dataclass(frozen=True)
class KindStatus:
    """One kind of send of the issue (real deliveries, or a rehearsal)."""

    kind: str                                       # real | outbox | sandbox
    counts: dict[str, int]                          # {status: n}
    by_list: dict[str, dict[str, int]]              # {list: {status: n}}
    by_provider: dict[str, dict[str, int]]          # {provider: {status: n}}
    runs: tuple[SendRun, ...]
    problems: dict[str, dict[str, list[str]]]       # {status: {reason: [email, ...]}}, for PROBLEMS


@dataclass(frozen=True)
class IssueStatus:
    issue: int
    database: Path
    exists: bool                                    # False: no ledger yet, nothing was sent
    kinds: tuple[KindStatus, ...] = ()
    csv_rows: int | None = None                     # rows written to the CSV, when one was asked for


def issue_status(database: Path, issue: int, csv_path: Path | None = None) -> IssueStatus:
    """Every kind of send recorded for `issue`; with `csv_path`, also one spreadsheet-safe row per recipient."""
    if not database.exists():
        return IssueStatus(issue, database, exists=False)
    connection = ledger.open_ledger(database)
    try:
        kinds = tuple(_kind_status(connection, issue, kind) for kind in ledger.kinds_recorded(connection, issue))
        rows = export_csv(connection, issue, csv_path) if csv_path else None
    finally:
        connection.close()
    return IssueStatus(issue, database, exists=True, kinds=kinds, csv_rows=rows)


def _kind_status(connection: sqlite3.Connection, issue: int, kind: str) -> KindStatus:
    problems: dict[str, dict[str, list[str]]] = {}
    for status in PROBLEMS:
        for row in ledger.deliveries(connection, issue, kind, [status]):
            reasons = problems.setdefault(status, {})
            reasons.setdefault(row.last_error or NO_REASON.get(status, "(no reason recorded)"), []).append(row.email)
    runs = tuple(ledger.runs(connection, issue, kind))
    by_provider = ledger.counts_by(connection, issue, kind, "provider")
    if "(none yet)" in by_provider and runs:   # rows no provider was handed yet: name the run that tried
        by_provider[f"{runs[-1].provider} (not reached yet)"] = by_provider.pop("(none yet)")
    return KindStatus(kind=kind, counts=ledger.counts(connection, issue, kind),
                      by_list=ledger.counts_by(connection, issue, kind, "list"),
                      by_provider=by_provider, runs=runs, problems=problems)


EXPORT_COLUMNS = ("issue", "kind", "email", "name", "lists", "status", "provider", "message_id", "delivery_id",
                  "batch_id", "attempts", "last_error", "created_at", "updated_at", "accepted_at")


def export_csv(connection: sqlite3.Connection, issue: int, path: Path) -> int:
    """One spreadsheet-safe row per recipient and kind of the issue; returns the rows written."""
    rows = connection.execute(
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM deliveries WHERE issue = ? "
        "ORDER BY CASE kind WHEN 'real' THEN 0 ELSE 1 END, kind, rowid", (issue,))
    return write_csv(path, EXPORT_COLUMNS, rows, what="export", error=LedgerError)
