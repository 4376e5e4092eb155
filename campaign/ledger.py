"""The SQLite ledger: the source of truth for who got what, and who must never get anything.

The queries every stage writes and reads through. The schema, its migrations
and the safe opening of a file are in ledger_schema.py; `open_ledger` here
opens a file migrated to `MIGRATIONS`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Collection, Iterable, Mapping, Sequence

from .batches_in_flight import ATTEMPT, answer_whole_batch, close_batch, flying, fold_answered, reopen_as_rows, stage_batch, stage_ids
from .batches_in_flight import new_delivery_id as new_delivery_id, new_delivery_ids as new_delivery_ids  # re-exported
from .batches_in_flight import fold_answer as fold_answer, write_batch_ahead as write_batch_ahead  # re-exported
from .errors import LedgerError
from .ledger_migrations import MIGRATIONS as MIGRATIONS  # re-exported: the ledger's one public face
from .ledger_schema import NOW as _NOW
from .ledger_schema import applied_migrations as applied_migrations
from .ledger_schema import open_database, timestamp
from .ledger_schema import transaction as transaction
from .link_tokens import address_for_token as address_for_token  # re-exported: readers, bounces, inbox
from .link_tokens import index_link_tokens as index_link_tokens


def open_ledger(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger at `path`, migrated to the current schema.

    Nothing is changed in a file that is not a campaign ledger (nor an empty
    database), and a read-only ledger is one clear error. Any number of processes
    may open a fresh ledger at once.
    """
    return open_database(path, MIGRATIONS)


# --- The send ledger: one row per issue, kind and address -------------------------------------
#
# `kind` keeps rehearsals apart from real deliveries: 'real' (SendGrid or SMTP, whichever sent
# it, so switching provider half-way mails nobody twice), 'outbox' and 'sandbox' (nothing
# delivered; a rehearsal never makes the real send skip anyone). Dry runs and test sends write
# nothing at all.

REAL = "real"
KINDS = ("real", "outbox", "sandbox")
PENDING, IN_FLIGHT, ACCEPTED, REJECTED, REFUSED, FAILED, UNKNOWN, SKIPPED = (
    "pending", "in_flight", "accepted", "rejected", "refused", "failed", "unknown", "skipped",
)
# rejected: the provider refused this address (never resent); refused: it refused the request, so
# nothing was sent (resent with --retry-rejected once the cause is fixed).
# skipped: suppressed while the send ran (an unsubscribe between batches): never sent, reason kept.
STATUSES = (PENDING, IN_FLIGHT, ACCEPTED, REJECTED, REFUSED, FAILED, UNKNOWN, SKIPPED)
CRASH_NOTE = ("the send stopped while this batch was with the provider: it may or may not have "
              "been delivered; resend only with --resend-unknown")


@dataclass(frozen=True)
class Delivery:
    """One ledger row: what happened to one issue for one address."""

    issue: int
    kind: str
    email: str
    name: str
    lists: tuple[str, ...]
    status: str
    provider: str
    message_id: str
    batch_id: str
    attempts: int
    last_error: str
    created_at: str
    updated_at: str
    accepted_at: str | None
    delivery_id: str = ""          # the latest send attempt's opaque id ('' until first sent)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Delivery":
        return cls(
            issue=row["issue"], kind=row["kind"], email=row["email"], name=row["name"],
            lists=tuple(row["lists"].split()), status=row["status"], provider=row["provider"],
            message_id=row["message_id"], batch_id=row["batch_id"], attempts=row["attempts"],
            last_error=row["last_error"], created_at=row["created_at"], updated_at=row["updated_at"],
            accepted_at=row["accepted_at"], delivery_id=row["delivery_id"],
        )


@dataclass(slots=True)   # not frozen: a thousand are made per batch, 4x faster without the frozen setter
class Outcome:
    """What the provider said about one address, ready to record."""

    email: str
    status: str
    message_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class SendRun:
    id: int
    issue: int
    kind: str
    provider: str
    started_at: str
    finished_at: str | None
    outcome: str
    message: str
    options: str
    forced: bool
    findings: str


def start_run(connection: sqlite3.Connection, issue: int, kind: str, provider: str,
              options: str = "", forced: bool = False, findings: str = "") -> int:
    with transaction(connection):
        cursor = connection.execute(
            f"INSERT INTO send_runs (issue, kind, provider, started_at, options, forced, findings) "
            f"VALUES (?, ?, ?, {_NOW}, ?, ?, ?)",
            (issue, kind, provider, options, int(forced), findings),
        )
    run_id = cursor.lastrowid
    assert run_id is not None  # an INSERT always sets it
    return run_id


def record_forced(connection: sqlite3.Connection, run_id: int, findings: str) -> None:
    """The findings a forced run goes on despite, known after start_run (the checks decided meanwhile)."""
    with transaction(connection):
        connection.execute("UPDATE send_runs SET forced = ?, findings = ? WHERE id = ?",
                           (int(bool(findings)), findings, run_id))


