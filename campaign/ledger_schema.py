"""The ledger's schema: its migrations in order, and opening a SQLite file safely.

One file (campaign.db by default), WAL mode, schema created and migrated by
the tool. Each migration is recorded in the same transaction as the change it
makes, so a crash leaves the schema either before or after it, never between.
The queries live in ledger.py, which opens files through `open_database`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .errors import LedgerError
from .files import make_folder

# Why an address is suppressed: the CHECK of the suppressions table (0001) allows these and no other.
# Here, in the schema, so the CLI can name them in its help without importing the ledger's queries.
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "manual")

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
    (
        "0002_send_ledger",
        """
        CREATE TABLE send_runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ('real', 'outbox', 'sandbox')),
            provider    TEXT NOT NULL,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            outcome     TEXT NOT NULL DEFAULT 'running'
                        CHECK (outcome IN ('running', 'completed', 'interrupted', 'paused', 'stopped', 'crashed')),
            message     TEXT NOT NULL DEFAULT '',
            options     TEXT NOT NULL DEFAULT '',   -- the flags this run was given, e.g. --resend-unknown
            forced      INTEGER NOT NULL DEFAULT 0, -- 1: preflight check errors were overridden with --force
            findings    TEXT NOT NULL DEFAULT ''    -- what --force overrode
        );
        CREATE INDEX send_runs_issue ON send_runs (issue, kind);
        CREATE TABLE deliveries (
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ('real', 'outbox', 'sandbox')),
            email       TEXT NOT NULL,
            name        TEXT NOT NULL DEFAULT '',
            lists       TEXT NOT NULL DEFAULT '',   -- space-separated list names
            status      TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'in_flight', 'accepted', 'rejected', 'failed', 'unknown')),
            provider    TEXT NOT NULL DEFAULT '',
            message_id  TEXT NOT NULL DEFAULT '',
            batch_id    TEXT NOT NULL DEFAULT '',
            run_id      INTEGER REFERENCES send_runs (id),
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            accepted_at TEXT,
            PRIMARY KEY (issue, kind, email)
        );
        CREATE INDEX deliveries_status ON deliveries (issue, kind, status);
        CREATE TRIGGER deliveries_accepted_is_final
        BEFORE UPDATE OF status ON deliveries
        WHEN OLD.status = 'accepted' AND NEW.status <> 'accepted'
        BEGIN
            SELECT RAISE(ABORT, 'an accepted delivery is final: nobody is mailed an issue twice');
        END;
        """,
    ),
    (
        "0003_real_deliveries_are_kept",
        """
        CREATE TRIGGER deliveries_real_are_kept
        BEFORE DELETE ON deliveries
        WHEN OLD.kind = 'real'
        BEGIN
            SELECT RAISE(ABORT, 'the record of a real send is never deleted: it is what stops a second copy');
        END;
        """,
    ),
    (
        # The readers' service maps a link token back to an address with one primary-key lookup.
        # Kept: the SHA-256 of each token, so the ledger file alone yields no working unsubscribe link.
        "0004_link_tokens",
        """
        CREATE TABLE link_tokens (
            digest BLOB PRIMARY KEY,               -- sha256(token)
            email  TEXT NOT NULL                   -- normalised address
        ) WITHOUT ROWID;
        """,
    ),
    (
        # Where an unsubscribe came from: 'one-click' (RFC 8058 POST), 'web' (the confirmation
        # page's button), 'mailto' (the unsubscribe inbox); '' for older rows and by-hand ones.
        "0005_suppression_source",
        """
        ALTER TABLE suppressions ADD COLUMN source TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        # A request SendGrid refused (nothing sent, safe to resend once fixed) is kept apart from an
        # address it refused (never resent). SQLite cannot change a CHECK in place: the table is rebuilt
        # with the same columns, index and triggers (DROP TABLE fires no delete trigger).
        "0006_refused_status",
        """
        CREATE TABLE deliveries_0006 (
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ('real', 'outbox', 'sandbox')),
            email       TEXT NOT NULL,
            name        TEXT NOT NULL DEFAULT '',
            lists       TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'in_flight', 'accepted', 'rejected', 'refused', 'failed',
                                          'unknown')),
            provider    TEXT NOT NULL DEFAULT '',
            message_id  TEXT NOT NULL DEFAULT '',
            batch_id    TEXT NOT NULL DEFAULT '',
            run_id      INTEGER REFERENCES send_runs (id),
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            accepted_at TEXT,
            PRIMARY KEY (issue, kind, email)
        );
        INSERT INTO deliveries_0006 (issue, kind, email, name, lists, status, provider, message_id, batch_id,
                                     run_id, attempts, last_error, created_at, updated_at, accepted_at)
        SELECT issue, kind, email, name, lists,
               CASE WHEN status = 'rejected' AND last_error LIKE 'SendGrid rejected the request (400)%'
                    THEN 'refused' ELSE status END,
               provider, message_id, batch_id, run_id, attempts, last_error, created_at, updated_at, accepted_at
        FROM deliveries ORDER BY rowid;
        DROP TABLE deliveries;
        ALTER TABLE deliveries_0006 RENAME TO deliveries;
        CREATE INDEX deliveries_status ON deliveries (issue, kind, status);
        CREATE TRIGGER deliveries_accepted_is_final
        BEFORE UPDATE OF status ON deliveries
        WHEN OLD.status = 'accepted' AND NEW.status <> 'accepted'
        BEGIN
            SELECT RAISE(ABORT, 'an accepted delivery is final: nobody is mailed an issue twice');
        END;
        CREATE TRIGGER deliveries_real_are_kept
        BEFORE DELETE ON deliveries
        WHEN OLD.kind = 'real'
        BEGIN
            SELECT RAISE(ABORT, 'the record of a real send is never deleted: it is what stops a second copy');
        END;
        """,
    ),
    (
        # 'skipped': suppressed while the send was running (an unsubscribe between batches), so never
        # sent; the reason is in last_error. The table is rebuilt as in 0006, with one more status.
        "0007_skipped_status",
        """
        CREATE TABLE deliveries_0007 (
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ('real', 'outbox', 'sandbox')),
            email       TEXT NOT NULL,
            name        TEXT NOT NULL DEFAULT '',
            lists       TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'in_flight', 'accepted', 'rejected', 'refused', 'failed',
                                          'unknown', 'skipped')),
            provider    TEXT NOT NULL DEFAULT '',
            message_id  TEXT NOT NULL DEFAULT '',
            batch_id    TEXT NOT NULL DEFAULT '',
            run_id      INTEGER REFERENCES send_runs (id),
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            accepted_at TEXT,
            PRIMARY KEY (issue, kind, email)
        );
        INSERT INTO deliveries_0007 (issue, kind, email, name, lists, status, provider, message_id, batch_id,
                                     run_id, attempts, last_error, created_at, updated_at, accepted_at)
        SELECT issue, kind, email, name, lists, status, provider, message_id, batch_id, run_id, attempts,
               last_error, created_at, updated_at, accepted_at
        FROM deliveries ORDER BY rowid;
        DROP TABLE deliveries;
        ALTER TABLE deliveries_0007 RENAME TO deliveries;
        CREATE INDEX deliveries_status ON deliveries (issue, kind, status);
        CREATE TRIGGER deliveries_accepted_is_final
        BEFORE UPDATE OF status ON deliveries
        WHEN OLD.status = 'accepted' AND NEW.status <> 'accepted'
        BEGIN
            SELECT RAISE(ABORT, 'an accepted delivery is final: nobody is mailed an issue twice');
        END;
        CREATE TRIGGER deliveries_real_are_kept
        BEFORE DELETE ON deliveries
        WHEN OLD.kind = 'real'
        BEGIN
            SELECT RAISE(ABORT, 'the record of a real send is never deleted: it is what stops a second copy');
        END;
        """,
    ),
    (
        # What the provider said after it accepted a message (SendGrid's Event Webhook), one row per
        # event, keyed by the provider's own event id: SendGrid delivers at least once, so a replay
        # is ignored. `issue` and `delivery_id` come from the message's custom_args ('' / NULL when absent).
        "0008_provider_events",
        """
        CREATE TABLE provider_events (
            event_id    TEXT PRIMARY KEY,          -- sg_event_id
            provider    TEXT NOT NULL,
            event       TEXT NOT NULL,             -- processed, delivered, bounce, open, ...
            email       TEXT NOT NULL,             -- normalised address
            issue       INTEGER,
            delivery_id TEXT NOT NULL DEFAULT '',
            message_id  TEXT NOT NULL DEFAULT '',  -- sg_message_id
            detail      TEXT NOT NULL DEFAULT '',  -- bounce type and reason, dropped reason, clicked URL
            occurred_at TEXT NOT NULL,             -- the event's own time, ISO 8601 UTC
            received_at TEXT NOT NULL,
            matched     INTEGER NOT NULL DEFAULT 0 -- 1: it named a delivery in this ledger
        );
        CREATE INDEX provider_events_issue ON provider_events (issue, event);
        """,
    ),
    (
        # Where each kind of `suppress sync` got to: the next sync asks only for what came later.
        "0009_suppression_sync",
        """
        CREATE TABLE suppression_sync (
            kind       TEXT PRIMARY KEY,           -- bounces, spam_reports, invalid_emails, ...
            start_time INTEGER NOT NULL,           -- Unix time the next sync starts from
            synced_at  TEXT NOT NULL
        );
        """,
    ),
    (
        # The opaque id of each row's latest send attempt, carried to the provider (SendGrid custom_args
        # campaign_delivery) so its events can be matched back to the row; '' until first sent.
        "0010_delivery_id",
        """
        ALTER TABLE deliveries ADD COLUMN delivery_id TEXT NOT NULL DEFAULT '';
        CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id) WHERE delivery_id <> '';
        """,
    ),
]


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
    try:
        os.close(os.open(path, os.O_RDWR))
    except FileNotFoundError:
        return
    except PermissionError:
        raise LedgerError(f"{path}: the ledger is read-only; make it writable (chmod u+w), or point "
                          "database / CAMPAIGN_DATABASE at a writable copy") from None
    except OSError:
        return  # a folder, a broken link...: SQLite's own error says what it is


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
    """
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


