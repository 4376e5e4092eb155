"""People who must never get anything: unsubscribed, bounced, complained, or removed by hand.

Suppressions live in the ledger database (table `suppressions`, migration
0001), keyed by the normalised address, so they apply to every send, dry run
and test send to lists, and survive the address being added to the recipients
file again. The first suppression of an address stands: adding or importing it
again changes nothing.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import date as Date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from email_validator import EmailNotValidError

from .addresses import normalise_email
from .errors import RecipientsError, UsageError
from .ledger import open_ledger, transaction
from .ledger_schema import SUPPRESSION_REASONS
from .spreadsheet import RowProblem, clean_text, reading_csv

REASONS = SUPPRESSION_REASONS
UNSUBSCRIBE_SOURCES = ("one-click", "web", "mailto")
PROVIDER_SOURCES = ("sendgrid-event", "sendgrid-sync")  # SendGrid's Event Webhook; `suppress sync`
CONSENT_NEEDED = ("unsubscribed", "complained")   # the person said no: only they can say yes again
IMPORT_COLUMNS = ("email", "reason")  # plus an optional `date` (YYYY-MM-DD) and `note`


@dataclass(frozen=True)
class Suppression:
    email: str       # normalised
    reason: str      # one of REASONS
    date: str        # YYYY-MM-DD
    note: str = ""
    source: str = ""  # how it came: UNSUBSCRIBE_SOURCES or PROVIDER_SOURCES ('' for by hand or imported)
    at: str = field(default="", compare=False)  # when, ISO 8601 UTC, to the second (midnight when dated)


@dataclass(frozen=True)
class ImportResult:
    added: int
    already: int                     # addresses that were suppressed before (left as they were)
    problems: tuple[RowProblem, ...]  # rows not imported, by file line


def add_suppression(
    connection: sqlite3.Connection, email: str, reason: str, on: Date | str | None = None, note: str = ""
) -> tuple[Suppression, bool]:
    """Suppress one address. Returns the suppression in force and whether it is new."""
    suppression = _suppression(email, reason, on, note)
    with transaction(connection):
        added = _insert(connection, suppression)
    if added:
        return suppression, True
    return _get(connection, suppression.email), False


def record_unsubscribe(connection: sqlite3.Connection, email: str, source: str,
                       at: datetime | None = None) -> tuple[Suppression, bool]:
    """A person unsubscribed themselves (`source` says how), at `at` (default now, UTC), to the
    second. Returns the suppression in force and whether it is new: the first record stands."""
    if source not in UNSUBSCRIBE_SOURCES:
        raise UsageError(f"unknown unsubscribe source {source!r}; use one of {', '.join(UNSUBSCRIBE_SOURCES)}")
    moment = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    suppression = replace(_suppression(email, "unsubscribed", moment.date(), ""), source=source,
                          at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with transaction(connection):
        added = _insert(connection, suppression)
    if added:
        return suppression, True
    return _get(connection, suppression.email), False


def provider_suppression(email: str, reason: str, at: datetime, source: str, note: str = "") -> Suppression:
    """What a provider reported about an address it already normalised, at the moment it gave."""
    if reason not in REASONS or source not in PROVIDER_SOURCES:
        raise ValueError(f"{reason!r} from {source!r}")
    moment = at.astimezone(timezone.utc)
    return Suppression(email, reason, moment.date().isoformat(), clean_text(note)[:200], source,
                       moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def insert_suppression(connection: sqlite3.Connection, suppression: Suppression) -> bool:
    """Add one suppression inside the caller's transaction; False when the address was suppressed
    already (the first record stands)."""
    return _insert(connection, suppression)

def remove_suppression(connection: sqlite3.Connection, email: str, *, consent: bool = False) -> Suppression:
    """Lift one suppression and return it. Someone who unsubscribed or complained is mailed
    again only with `consent` (they asked for it); bounces and manual ones lift freely."""
    try:
        normalised = normalise_email(clean_text(email))
    except EmailNotValidError as error:
        raise UsageError(f"invalid address {email!r}: {error}") from None
    with transaction(connection):
        row = connection.execute("SELECT 1 FROM suppressions WHERE email = ?", (normalised,)).fetchone()
        if row is None:
            raise UsageError(f"{normalised} is not suppressed; `campaign suppress list` shows who is")
        suppression = _get(connection, normalised)
        if suppression.reason in CONSENT_NEEDED and not consent:
            raise UsageError(f"{normalised} {suppression.reason} on {suppression.date}: lift it only if they "
                             "asked to get the newsletter again, with --consent")
        connection.execute("DELETE FROM suppressions WHERE email = ?", (normalised,))
    return suppression


def import_suppressions(connection: sqlite3.Connection, path: Path, reason: str | None = None) -> ImportResult:
    """Import a CSV with columns email, reason[, date][, note], or SendGrid's export of one of its
    suppression lists (created, email, reason, status: `reason` then says which kind the file is).
    `reason` also stands for every row of our own format. Bad rows are reported, the rest imported."""
    path = Path(path)
    if reason is not None and reason not in REASONS:
        raise UsageError(f"unknown reason {reason!r}; use one of {', '.join(REASONS)}")
    with reading_csv(path, "suppressions") as stream:
        reader = csv.DictReader(stream)
        columns = [clean_text(name or "").lower() for name in reader.fieldnames or []]
        from_sendgrid = "created" in columns and "email" in columns
        if from_sendgrid and reason is None:
            raise UsageError(f"{path}: this is SendGrid's export (created, email, reason, status); say which "
                             "list it came from with --reason bounced, complained or unsubscribed")
        needed = ("email",) if reason else IMPORT_COLUMNS
        missing = [column for column in needed if column not in columns]
        if missing:
            raise RecipientsError(f"{path}: the header has no {missing[0]!r} column; a suppressions CSV needs "
                                  "email, reason and optionally date (or SendGrid's created,email,reason,status)")
        reader.fieldnames = columns
        suppressions, problems = _read_rows(reader, reason, from_sendgrid)
    added = 0
    with transaction(connection):
        for suppression in suppressions:
            added += _insert(connection, suppression)
    return ImportResult(added=added, already=len(suppressions) - added, problems=tuple(problems))


def _read_rows(reader: csv.DictReader, reason: str | None,
               from_sendgrid: bool) -> tuple[list[Suppression], list[RowProblem]]:
    suppressions, problems = [], []
    previous_line = reader.line_num
    for row in reader:
        line, previous_line = previous_line + 1, reader.line_num
        email = clean_text(row.get("email") or "")
        if None in row or any(value is None for value in row.values()):
            problems.append(RowProblem(line, email, "the number of columns differs from the header"))
            continue
        try:
            if from_sendgrid:
                note = clean_text(f"SendGrid: {row.get('reason') or ''} {row.get('status') or ''}")
                on = _created(clean_text(row.get("created") or ""))
            else:
                note, on = clean_text(row.get("note") or ""), clean_text(row.get("date") or "") or None
            suppressions.append(_suppression(email, reason or clean_text(row["reason"]).lower(), on, note))
        except UsageError as error:
            problems.append(RowProblem(line, email, str(error)))
    return suppressions, problems


def _created(value: str) -> str | None:
    """SendGrid's `created`: a Unix time, or a date (and time) as text."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value), timezone.utc).date().isoformat()
    return value or None


