"""The SQLite ledger: schema, write-ahead rows, and what survives a process dying mid-write."""

from __future__ import annotations

import random
from concurrent.futures import Future
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from campaign.freeze import FREEZE_CHUNK, freeze_audience
from campaign import ledger
from campaign.errors import LedgerError
from campaign.ledger import Outcome, applied_migrations, open_ledger
from campaign.ledger_schema import transaction
from campaign.link_tokens import token_digest


@pytest.fixture
def connection(tmp_path):
    db = open_ledger(tmp_path / "campaign.db")
    yield db
    db.close()


def freeze(connection, emails, kind="real"):
    run = ledger.start_run(connection, 30, kind, "sendgrid")
    freeze_audience(connection, 30, kind, ((email, "N", ("members",)) for email in emails), run)
    return run


def test_migrations_are_recorded_once_and_the_database_is_in_wal_mode(tmp_path):
    first = open_ledger(tmp_path / "campaign.db")
    names = applied_migrations(first)
    assert names[:2] == ["0001_suppressions", "0002_send_ledger"]
    first.close()
    again = open_ledger(tmp_path / "campaign.db")
    assert applied_migrations(again) == names
    assert again.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_freezing_twice_never_touches_existing_rows(connection):
    run = freeze(connection, ["a@example.org", "b@example.org"])
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "sendgrid", "30-1-1", run)
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")])
    assert freeze_audience(connection, 30, "real",
                                  [("a@example.org", "N", ()), ("c@example.org", "C", ())], run) == 1
    assert ledger.status_by_email(connection, 30, "real") == {
        "a@example.org": "accepted", "b@example.org": "pending", "c@example.org": "pending"}


def test_an_accepted_row_can_never_change_status(connection):
    run = freeze(connection, ["a@example.org"])
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "sendgrid", "30-1-1", run)
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")])
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "smtp", "30-2-1", run)   # ignored
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "failed", error="x")])  # ignored
    row = ledger.deliveries(connection, 30, "real")[0]
    assert (row.status, row.provider, row.message_id, row.attempts) == ("accepted", "sendgrid", "msg-1", 1)
    with pytest.raises(sqlite3.IntegrityError, match="accepted delivery is final"):
        connection.execute("UPDATE deliveries SET status = 'pending'")


def test_rows_left_in_flight_become_unknown_with_a_reason(connection):
    run = freeze(connection, ["a@example.org", "b@example.org"])
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "sendgrid", "30-1-1", run)
    recovered = ledger.recover_in_flight(connection, 30, "real")
    assert [row.email for row in recovered] == ["a@example.org"]
    row = ledger.deliveries(connection, 30, "real", ["unknown"])[0]
    assert "--resend-unknown" in row.last_error and row.batch_id == "30-1-1"


def test_rehearsal_rows_are_kept_apart_from_real_deliveries(connection):
    run = freeze(connection, ["a@example.org"], kind="outbox")
    ledger.mark_in_flight(connection, 30, "outbox", ["a@example.org"], "outbox", "30-1-1", run)
    ledger.record_outcomes(connection, 30, "outbox", [Outcome("a@example.org", "accepted")])
    assert ledger.status_by_email(connection, 30, "real") == {}
    assert ledger.counts(connection, 30, "outbox")["accepted"] == 1
    assert ledger.kinds_recorded(connection, 30) == ["outbox"]


def test_a_rehearsal_can_start_over_but_a_real_send_record_is_never_deleted(connection):
    for kind in ("outbox", "real"):
        run = freeze(connection, ["a@example.org"], kind=kind)
        ledger.mark_in_flight(connection, 30, kind, ["a@example.org"], kind, "30-1-1", run)
        ledger.record_outcomes(connection, 30, kind, [Outcome("a@example.org", "accepted")])
    assert ledger.forget_rehearsal(connection, 30, "outbox") == 1
    assert ledger.status_by_email(connection, 30, "outbox") == {}
    with pytest.raises(LedgerError, match="cannot be restarted"):
        ledger.forget_rehearsal(connection, 30, "real")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        connection.execute("DELETE FROM deliveries WHERE kind = 'real'")
    assert ledger.status_by_email(connection, 30, "real") == {"a@example.org": "accepted"}


