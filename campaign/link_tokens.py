"""Link tokens: which address a token in a sent link stands for.

Each message's unsubscribe and view links carry an opaque token (personalize.recipient_token,
an HMAC of the address), never the address. The readers' service, the unsubscribe inbox and
VERP bounces get the address back with one primary-key lookup of the token's SHA-256 here;
the ledger keeps every new recipient's token when it freezes a send's audience.
"""

from __future__ import annotations

import hashlib
import sqlite3
from itertools import islice
from typing import Callable, Iterable

from .ledger_schema import transaction


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _remember_link_tokens(connection: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> None:
    # In digest order, so the index is filled page by page instead of at random places; by the
    # hundred thousand, so a million recipients never make a million tuples at once.
    pairs = iter(pairs)
    while chunk := sorted((token_digest(token), email) for email, token in islice(pairs, TOKEN_CHUNK)):
        connection.executemany("INSERT OR IGNORE INTO link_tokens (digest, email) VALUES (?, ?)", chunk)


TOKEN_CHUNK = 100_000


def address_for_token(connection: sqlite3.Connection, token: str) -> str | None:
    """The address whose messages carried `token`, or None: one primary-key lookup."""
    row = connection.execute("SELECT email FROM link_tokens WHERE digest = ?", (token_digest(token),)).fetchone()
    return None if row is None else str(row[0])


def index_link_tokens(connection: sqlite3.Connection, token_of: Callable[[str], str]) -> int:
    """Remember the token of every address the ledger has a delivery for (ledgers older than
    the token table, or sends by another version); returns how many were new."""
    emails = [row[0] for row in connection.execute("SELECT DISTINCT email FROM deliveries")]
    with transaction(connection):
        before = connection.total_changes
        _remember_link_tokens(connection, ((email, token_of(email)) for email in emails))
        return connection.total_changes - before
