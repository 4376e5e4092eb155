"""Freezing a send's audience into the ledger: a pending row per person, and the token in their links.

The first step of every send (send/record.py): whoever is in the audience gets a `pending` row
if they have none, and each new row's link token is kept in `link_tokens` in the same
transaction, so the readers' service can answer every link a message of the send carries.
"""

from __future__ import annotations

import json
import sqlite3
from itertools import islice
from typing import Callable, Iterable

from .ledger import has_deliveries
from .ledger_schema import timestamp, transaction
from .link_tokens import DigestParts, MadeDigests, TokenDigests, _remember_link_tokens

FREEZE_CHUNK = 10_000   # rows per statement


def freeze_audience(connection: sqlite3.Connection, issue: int, kind: str,
                    recipients: Iterable[tuple[str, str, tuple[str, ...]]], run_id: int,
                    token_of: Callable[[str], str] | None = None, emails: Iterable[str] | None = None,
                    digests_made: DigestParts | None = None) -> int:
    """Add a pending row for every (email, name, lists) without one; existing rows are untouched.

    `token_of(email)` gives the token in that person's links: each new row's is kept in the same
    transaction (table link_tokens), so every message's unsubscribe link can be answered.
    Done once per new row, in one transaction, rather than per batch: a resume pays nothing.
    `emails`, the same recipients' addresses again: on a first freeze (every row new) their tokens
    are made on another thread while the rows are written, or, given `digests_made`, in another process
    (link_tokens.MadeDigests).
    """
    with transaction(connection, synced=False):   # lost in a power cut: the next run freezes them again
        added = 0
        now = timestamp()   # read once for every row
        first = token_of is not None and emails is not None and not has_deliveries(connection, issue, kind)
        digests = _digests(emails, token_of, digests_made) if first else None
        try:
            rows = iter(recipients)
            for chunk in iter(lambda: list(islice(rows, FREEZE_CHUNK)), []):   # a statement per chunk, not per row
                added += connection.execute(
                    "INSERT OR IGNORE INTO deliveries (issue, kind, email, name, lists, run_id, created_at, "
                    "updated_at) SELECT ?, ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                    "json_extract(value, '$[2]'), ?, ?, ? FROM json_each(?)",
                    (issue, kind, run_id, now, now, json.dumps([[email, name, " ".join(lists)]
                                                                for email, name, lists in chunk]))).rowcount
                if digests is not None:
                    digests.store(connection)
            if digests is not None:
                digests.store(connection, wait=True)
        finally:
            if digests is not None:
                digests.stop()
        if token_of is not None and added and digests is None:
            new = connection.execute("SELECT email FROM deliveries WHERE issue = ? AND kind = ? "
                                     "AND status = 'pending' AND run_id = ?", (issue, kind, run_id))
            _remember_link_tokens(connection, ((email, token_of(email)) for (email,) in new))
        return added


def _digests(emails: Iterable[str] | None, token_of: Callable[[str], str] | None,
             made: DigestParts | None) -> TokenDigests | MadeDigests:
    assert emails is not None and token_of is not None   # a first freeze is given both
    return TokenDigests(emails, token_of) if made is None else MadeDigests(made, token_of)
