"""Batches with the provider: a request's write-ahead as one ledger row (table batches_in_flight).

A SendGrid request carries up to 1,000 people. Its write-ahead is one committed row listing
them with the delivery id each message carries; their delivery rows are written once, with the
answer (ledger.record_outcomes). One answer for all of them is first kept on the batch's row
(`answer_whole_batch`), and written on theirs by `fold_answered`: at once, or a moment later by
a concurrent send (send/pipeline.py), so that its workers wait for one row, not a thousand.
Until then the readers in ledger.py show them `in_flight`. A batch a dead process left open is
written with its answer when the next run starts if it had one; if not, it is turned into per-row
`in_flight` marks, which recovery then calls `unknown`: never resent unasked.

The functions that take no transaction of their own run inside the caller's.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Collection, Mapping

from .ledger_schema import NOW, transaction

# What a send attempt writes on a row besides its status: who sent it, in which batch and run, the id it
# carried (staged in temp.write_ahead: see stage_ids). One more attempt.
ATTEMPT = ("provider = ?, batch_id = ?, run_id = ?, attempts = attempts + 1, delivery_id = "
           "coalesce((SELECT delivery_id FROM temp.write_ahead AS ahead WHERE ahead.email = deliveries.email), "
           "delivery_id)")


def new_delivery_id() -> str:
    """An opaque id for one row's send attempt: random, so it says nothing about the recipient."""
    return secrets.token_hex(10)


def new_delivery_ids(count: int) -> list[str]:
    """Ids for the `count` messages of one batch: one random prefix, then the position in the batch.

    As opaque as `new_delivery_id` and as long, but a batch's ids sit side by side in the ledger's
    delivery_id index, so writing them ahead touches a few index pages instead of one per row
    (half the cost of the write-ahead at 1,000 rows, bench/RESULTS.md).
    """
    prefix = secrets.token_hex(8)
    return [f"{prefix}{position:04x}" for position in range(count)]


def write_batch_ahead(connection: sqlite3.Connection, issue: int, kind: str, provider: str, batch_id: str,
                      run_id: int, delivery_ids: Mapping[str, str]) -> None:
    """Committed (forced to disk) before the request goes: {email: delivery id} of everyone it carries."""
    with transaction(connection):
        connection.execute(
            f"INSERT OR REPLACE INTO batches_in_flight (batch_id, issue, kind, run_id, provider, deliveries, "
            f"written_at) VALUES (?, ?, ?, ?, ?, ?, {NOW})",
            (batch_id, issue, kind, run_id, provider, json.dumps(list(delivery_ids.items()))))


def flying(connection: sqlite3.Connection, issue: int, kind: str) -> set[str]:
    """The addresses of this issue's batches written ahead and not yet answered."""
    try:
        rows = connection.execute(
            "SELECT json_extract(ahead.value, '$[0]') FROM batches_in_flight AS batch, json_each(batch.deliveries) "
            "AS ahead WHERE batch.issue = ? AND batch.kind = ?", (issue, kind)).fetchall()
    except sqlite3.OperationalError:   # a ledger read as it is (dry run) from before migration 0011: none
        return set()
    return {email for (email,) in rows}


def stage_ids(connection: sqlite3.Connection, pairs: str) -> None:
    """[[email, delivery id], ...] (JSON) into a connection-private table, for ATTEMPT to read."""
    try:   # the table is made once per connection: each statement of a writer waits for the interpreter
        connection.execute("DELETE FROM temp.write_ahead")
    except sqlite3.OperationalError:
        connection.execute("CREATE TEMP TABLE write_ahead (email TEXT PRIMARY KEY, delivery_id TEXT)")
    connection.execute("INSERT OR REPLACE INTO temp.write_ahead (email, delivery_id) SELECT json_extract(value, "
                       "'$[0]'), json_extract(value, '$[1]') FROM json_each(?)", (pairs,))


@dataclass(frozen=True)
class OpenBatch:
    """A batch written ahead and not yet answered, its ids staged for ATTEMPT."""

    batch_id: str
    provider: str
    run_id: int
    emails: frozenset[str]

    @property
    def attempt(self) -> tuple[str, str, int]:   # ATTEMPT's parameters
        return self.provider, self.batch_id, self.run_id


def stage_batch(connection: sqlite3.Connection, batch_id: str) -> OpenBatch | None:
    """The open batch, its ids staged (stage_ids); None if it is not open."""
    found = connection.execute("SELECT provider, run_id, deliveries FROM batches_in_flight WHERE batch_id = ?",
                               (batch_id,)).fetchone()
    if found is None:
        return None
    stage_ids(connection, found[2])
    return OpenBatch(batch_id, str(found[0]), int(found[1]), frozenset(email for email, _ in json.loads(found[2])))