def test_reading_statuses_for_a_dry_run_creates_nothing(tmp_path):
    path = tmp_path / "absent.db"
    assert ledger.statuses_read_only(path, 30, "real") == {}
    assert not path.exists()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from campaign import ledger
    from campaign.freeze import freeze_audience
    connection = ledger.open_ledger(Path(sys.argv[1]))
    emails = [f"p{n}@example.org" for n in range(2000)]
    run = ledger.start_run(connection, 30, "real", "sendgrid")
    freeze_audience(connection, 30, "real", ((e, "N", ("members",)) for e in emails), run)
    print("ready", flush=True)
    batch = 0
    while True:
        batch += 1
        ledger.mark_in_flight(connection, 30, "real", emails, "sendgrid", f"batch-{batch}", run)
        ledger.record_outcomes(connection, 30, "real",
                               [ledger.Outcome(e, "failed", error=f"batch-{batch}") for e in emails])
""")


@pytest.mark.parametrize("seed", range(4))
def test_a_process_killed_mid_write_leaves_whole_transactions_only(tmp_path, seed):
    database = tmp_path / "campaign.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(database)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.05, 0.3))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    connection = open_ledger(database)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = connection.execute("SELECT status, batch_id, last_error FROM deliveries").fetchall()
    assert len(rows) == 2000
    assert len({tuple(row) for row in rows}) == 1, "a transaction was half applied"


def test_a_ledger_from_before_refused_keeps_its_rows_triggers_and_tells_refused_requests_apart(tmp_path, monkeypatch):
    path = tmp_path / "campaign.db"
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "MIGRATIONS", [m for m in ledger.MIGRATIONS if m[0] < "0006"])
        old = open_ledger(path)
        freeze(old, ["a@example.org", "b@example.org", "c@example.org"])
        ledger.record_outcomes(old, 30, "real", [
            Outcome("a@example.org", "accepted", "msg-1"),
            Outcome("b@example.org", "rejected", error="SendGrid rejected the request (400): bad from (field: from.email)"),
            Outcome("c@example.org", "rejected", error="550 5.1.1 no such user")])
        old.close()
    migrated = open_ledger(path)
    assert "0006_refused_status" in applied_migrations(migrated)
    assert ledger.status_by_email(migrated, 30, "real") == {
        "a@example.org": "accepted", "b@example.org": "refused", "c@example.org": "rejected"}
    assert ledger.deliveries(migrated, 30, "real")[0].message_id == "msg-1"
    with pytest.raises(sqlite3.IntegrityError, match="accepted delivery is final"):
        migrated.execute("UPDATE deliveries SET status = 'failed' WHERE email = 'a@example.org'")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        migrated.execute("DELETE FROM deliveries WHERE email = 'c@example.org'")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        migrated.execute("UPDATE deliveries SET status = 'sent' WHERE email = 'c@example.org'")


def test_the_skipped_migration_keeps_every_row_and_both_guards(tmp_path, monkeypatch):
    before_skipped = [m for m in ledger.MIGRATIONS if m[0] < "0007_skipped_status"]
    monkeypatch.setattr(ledger, "MIGRATIONS", before_skipped)
    old = open_ledger(tmp_path / "campaign.db")
    run = freeze(old, ["ana@example.org", "bo@example.org"])
    ledger.mark_in_flight(old, 30, "real", ["ana@example.org"], "sendgrid", "b1", run)
    ledger.record_outcomes(old, 30, "real", [Outcome("ana@example.org", ledger.ACCEPTED, "msg-1")])
    rows_before = [tuple(row) for row in old.execute("SELECT * FROM deliveries ORDER BY rowid")]
    old.close()
    monkeypatch.undo()

    migrated = open_ledger(tmp_path / "campaign.db")
    assert "0007_skipped_status" in applied_migrations(migrated)
    width = len(rows_before[0])   # later migrations append columns (0010: delivery_id)
    assert [tuple(row)[:width] for row in migrated.execute("SELECT * FROM deliveries ORDER BY rowid")] == rows_before
    ledger.mark_skipped(migrated, 30, "real", {"bo@example.org": "unsubscribed during the send",
                                               "ana@example.org": "unsubscribed during the send"})
    assert ledger.status_by_email(migrated, 30, "real") == {"ana@example.org": "accepted", "bo@example.org": "skipped"}
    with pytest.raises(sqlite3.DatabaseError, match="accepted delivery is final"):
        migrated.execute("UPDATE deliveries SET status = 'pending' WHERE email = 'ana@example.org'")
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        migrated.execute("DELETE FROM deliveries WHERE kind = 'real'")
    migrated.close()


def test_the_checks_migration_keeps_every_row_in_order_every_index_and_every_guard(tmp_path, monkeypatch):
    before = [m for m in ledger.MIGRATIONS if m[0] < "0012_checks_as_comparisons"]
    monkeypatch.setattr(ledger, "MIGRATIONS", before)
    old = open_ledger(tmp_path / "campaign.db")
    run = freeze(old, ["cy@example.org", "ana@example.org", "bo@example.org"])
    ledger.mark_in_flight(old, 30, "real", ["ana@example.org"], "sendgrid", "b1", run, {"ana@example.org": "id-ana"})
    ledger.record_outcomes(old, 30, "real", [Outcome("ana@example.org", ledger.ACCEPTED, "msg-1")])
    rows_before = [tuple(row) for row in old.execute("SELECT * FROM deliveries ORDER BY rowid")]
    schema_before = sorted(tuple(row) for row in old.execute("SELECT type, name FROM sqlite_master WHERE tbl_name = 'deliveries'"))
    old.close()
    monkeypatch.undo()

    migrated = open_ledger(tmp_path / "campaign.db")
    assert "0012_checks_as_comparisons" in applied_migrations(migrated)
    assert [tuple(row) for row in migrated.execute("SELECT * FROM deliveries ORDER BY rowid")] == rows_before
    assert sorted(tuple(row) for row in migrated.execute(
        "SELECT type, name FROM sqlite_master WHERE tbl_name = 'deliveries'")) == schema_before
    assert ledger.delivery_by_id(migrated, "id-ana").email == "ana@example.org"
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        migrated.execute("UPDATE deliveries SET status = 'sent' WHERE email = 'bo@example.org'")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        migrated.execute("INSERT INTO deliveries (issue, kind, email, created_at, updated_at) "
                         "VALUES (30, 'rehearsal', 'x@example.org', '', '')")
    for status in sorted(ledger.STATUSES, key=lambda status: status == ledger.ACCEPTED):   # each still allowed
        migrated.execute("UPDATE deliveries SET status = ? WHERE email = 'bo@example.org'", (status,))
    with pytest.raises(sqlite3.DatabaseError, match="accepted delivery is final"):
        migrated.execute("UPDATE deliveries SET status = 'pending' WHERE email = 'ana@example.org'")
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        migrated.execute("DELETE FROM deliveries WHERE kind = 'real'")
    migrated.close()


def test_each_send_attempt_stores_its_delivery_id_and_the_id_finds_its_row(connection):
    run = freeze(connection, ["a@example.org", "b@example.org"])
    first = {"a@example.org": ledger.new_delivery_id(), "b@example.org": ledger.new_delivery_id()}
    assert len(set(first.values())) == 2 and all(len(value) == 20 for value in first.values())
    ledger.mark_in_flight(connection, 30, "real", list(first), "sendgrid", "30-1-1", run, delivery_ids=first)
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1"),
                                                   Outcome("b@example.org", "unknown", error="504")])
    again = {"a@example.org": ledger.new_delivery_id(), "b@example.org": ledger.new_delivery_id()}
    ledger.mark_in_flight(connection, 30, "real", list(again), "sendgrid", "30-2-1", run, delivery_ids=again)
    a = ledger.delivery_by_id(connection, first["a@example.org"])
    assert a is not None and (a.email, a.status, a.delivery_id) == ("a@example.org", "accepted", first["a@example.org"])
    b = ledger.delivery_by_id(connection, again["b@example.org"])
    assert b is not None and (b.email, b.attempts) == ("b@example.org", 2)
    assert ledger.delivery_by_id(connection, first["b@example.org"]) is None   # superseded by the resend
    assert ledger.delivery_by_id(connection, "") is None


def test_a_batch_of_delivery_ids_are_distinct_opaque_and_as_long_as_single_ones():
    first, second = ledger.new_delivery_ids(1000), ledger.new_delivery_ids(1000)
    assert len(set(first) | set(second)) == 2000
    assert all(len(value) == len(ledger.new_delivery_id()) == 20 and int(value, 16) >= 0 for value in first)


def test_freezing_in_chunks_keeps_file_order_names_lists_and_every_token(connection):
    people = [(f"p{number:05d}@example.org", f'Name "{number}" ñ', ("members", "embassies")[: number % 2 + 1])
              for number in range(FREEZE_CHUNK + 7)]
    run = ledger.start_run(connection, 30, "real", "sendgrid", "", False, "")
    added = freeze_audience(connection, 30, "real", people, run, token_of=lambda email: f"tok-{email}")
    assert added == len(people)
    rows = connection.execute("SELECT email, name, lists FROM deliveries ORDER BY rowid").fetchall()
    assert [tuple(row) for row in rows] == [(email, name, " ".join(lists)) for email, name, lists in people]
    assert ledger.address_for_token(connection, f"tok-{people[-1][0]}") == people[-1][0]
    assert freeze_audience(connection, 30, "real", people, run) == 0


def test_an_answer_is_committed_unforced_but_every_write_ahead_after_it_is_forced_to_disk(connection):
    FULL = 2
    run = freeze(connection, ["a@example.org", "b@example.org"])
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == FULL
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "sendgrid", "30-1-1", run,
                          delivery_ids={"a@example.org": ledger.new_delivery_id()})
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")])
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == FULL
    with pytest.raises(sqlite3.DatabaseError):   # a failed unforced commit restores it too
        ledger.record_outcomes(connection, 30, "real", [Outcome("b@example.org", "no-such-status")])
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == FULL
    assert ledger.status_by_email(connection, 30, "real") == {"a@example.org": "accepted", "b@example.org": "pending"}


def test_a_first_freeze_makes_the_tokens_beside_the_rows_and_keeps_every_one(connection, monkeypatch):
    import campaign.freeze
    import campaign.link_tokens

    monkeypatch.setattr(campaign.link_tokens, "TOKEN_CHUNK", 7)     # several chunks through the bounded queue
    monkeypatch.setattr(campaign.freeze, "FREEZE_CHUNK", 10)
    people = [(f"p{number:03d}@example.org", "N", ("members",)) for number in range(95)]
    run = ledger.start_run(connection, 30, "real", "sendgrid", "", False, "")
    added = freeze_audience(connection, 30, "real", people, run, token_of=lambda email: f"tok-{email}",
                            emails=(email for email, _, _ in people))
    assert added == 95
    assert all(ledger.address_for_token(connection, f"tok-{email}") == email for email, _, _ in people)


@pytest.mark.parametrize("made", ["there", "not there", "cut short", "half there"])
def test_a_first_freeze_keeps_every_token_made_in_another_process_or_else_makes_them_itself(connection, made):
    people = [(f"p{number:03d}@example.org", "N", ("members",)) for number in range(25)]
    emails = [email for email, _, _ in people]
    digests = b"".join(token_digest(f"tok-{email}") for email in emails)
    def done(value):
        future: Future = Future()
        future.set_result(value)
        return future

    failed: Future = Future()
    failed.set_exception(RuntimeError("the builder process is gone"))
    parts = {"there": [(emails, done(digests))], "not there": [(emails, failed)],
             "cut short": [(emails, done(digests[:-32]))],
             "half there": [(emails[:10], done(digests[:320])), (emails[10:], None)]}[made]
    def token_of(email):
        assert made != "there", "a token was made here although the other process made them all"
        assert made != "half there" or email not in emails[:10], "made here, although made there"
        return f"tok-{email}"

    run = ledger.start_run(connection, 30, "real", "sendgrid", "", False, "")
    freeze_audience(connection, 30, "real", people, run, token_of=token_of, emails=emails, digests_made=parts)
    assert all(ledger.address_for_token(connection, f"tok-{email}") == email for email in emails)
    assert connection.execute("SELECT count(*) FROM link_tokens").fetchone()[0] == 25


def test_digests_made_elsewhere_are_staged_as_they_come_in_order_and_stored_at_the_end(connection):
    from campaign.link_tokens import MadeDigests

    emails = [f"p{number}@example.org" for number in range(6)]
    futures: list[Future] = [Future(), Future(), Future()]
    digests = [b"".join(token_digest(f"tok-{email}") for email in emails[start:start + 2]) for start in (0, 2, 4)]
    futures[0].set_result(digests[0])
    futures[2].set_result(digests[2])
    made = MadeDigests([(emails[start:start + 2], future) for start, future in zip((0, 2, 4), futures)],
                       token_of=lambda email: pytest.fail("made here"))
    with transaction(connection):
        made.store(connection)                              # between two chunks of rows: what is made so far
        staged = connection.execute("SELECT email FROM temp.new_link_tokens").fetchall()
        assert [row[0] for row in staged] == emails[:2]     # the second part is not made yet: it waits its turn
        futures[1].set_result(digests[1])
        made.store(connection, wait=True)
    assert all(ledger.address_for_token(connection, f"tok-{email}") == email for email in emails)


def test_a_token_that_cannot_be_made_rolls_the_whole_freeze_back(connection):
    def token_of(email):
        if email == "p050@example.org":
            raise RuntimeError("no token")
        return f"tok-{email}"

    people = [(f"p{number:03d}@example.org", "N", ("members",)) for number in range(FREEZE_CHUNK + 100)]
    run = ledger.start_run(connection, 30, "real", "sendgrid", "", False, "")
    with pytest.raises(RuntimeError, match="no token"):
        freeze_audience(connection, 30, "real", people, run, token_of=token_of,
                        emails=(email for email, _, _ in people))
    assert ledger.status_by_email(connection, 30, "real") == {}
    assert ledger.address_for_token(connection, "tok-p000@example.org") is None


def test_the_addresses_in_some_statuses_are_read_and_none_asked_is_none_found(connection):
    run = freeze(connection, ["a@example.org", "b@example.org"])
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")])
    assert run and ledger.emails_with_status(connection, 30, "real", ["accepted"]) == {"a@example.org"}
    assert ledger.emails_with_status(connection, 30, "real", ["pending", "failed"]) == {"b@example.org"}
    assert ledger.emails_with_status(connection, 30, "real", []) == set()


def test_indexing_link_tokens_says_how_many_were_new(connection):
    freeze(connection, ["a@example.org", "b@example.org", "c@example.org"])
    assert ledger.index_link_tokens(connection, lambda email: f"tok-{email}") == 3
    assert ledger.index_link_tokens(connection, lambda email: f"tok-{email}") == 0
    assert ledger.address_for_token(connection, "tok-b@example.org") == "b@example.org"


def test_a_transaction_inside_another_is_a_savepoint_the_outer_one_commits_or_undoes(tmp_path):
    connection = open_ledger(tmp_path / "campaign.db")
    connection.execute("CREATE TABLE notes (note TEXT)")
    with transaction(connection):
        connection.execute("INSERT INTO notes VALUES ('outer')")
        with pytest.raises(ValueError):
            with transaction(connection, synced=False):
                connection.execute("INSERT INTO notes VALUES ('undone with its savepoint')")
                raise ValueError
        with transaction(connection, synced=False):
            connection.execute("INSERT INTO notes VALUES ('inner')")
        assert connection.in_transaction
    assert [row[0] for row in connection.execute("SELECT note FROM notes")] == ["outer", "inner"]
    with pytest.raises(ValueError):
        with transaction(connection):
            with transaction(connection):
                connection.execute("INSERT INTO notes VALUES ('undone with the outer one')")
            raise ValueError
    assert [row[0] for row in connection.execute("SELECT note FROM notes")] == ["outer", "inner"]
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL, as every connection is left


PROBE_WRITER = """
import sqlite3, sys
other = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    print("free")
except sqlite3.OperationalError as error:
    print(error)
finally:
    other.close()
"""


def test_a_second_ledger_opened_in_the_process_never_takes_the_first_ones_locks_away(tmp_path):
    # POSIX drops every lock a process holds on a file when it closes any descriptor of that file. Opening
    # the ledger checked that it was writable by opening and closing the file itself: a `campaign send`
    # that read the suppressions through a second ledger while loading the audience so lost the lock that
    # tells other processes it uses the WAL. The next process to close its own connection then took the
    # file as unused and deleted the WAL and its index under the running send, and a third one could
    # write beside the send's own open transaction.
    database = tmp_path / "campaign.db"
    sending = open_ledger(database)
    open_ledger(database).close()   # as suppressions.suppressed_emails_at does during a send
    sending.execute("BEGIN IMMEDIATE")
    try:
        probes = [subprocess.run([sys.executable, "-c", PROBE_WRITER, str(database)], capture_output=True,
                                 text=True, timeout=60).stdout.strip() for _ in range(2)]
        assert probes == ["database is locked"] * 2
        assert (tmp_path / "campaign.db-wal").exists() and (tmp_path / "campaign.db-shm").exists()
    finally:
        sending.execute("ROLLBACK")
        sending.close()