def finish_run(connection: sqlite3.Connection, run_id: int, outcome: str, message: str = "") -> None:
    with transaction(connection):
        connection.execute(
            f"UPDATE send_runs SET outcome = ?, message = ?, finished_at = {_NOW} WHERE id = ?",
            (outcome, message, run_id),
        )


def runs(connection: sqlite3.Connection, issue: int, kind: str | None = None) -> list[SendRun]:
    query = "SELECT * FROM send_runs WHERE issue = ?" + (" AND kind = ?" if kind else "") + " ORDER BY id"
    rows = connection.execute(query, (issue, kind) if kind else (issue,))
    return [SendRun(id=row["id"], issue=row["issue"], kind=row["kind"], provider=row["provider"],
                    started_at=row["started_at"], finished_at=row["finished_at"], outcome=row["outcome"],
                    message=row["message"], options=row["options"], forced=bool(row["forced"]),
                    findings=row["findings"]) for row in rows]


def mark_crashed_runs(connection: sqlite3.Connection, issue: int, kind: str) -> int:
    """Runs still 'running' when no send holds the lock died without saying so (kill -9, power)."""
    with transaction(connection):
        cursor = connection.execute(
            "UPDATE send_runs SET outcome = 'crashed', message = 'the process stopped without finishing' "
            "WHERE issue = ? AND kind = ? AND outcome = 'running'",
            (issue, kind),
        )
    return cursor.rowcount


def forget_rehearsal(connection: sqlite3.Connection, issue: int, kind: str) -> int:
    """Start a rehearsal (outbox or sandbox) over: its delivery rows go; its runs stay as history."""
    if kind == REAL:
        raise LedgerError("a real send cannot be restarted: its record is what stops a second copy")
    with transaction(connection):
        connection.execute("DELETE FROM batches_in_flight WHERE issue = ? AND kind = ?", (issue, kind))
        cursor = connection.execute("DELETE FROM deliveries WHERE issue = ? AND kind = ?", (issue, kind))
    return cursor.rowcount


def recover_in_flight(connection: sqlite3.Connection, issue: int, kind: str) -> list[Delivery]:
    """Rows a dead process left in_flight, or in a batch written ahead, become unknown (never guessed
    either way); returns them."""
    with transaction(connection):
        reopen_as_rows(connection, issue, kind, timestamp())
        rows = connection.execute(
            "SELECT * FROM deliveries WHERE issue = ? AND kind = ? AND status = 'in_flight' ORDER BY email",
            (issue, kind),
        ).fetchall()
        connection.execute(
            f"UPDATE deliveries SET status = 'unknown', last_error = ?, updated_at = {_NOW} "
            f"WHERE issue = ? AND kind = ? AND status = 'in_flight'",
            (CRASH_NOTE, issue, kind),
        )
    return [Delivery.from_row(row) for row in rows]


def deliveries(connection: sqlite3.Connection, issue: int, kind: str,
               statuses: Iterable[str] | None = None) -> list[Delivery]:
    """The rows of an issue's send (those in `statuses`), in the order they were frozen; a row in a
    batch written ahead reads `in_flight`."""
    away = flying(connection, issue, kind)
    query = "SELECT * FROM deliveries WHERE issue = ? AND kind = ?"
    params: list = [issue, kind]
    if statuses is not None:   # only with a batch in flight the OR, which takes the status index off
        statuses = list(statuses)
        query += f" AND (status IN ({', '.join('?' for _ in statuses)}){f' OR email IN {_EMAILS}' if away else ''})"
        params += [*statuses, *([json.dumps(sorted(away))] if away else [])]
    rows = [Delivery.from_row(row) for row in connection.execute(query + " ORDER BY rowid", params)]
    if away:
        rows = [replace(row, status=IN_FLIGHT) if row.email in away else row for row in rows]
    return rows if statuses is None else [row for row in rows if row.status in statuses]


def has_deliveries(connection: sqlite3.Connection, issue: int, kind: str) -> bool:
    """Whether any send of this kind of this issue has started."""
    return connection.execute("SELECT EXISTS (SELECT 1 FROM deliveries WHERE issue = ? AND kind = ?)",
                              (issue, kind)).fetchone()[0] == 1


def has_status(connection: sqlite3.Connection, issue: int, kind: str, statuses: Sequence[str]) -> bool:
    """Whether any row of this issue and kind has one of `statuses` (one look in the status index)."""
    return connection.execute(
        f"SELECT EXISTS (SELECT 1 FROM deliveries WHERE issue = ? AND kind = ? AND status IN "
        f"({', '.join('?' * len(statuses))}))", (issue, kind, *statuses)).fetchone()[0] == 1