def list_suppressions(connection: sqlite3.Connection) -> list[Suppression]:
    """Every suppression, oldest first."""
    rows = connection.execute(
        "SELECT email, reason, created_at, note, source FROM suppressions ORDER BY created_at, email")
    return [Suppression(row[0], row[1], row[2][:10], row[3], row[4], row[2]) for row in rows]


def find_suppression(connection: sqlite3.Connection, email: str) -> Suppression | None:
    """The suppression of one normalised address, or None."""
    found = connection.execute("SELECT 1 FROM suppressions WHERE email = ?", (email,)).fetchone()
    return None if found is None else _get(connection, email)


def suppressed_among(connection: sqlite3.Connection, emails: Sequence[str]) -> dict[str, Suppression]:
    """The suppressions of these normalised addresses (a batch): one query, not one per address."""
    rows = connection.execute(
        "SELECT email, reason, created_at, note, source FROM suppressions "
        "WHERE email IN (SELECT value FROM json_each(?))", (json.dumps(list(emails)),))
    return {row[0]: Suppression(row[0], row[1], row[2][:10], row[3], row[4], row[2]) for row in rows}


def suppressed_emails(connection: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """Normalised address -> (reason, YYYY-MM-DD), for `audience.select_audience`."""
    rows = connection.execute("SELECT email, reason, substr(created_at, 1, 10) FROM suppressions")
    return {row[0]: (row[1], row[2]) for row in rows}


def suppressed_emails_at(database: Path) -> dict[str, tuple[str, str]]:
    """Like `suppressed_emails`, for read-only commands: no database yet means no suppressions."""
    if not Path(database).exists():
        return {}
    connection = open_ledger(Path(database))
    try:
        return suppressed_emails(connection)
    finally:
        connection.close()


def _suppression(email: str, reason: str, on: Date | str | None, note: str) -> Suppression:
    if reason not in REASONS:
        raise UsageError(f"unknown reason {reason!r}; use one of {', '.join(REASONS)}")
    try:
        normalised = normalise_email(clean_text(email))
    except EmailNotValidError as error:
        raise UsageError(f"invalid address {email!r}: {error}") from None
    return Suppression(normalised, reason, _date(on), clean_text(note))


def _date(on: Date | str | None) -> str:
    if on is None:
        return datetime.now(timezone.utc).date().isoformat()
    try:
        day = on if isinstance(on, Date) else Date.fromisoformat(on[:10])
    except ValueError:
        raise UsageError(f"date {on!r} is not a date; write it as YYYY-MM-DD") from None
    if day > datetime.now(timezone.utc).date() + timedelta(days=1):   # a day's grace for time zones
        raise UsageError(f"date {day.isoformat()} is in the future; write the day the person asked (YYYY-MM-DD)")
    return day.isoformat()


def _insert(connection: sqlite3.Connection, suppression: Suppression) -> bool:
    cursor = connection.execute(
        "INSERT INTO suppressions (email, reason, note, created_at, source) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (email) DO NOTHING",
        (suppression.email, suppression.reason, suppression.note,
         suppression.at or f"{suppression.date}T00:00:00Z", suppression.source),
    )
    return cursor.rowcount == 1


def _get(connection: sqlite3.Connection, email: str) -> Suppression:
    row = connection.execute(
        "SELECT email, reason, created_at, note, source FROM suppressions WHERE email = ?", (email,)).fetchone()
    return Suppression(row[0], row[1], row[2][:10], row[3], row[4], row[2])