def close_batch(connection: sqlite3.Connection, issue: int, kind: str, batch: OpenBatch, answered: Collection[str],
                now: str) -> None:
    """After its answered rows are written (stage_batch first): a row of the batch its answer left out
    keeps an in-flight mark of its own, never `pending`; then the batch's row goes."""
    left_out = batch.emails.difference(answered)
    if left_out:
        connection.execute(
            f"UPDATE deliveries SET status = 'in_flight', updated_at = ?, {ATTEMPT} WHERE issue = ? AND kind = ? "
            f"AND email IN (SELECT value FROM json_each(?)) AND status <> 'accepted'",
            (now, *batch.attempt, issue, kind, json.dumps(sorted(left_out))))
    connection.execute("DELETE FROM batches_in_flight WHERE batch_id = ?", (batch.batch_id,))


# An open batch's answer kept on its row, written on every address it carried, read by SQLite from the
# batch's own row: no id is staged and no address passes through Python (about 9 statements and 8 ms
# a batch, down to 2 and 7 ms; in a send each statement also waits to win Python's GIL back).
# MATERIALIZED: without it the planner scans the issue's rows for each address instead of looking each
# one up.
_ANSWER_WHOLE = (
    "WITH ahead AS MATERIALIZED (SELECT batch.provider, batch.batch_id, batch.run_id, "
    "json_extract(batch.answer, '$[0]') AS status, json_extract(batch.answer, '$[1]') AS message_id, "
    "json_extract(batch.answer, '$[2]') AS error, json_extract(batch.answer, '$[3]') AS answered_at, "
    "json_extract(pair.value, '$[0]') AS email, json_extract(pair.value, '$[1]') AS delivery_id "
    "FROM batches_in_flight AS batch, json_each(batch.deliveries) AS pair "
    "WHERE batch.batch_id = ?1 AND batch.answer IS NOT NULL) "
    "UPDATE deliveries SET status = ahead.status, message_id = ahead.message_id, last_error = ahead.error, "
    "updated_at = ahead.answered_at, "
    "accepted_at = CASE WHEN ahead.status = 'accepted' THEN ahead.answered_at ELSE accepted_at END, "
    "provider = ahead.provider, batch_id = ahead.batch_id, run_id = ahead.run_id, attempts = attempts + 1, "
    "delivery_id = ahead.delivery_id "
    "FROM ahead WHERE deliveries.issue = ?2 AND deliveries.kind = ?3 AND deliveries.email = ahead.email "
    "AND deliveries.status <> 'accepted'")


def answer_whole_batch(connection: sqlite3.Connection, batch_id: str,
                       answers: Mapping[tuple[str, str, str], Collection[str]], carried: Collection[str] | None,
                       now: str) -> bool:
    """If every address the open batch carried got the same (status, message id, error), keep that answer
    on the batch's row, for `fold_answered` to write on theirs. False, with nothing written, when they
    did not (or `carried`, the addresses, is not known) or the batch is not open or already answered."""
    if carried is None or len(answers) != 1:
        return False
    ((status, message_id, error), emails), = answers.items()
    if set(emails) != set(carried):
        return False
    return connection.execute("UPDATE batches_in_flight SET answer = json_array(?, ?, ?, ?) "
                              "WHERE batch_id = ? AND answer IS NULL",
                              (status, message_id, error, now, batch_id)).rowcount == 1


def fold_answered(connection: sqlite3.Connection, batch_id: str) -> bool:
    """The answer kept on the batch's row written on the rows of everyone it carried (with the attempt:
    provider, batch, run, delivery id), and the batch closed; False if it is not open with an answer."""
    found = connection.execute("SELECT issue, kind FROM batches_in_flight WHERE batch_id = ? AND answer IS NOT NULL",
                               (batch_id,)).fetchone()
    if found is None:
        return False
    connection.execute(_ANSWER_WHOLE, (batch_id, found[0], found[1]))
    connection.execute("DELETE FROM batches_in_flight WHERE batch_id = ?", (batch_id,))
    return True


def fold_answer(connection: sqlite3.Connection, batch_id: str) -> bool:
    """`fold_answered` in a transaction of its own, not forced to disk (as record_outcomes)."""
    with transaction(connection, synced=False):
        return fold_answered(connection, batch_id)


def reopen_as_rows(connection: sqlite3.Connection, issue: int, kind: str, now: str) -> None:
    """Every batch of this issue and kind still open (its process died) is written with the answer kept on
    its row, or, with none, becomes per-row in-flight marks."""
    open_batches = connection.execute("SELECT batch_id FROM batches_in_flight WHERE issue = ? AND kind = ?",
                                      (issue, kind)).fetchall()
    for (batch_id,) in open_batches:
        if fold_answered(connection, batch_id):   # it was answered before the process died
            continue
        batch = stage_batch(connection, batch_id)
        if batch is not None:
            close_batch(connection, issue, kind, batch, answered=(), now=now)