def status_by_email(connection: sqlite3.Connection, issue: int, kind: str) -> dict[str, str]:
    rows = connection.execute("SELECT email, status FROM deliveries WHERE issue = ? AND kind = ?", (issue, kind))
    statuses = {email: status for email, status in rows}
    statuses.update((email, IN_FLIGHT) for email in flying(connection, issue, kind) if email in statuses)
    return statuses


def emails_with_status(connection: sqlite3.Connection, issue: int, kind: str, statuses: Iterable[str]) -> set[str]:
    wanted = list(statuses)
    if not wanted:
        return set()
    rows = connection.execute(f"SELECT email FROM deliveries WHERE issue = ? AND kind = ? "
                              f"AND status IN ({', '.join('?' for _ in wanted)})", (issue, kind, *wanted))
    found = {email for (email,) in rows}
    away = flying(connection, issue, kind)
    return (found | away) if IN_FLIGHT in wanted else (found - away)


# A batch's addresses as one JSON array parameter: one statement per batch, not one per address.
_EMAILS = "(SELECT value FROM json_each(?))"


def mark_in_flight(connection: sqlite3.Connection, issue: int, kind: str, emails: Sequence[str],
                   provider: str, batch_id: str, run_id: int, delivery_ids: Mapping[str, str] | None = None) -> None:
    """Write ahead: committed before the batch is handed to the provider.

    `delivery_ids` ({email: id}) are the ids these messages carry (SendGrid custom_args): stored in
    the same transaction, so every event that can come back finds its row. (Link tokens are kept
    earlier, when the audience is frozen: see freeze.py.)
    """
    with transaction(connection):
        if not delivery_ids:
            connection.execute(
                f"UPDATE deliveries SET status = 'in_flight', provider = ?, batch_id = ?, run_id = ?, "
                f"attempts = attempts + 1, updated_at = {_NOW} "
                f"WHERE issue = ? AND kind = ? AND email IN {_EMAILS} AND status <> 'accepted'",
                (provider, batch_id, run_id, issue, kind, json.dumps(list(emails))),
            )
            return
        # The ids go through a connection-private table, so the whole write-ahead is a handful of
        # statements: each one lets go of Python's GIL once and must win it back from the thread
        # that builds the next batch (a statement per row made that wait a thousand times).
        stage_ids(connection, json.dumps([[email, delivery_ids.get(email, "")] for email in emails]))
        connection.execute(
            f"UPDATE deliveries SET status = 'in_flight', provider = ?, batch_id = ?, run_id = ?, "
            f"attempts = attempts + 1, updated_at = {_NOW}, "
            f"delivery_id = (SELECT delivery_id FROM temp.write_ahead AS ahead WHERE ahead.email = deliveries.email) "
            f"WHERE issue = ? AND kind = ? AND email IN (SELECT email FROM temp.write_ahead) AND status <> 'accepted'",
            (provider, batch_id, run_id, issue, kind))


def delivery_by_id(connection: sqlite3.Connection, delivery_id: str) -> Delivery | None:
    """The row whose latest send attempt carried `delivery_id` (an event's campaign_delivery), if any."""
    if not delivery_id:
        return None
    row = connection.execute("SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
    return Delivery.from_row(row) if row is not None else None


def mark_skipped(connection: sqlite3.Connection, issue: int, kind: str, reasons: Mapping[str, str]) -> None:
    """Rows not sent because the address was suppressed during the send ({email: why}); an accepted
    or in-flight row is left as it is."""
    with transaction(connection):
        connection.executemany(
            f"UPDATE deliveries SET status = 'skipped', last_error = ?, updated_at = {_NOW} "
            f"WHERE issue = ? AND kind = ? AND email = ? AND status NOT IN ('accepted', 'in_flight')",
            ((reason, issue, kind, email) for email, reason in reasons.items()),
        )


def record_outcomes(connection: sqlite3.Connection, issue: int, kind: str, outcomes: Iterable[Outcome],
                    batch_id: str | None = None, carried: Collection[str] | None = None, fold: bool = True) -> bool:
    """Committed as soon as the provider answers: one statement per distinct answer, all in one transaction.

    `batch_id`: the answer of a batch written ahead (write_batch_ahead): its rows take the attempt
    (provider, batch, run, delivery id) with the answer, and the batch is closed in the same transaction;
    `carried`, the addresses it was written ahead with: one answer for all of them is kept on the batch's
    row and written from there, at once or, not `fold`, by fold_answer later (returns True: left to do).
    Not forced to disk: lost in a power cut, the rows are left in flight, which the next run calls
    unknown and never resends unasked; the next write-ahead, which is forced, takes it down too."""
    answers: dict[tuple[str, str, str], list[str]] = {}
    for outcome in outcomes:  # a SendGrid batch is one answer for a thousand addresses
        answers.setdefault((outcome.status, outcome.message_id, outcome.error), []).append(outcome.email)
    with transaction(connection, synced=False):
        now = timestamp()
        if batch_id and answer_whole_batch(connection, batch_id, answers, carried, now):
            return not fold or not fold_answered(connection, batch_id)
        batch = stage_batch(connection, batch_id) if batch_id else None
        attempt, of_attempt = (f", {ATTEMPT}", batch.attempt) if batch else ("", ())
        for (status, message_id, error), emails in answers.items():
            connection.execute(
                f"UPDATE deliveries SET status = ?, message_id = ?, last_error = ?, updated_at = ?, "
                f"accepted_at = CASE WHEN ? = 'accepted' THEN ? ELSE accepted_at END{attempt} "
                f"WHERE issue = ? AND kind = ? AND email IN {_EMAILS} AND status <> 'accepted'",
                (status, message_id, error, now, status, now, *of_attempt, issue, kind, json.dumps(emails)),
            )
        if batch is not None:
            close_batch(connection, issue, kind, batch, [email for emails in answers.values() for email in emails], now)
    return False


def resolve_unknown(connection: sqlite3.Connection, issue: int, email: str, status: str, note: str) -> bool:
    """An `unknown` real delivery becomes `status` (accepted or rejected) because the provider said so.

    Runs inside the caller's transaction (the event that proves it is stored in the same one);
    any other status is left alone. Returns whether a row changed.
    """
    if status not in (ACCEPTED, REJECTED):
        raise ValueError(status)
    cursor = connection.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, updated_at = {_NOW}, "
        f"accepted_at = CASE WHEN ? = 'accepted' THEN {_NOW} ELSE accepted_at END "
        f"WHERE issue = ? AND kind = 'real' AND email = ? AND status = 'unknown'",
        (status, note, status, issue, email),
    )
    return cursor.rowcount == 1

