"""A batch written ahead as one row (issue 18): its addresses are in flight until its answer.

A request to SendGrid carries up to 1,000 people. Instead of marking each of their rows in
flight, the write-ahead is one committed row in `batches_in_flight`; the delivery rows are
written once, with the answer. Everything that reads the ledger sees the batch's people as
in flight meanwhile, and a batch a dead process left open becomes `unknown` on the next run.
"""

from __future__ import annotations

import pytest

from campaign import ledger
from campaign.freeze import freeze_audience
from campaign.ledger import Outcome, open_ledger

PEOPLE = ["a@example.org", "b@example.org", "c@example.org"]


@pytest.fixture
def connection(tmp_path):
    db = open_ledger(tmp_path / "campaign.db")
    yield db
    db.close()


def freeze(connection, emails=PEOPLE, kind="real") -> int:
    run = ledger.start_run(connection, 30, kind, "sendgrid")
    freeze_audience(connection, 30, kind, ((email, "N", ("members",)) for email in emails), run)
    return run


def ahead(connection, run, emails, batch_id="30-1-1") -> dict[str, str]:
    ids = dict(zip(emails, ledger.new_delivery_ids(len(emails))))
    ledger.write_batch_ahead(connection, 30, "real", "sendgrid", batch_id, run, ids)
    return ids


def raw_statuses(connection) -> dict[str, str]:
    return dict(connection.execute("SELECT email, status FROM deliveries").fetchall())


def test_a_batch_written_ahead_touches_no_delivery_row_yet_every_reader_sees_it_in_flight(connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2])
    assert set(raw_statuses(connection).values()) == {"pending"}          # one row written, not two
    assert ledger.status_by_email(connection, 30, "real") == {
        "a@example.org": "in_flight", "b@example.org": "in_flight", "c@example.org": "pending"}
    counts = ledger.counts(connection, 30, "real")
    assert (counts["in_flight"], counts["pending"]) == (2, 1)
    assert [d.email for d in ledger.deliveries(connection, 30, "real", ["in_flight"])] == PEOPLE[:2]
    assert [d.email for d in ledger.deliveries(connection, 30, "real", ["pending"])] == PEOPLE[2:]
    assert {d.status for d in ledger.deliveries(connection, 30, "real")} == {"in_flight", "pending"}
    assert ledger.emails_with_status(connection, 30, "real", ["pending"]) == {"c@example.org"}
    assert ledger.emails_with_status(connection, 30, "real", ["in_flight"]) == set(PEOPLE[:2])


def test_the_answer_writes_each_row_once_with_the_id_its_message_carried(connection):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:2])
    ledger.record_outcomes(connection, 30, "real", [Outcome(email, "accepted", "msg-1") for email in PEOPLE[:2]],
                           batch_id="30-1-1")
    rows = {d.email: d for d in ledger.deliveries(connection, 30, "real")}
    for email in PEOPLE[:2]:
        row = rows[email]
        assert (row.status, row.message_id, row.provider, row.batch_id, row.attempts, row.delivery_id) == \
            ("accepted", "msg-1", "sendgrid", "30-1-1", 1, ids[email])
        assert row.accepted_at and ledger.delivery_by_id(connection, ids[email]).email == email
    assert rows["c@example.org"].status == "pending"
    assert connection.execute("SELECT count(*) FROM batches_in_flight").fetchone()[0] == 0


def test_a_batch_a_dead_send_left_open_is_recovered_unknown_with_its_delivery_ids(connection):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:2])
    recovered = ledger.recover_in_flight(connection, 30, "real")
    assert [d.email for d in recovered] == PEOPLE[:2]
    rows = {d.email: d for d in ledger.deliveries(connection, 30, "real")}
    for email in PEOPLE[:2]:
        assert (rows[email].status, rows[email].delivery_id, rows[email].attempts, rows[email].batch_id) == \
            ("unknown", ids[email], 1, "30-1-1")
        assert "--resend-unknown" in rows[email].last_error
        assert ledger.delivery_by_id(connection, ids[email]).email == email   # its events can settle it
    assert rows["c@example.org"].status == "pending"
    assert ledger.recover_in_flight(connection, 30, "real") == []


def test_rows_of_a_batch_missing_from_its_answer_stay_in_flight_never_pending(connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2])
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")],
                           batch_id="30-1-1")
    assert raw_statuses(connection)["b@example.org"] == "in_flight"
    assert [d.email for d in ledger.recover_in_flight(connection, 30, "real")] == ["b@example.org"]
    assert ledger.status_by_email(connection, 30, "real")["b@example.org"] == "unknown"


def test_a_retry_writes_the_batch_ahead_again_and_counts_both_attempts(connection):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:1])
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "failed", error="retrying: 429")],
                           batch_id="30-1-1")
    assert ledger.status_by_email(connection, 30, "real")["a@example.org"] == "failed"
    ledger.write_batch_ahead(connection, 30, "real", "sendgrid", "30-1-1", run, ids)
    assert ledger.status_by_email(connection, 30, "real")["a@example.org"] == "in_flight"
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-2")],
                           batch_id="30-1-1")
    row = ledger.deliveries(connection, 30, "real", ["accepted"])[0]
    assert (row.attempts, row.message_id, row.delivery_id) == (2, "msg-2", ids["a@example.org"])


def test_an_accepted_row_in_a_batch_written_ahead_again_stays_accepted(connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:1])
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")], batch_id="30-1-1")
    ahead(connection, run, PEOPLE[:1], batch_id="30-2-1")
    ledger.recover_in_flight(connection, 30, "real")
    row = ledger.deliveries(connection, 30, "real", ["accepted"])[0]
    assert (row.email, row.message_id, row.attempts) == ("a@example.org", "msg-1", 1)


def test_restarting_a_rehearsal_forgets_its_open_batches_too(connection):
    run = freeze(connection, kind="outbox")
    ledger.write_batch_ahead(connection, 30, "outbox", "outbox", "30-1-1", run, {"a@example.org": "id-1"})
    ledger.forget_rehearsal(connection, 30, "outbox")
    freeze(connection, kind="outbox")
    assert set(ledger.status_by_email(connection, 30, "outbox").values()) == {"pending"}


def test_a_ledger_from_before_batches_were_written_ahead_still_reads_in_a_dry_run(tmp_path):
    connection = open_ledger(tmp_path / "campaign.db")
    run = freeze(connection)
    ledger.mark_in_flight(connection, 30, "real", ["a@example.org"], "sendgrid", "30-1-1", run)
    ledger.record_outcomes(connection, 30, "real", [Outcome("a@example.org", "accepted", "msg-1")])
    connection.execute("DROP TABLE batches_in_flight")   # as the version before migration 0011 left it
    connection.execute("DELETE FROM migrations WHERE name = '0011_batches_in_flight'")
    connection.close()
    assert ledger.statuses_read_only(tmp_path / "campaign.db", 30, "real") == {
        "a@example.org": "accepted", "b@example.org": "pending", "c@example.org": "pending"}


def test_the_breakdowns_by_list_and_provider_count_an_open_batch_in_flight_as_the_totals_do(connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2])
    assert ledger.counts_by(connection, 30, "real", "list") == {"members": {"in_flight": 2, "pending": 1}}
    by_provider = ledger.counts_by(connection, 30, "real", "provider")
    assert sum(statuses.get("in_flight", 0) for statuses in by_provider.values()) == 2
    assert sum(statuses.get("pending", 0) for statuses in by_provider.values()) == 1
