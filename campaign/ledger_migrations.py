"""The ledger's migrations, in order: each is applied exactly once (ledger_schema.py applies them).

Append; never edit a released one.
"""

from __future__ import annotations

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
    (
        # A batch handed to the provider in one request (SendGrid) is written ahead as ONE row here,
        # committed before the request, instead of marking each of its delivery rows in flight: the
        # rows are then written once, with the answer. A row listed here is in flight (readers see it
        # so); one a dead process left here becomes unknown on the next run, never resent unasked.
        "0011_batches_in_flight",
        """
        CREATE TABLE batches_in_flight (
            batch_id    TEXT PRIMARY KEY,          -- issue-run-index
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL,
            run_id      INTEGER NOT NULL,
            provider    TEXT NOT NULL,
            deliveries  TEXT NOT NULL,             -- JSON [[email, delivery_id], ...]: whom the request carries
            written_at  TEXT NOT NULL
        );
        CREATE INDEX batches_in_flight_issue ON batches_in_flight (issue, kind);
        """,
    ),
    (
        # The same table, its CHECKs spelled as ORs: SQLite evaluated `status IN (eight values)` far
        # more slowly, row by row, than the equivalent comparisons. Freezing 100,000 rows took 0.53 s
        # against 0.38 s, and answering a batch of 1,000 5.7 ms against 4.8 ms (bench/RESULTS.md).
        # Rebuilt as in 0007: the same columns in the same order, rows in the same order, the same
        # indexes and guards.
        "0012_checks_as_comparisons",
        """
        CREATE TABLE deliveries_0012 (
            issue       INTEGER NOT NULL,
            kind        TEXT NOT NULL CHECK (kind = 'real' OR kind = 'outbox' OR kind = 'sandbox'),
            email       TEXT NOT NULL,
            name        TEXT NOT NULL DEFAULT '',
            lists       TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status = 'pending' OR status = 'in_flight' OR status = 'accepted'
                               OR status = 'rejected' OR status = 'refused' OR status = 'failed'
                               OR status = 'unknown' OR status = 'skipped'),
            provider    TEXT NOT NULL DEFAULT '',
            message_id  TEXT NOT NULL DEFAULT '',
            batch_id    TEXT NOT NULL DEFAULT '',
            run_id      INTEGER REFERENCES send_runs (id),
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            accepted_at TEXT,
            delivery_id TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (issue, kind, email)
        );
        INSERT INTO deliveries_0012 (issue, kind, email, name, lists, status, provider, message_id, batch_id,
                                     run_id, attempts, last_error, created_at, updated_at, accepted_at, delivery_id)
        SELECT issue, kind, email, name, lists, status, provider, message_id, batch_id, run_id, attempts,
               last_error, created_at, updated_at, accepted_at, delivery_id
        FROM deliveries ORDER BY rowid;
        DROP TABLE deliveries;
        ALTER TABLE deliveries_0012 RENAME TO deliveries;
        CREATE INDEX deliveries_status ON deliveries (issue, kind, status);
        CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id) WHERE delivery_id <> '';
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
        # A batch's one answer (a concurrent send's usual case) is first kept on the batch's row, as
        # JSON [status, message_id, error, answered_at]: one row written while the workers wait, not a
        # thousand. Its people's rows take it later (batches_in_flight.fold_answered); until then the
        # batch reads in flight, and one a dead process left answered is written by the next run.
        "0013_batch_answers",
        """
        ALTER TABLE batches_in_flight ADD COLUMN answer TEXT;
        """,
    ),
]
