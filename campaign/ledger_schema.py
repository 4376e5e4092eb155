"""The ledger's schema: applying its migrations (ledger_migrations.py), and opening a SQLite file safely.

One file (campaign.db by default), WAL mode, schema created and migrated by
the tool. Each migration is recorded in the same transaction as the change it
makes, so a crash leaves the schema either before or after it, never between.
The queries live in ledger.py, which opens files through `open_database` with the list of
ledger_migrations.py.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from .errors import LedgerError
from .files import make_folder

# Why an address is suppressed: the CHECK of the suppressions table (0001) allows these and no other.
# Here, in the schema, so the CLI can name them in its help without importing the ledger's queries.
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "manual")

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"   # SQLite's clock, as every timestamp of the ledger is written


def timestamp() -> str:
    """Now, as NOW writes it, read once for a statement that stamps many rows, from this process's
    clock: each statement of the ledger's writer costs it a wait for the interpreter (bench/RESULTS.md)."""
    moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"



def open_database(path: Path, migrations: Sequence[tuple[str, str]]) -> sqlite3.Connection:
    """Open (creating if needed) the ledger at `path`, migrated to the current schema.

    Nothing is changed in a file that is not a campaign ledger (nor an empty
    database), and a read-only ledger is one clear error. Migrations take the
    write lock first and then look at what is applied, so any number of processes
    may open a fresh ledger at once.
    """
    try:
        make_folder(path.parent, setting="database")
        _refuse_read_only(path)
        # A concurrent send shares the connection between its threads, one write at a time
        # (send/pipeline.py's LedgerDesk), so Python's same-thread check is lifted.
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        _refuse_foreign(connection, path, migrations[0][0])
        _switch_to_wal(connection)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        _migrate(connection, path, migrations)
    except sqlite3.DatabaseError as error:
        if "readonly" in str(error):
            raise LedgerError(f"{path}: the ledger is read-only ({error}); make the file and its folder "
                              "writable (SQLite writes -wal and -shm files beside it)") from None
        raise LedgerError(f"{path}: cannot open the ledger ({error}); is it a campaign database?") from None
    return connection


def _switch_to_wal(connection: sqlite3.Connection, patience: float = 30.0) -> None:
    """WAL mode, waiting out other processes that are switching the same fresh file at the same moment.

    Two connections that both hold a shared lock and both ask for the exclusive one
    the switch needs would deadlock, so SQLite answers one of them "database is
    locked" at once, without its busy timeout. That is the only case retried here.
    """
    deadline = time.monotonic() + patience
    delay = 0.01
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _refuse_read_only(path: Path) -> None:
    # Asked of the kernel, never by opening the file: closing any descriptor of it would drop every
    # lock this process holds on it (POSIX), among them the one by which an open connection tells
    # other processes it uses the WAL. One of them would then delete the WAL under that connection.
    if not os.path.isfile(path):
        return  # none yet, a folder, a broken link...: SQLite's own error says what it is
    if not os.access(path, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        raise LedgerError(f"{path}: the ledger is read-only; make it writable (chmod u+w), or point "
                          "database / CAMPAIGN_DATABASE at a writable copy")


def _refuse_foreign(connection: sqlite3.Connection, path: Path, first_migration: str) -> None:
    """An empty database or a campaign ledger; anything else is refused before any change."""
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"{path}: not a campaign ledger ({error}); point database / CAMPAIGN_DATABASE at "
                          "the ledger, or at a new file") from None
    if tables and not ("migrations" in tables and _first_migration_applied(connection, first_migration)):
        shown = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
        raise LedgerError(f"{path}: not a campaign ledger (it holds other tables: {shown}); nothing was changed. "
                          "Point database / CAMPAIGN_DATABASE at the ledger, or at a new file")


def _first_migration_applied(connection: sqlite3.Connection, first_migration: str) -> bool:
    try:
        found = connection.execute("SELECT 1 FROM migrations WHERE name = ?", (first_migration,)).fetchone()
    except sqlite3.DatabaseError:
        return False
    return found is not None


@contextmanager
def transaction(connection: sqlite3.Connection, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

    `synced=False`: this commit is not forced to disk (synchronous=NORMAL; a crash of the process
    still loses nothing, a power cut may lose it). Only for a commit whose loss is safe; the next
    synced commit forces it to disk with its own, since the WAL is written in order.

    Inside another transaction it is a savepoint: undone alone on an exception, and otherwise
    committed (as the outer one says, synced or not) or undone with the outer one.
    """
    if connection.in_transaction:
        with _savepoint(connection):
            yield connection
        return
    if not synced:
        connection.execute("PRAGMA synchronous=NORMAL")
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        if not synced:
            connection.execute("PRAGMA synchronous=FULL")


@contextmanager
def _savepoint(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("SAVEPOINT nested")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK TO nested")
        connection.execute("RELEASE nested")
        raise
    connection.execute("RELEASE nested")


def applied_migrations(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT name FROM migrations ORDER BY name")]


def _migrate(connection: sqlite3.Connection, path: Path, migrations: Sequence[tuple[str, str]]) -> None:
    """Apply what is missing, each migration under the write lock taken BEFORE looking at what is applied."""
    if _first_migration_applied(connection, migrations[0][0]) and \
            set(applied_migrations(connection)) >= {name for name, _ in migrations}:
        return  # the usual case: nothing to do, no lock taken
    for name, script in migrations:
        with transaction(connection):
            _refuse_foreign(connection, path, migrations[0][0])   # another process may have written meanwhile
            connection.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            if name in set(applied_migrations(connection)):
                continue
            for statement in _statements(script):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                (name,),
            )


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT on its own; run statement by statement inside our transaction.
    # Pieces are joined until SQLite calls them complete, so a trigger body's inner ';' is kept.
    statements, pending = [], ""
    for line in script.splitlines():
        line = line.split("--", 1)[0].rstrip()
        if not line.strip():
            continue
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