def counts(connection: sqlite3.Connection, issue: int, kind: str) -> dict[str, int]:
    """{status: rows}; the rows of a batch written ahead count as in_flight."""
    result = {status: 0 for status in STATUSES}
    for status, number in connection.execute(
        "SELECT status, count(*) FROM deliveries WHERE issue = ? AND kind = ? GROUP BY status", (issue, kind)
    ):
        result[status] = number
    away = flying(connection, issue, kind)
    if away:
        for status, number in connection.execute(
                f"SELECT status, count(*) FROM deliveries WHERE issue = ? AND kind = ? AND email IN {_EMAILS} "
                f"GROUP BY status", (issue, kind, json.dumps(sorted(away)))):
            result[status] -= number
            result[IN_FLIGHT] += number
    return result


def counts_by(connection: sqlite3.Connection, issue: int, kind: str, column: str) -> dict[str, dict[str, int]]:
    """{provider or list: {status: n}}; a person on two lists counts once under each; the people of a
    batch written ahead count as in_flight, as in `counts`."""
    table: dict[str, dict[str, int]] = {}
    away = flying(connection, issue, kind)
    shown_status = f"CASE WHEN email IN {_EMAILS} THEN '{IN_FLIGHT}' ELSE status END" if away else "status"
    params = (json.dumps(sorted(away)), issue, kind) if away else (issue, kind)
    if column == "provider":
        rows = connection.execute(
            f"SELECT provider, {shown_status} AS shown, count(*) FROM deliveries WHERE issue = ? AND kind = ? "
            f"GROUP BY provider, shown", params)
        for key, shown, number in rows:
            table.setdefault(key or "(none yet)", {})[shown] = number
    elif column == "list":
        rows = connection.execute(
            f"SELECT lists, {shown_status} AS shown, count(*) FROM deliveries WHERE issue = ? AND kind = ? "
            f"GROUP BY lists, shown", params)
        for lists, status, number in rows:
            for name in lists.split() or ["(no list)"]:
                bucket = table.setdefault(name, {})
                bucket[status] = bucket.get(status, 0) + number
    else:
        raise ValueError(column)
    return table


def kinds_recorded(connection: sqlite3.Connection, issue: int) -> list[str]:
    rows = connection.execute("SELECT DISTINCT kind FROM deliveries WHERE issue = ? "
                              "UNION SELECT DISTINCT kind FROM send_runs WHERE issue = ?", (issue, issue))
    recorded = {row[0] for row in rows}
    return [kind for kind in KINDS if kind in recorded]


def statuses_read_only(path: Path, issue: int, kind: str) -> dict[str, str]:
    """{email: status} without creating, migrating or writing anything (dry runs)."""
    if not Path(path).exists():
        return {}
    try:
        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return status_by_email(connection, issue, kind)
        finally:
            connection.close()
    except sqlite3.OperationalError:  # an older ledger without the send tables: nothing sent yet
        return {}
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"{path}: cannot read the ledger ({error}); is it a campaign database?") from None
