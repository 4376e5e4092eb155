"""The SQLite ledger: the source of truth for who got what, and who must never get anything.

One file (campaign.db by default), WAL mode, schema created and migrated by
the tool. Each migration is recorded in the same transaction as the change it
makes, so a crash leaves the schema either before or after it, never between.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import LedgerError

# Named migrations, applied in order, each exactly once. Append; never edit a released one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_suppressions",
        """
        CREATE TABLE suppressions (
            email      TEXT PRIMARY KEY,           -- normalised address
            reason     TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
            note       TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL               -- ISO 8601, UTC
        );
        """,
    ),
]


def open_ledger(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger at `path`, migrated to the current schema."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        _migrate(connection)
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"{path}: cannot open the ledger ({error}); is it a campaign database?") from None
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def applied_migrations(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT name FROM migrations ORDER BY name")]


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = set(applied_migrations(connection))
    for name, script in MIGRATIONS:
        if name in done:
            continue
        with transaction(connection):
            for statement in _statements(script):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                (name,),
            )


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT on its own; run statement by statement inside our transaction.
    return [statement.strip() for statement in script.split(";") if statement.strip()]
