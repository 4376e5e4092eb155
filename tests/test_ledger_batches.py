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


@pytest.fixture(params=["addresses unknown", "addresses known"])
def answer(request, connection):
    """record_outcomes for a batch, with or without the addresses it was written ahead with (`carried`):
    knowing them, an answer for all of them is written straight from the batch's row; every test
    below holds both ways."""
    def record(outcomes, batch_id, written_ahead):
        carried = frozenset(written_ahead) if request.param == "addresses known" else None
        ledger.record_outcomes(connection, 30, "real", outcomes, batch_id=batch_id, carried=carried)
    return record


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


def test_the_answer_writes_each_row_once_with_the_id_its_message_carried(connection, answer):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:2])
    answer([Outcome(email, "accepted", "msg-1") for email in PEOPLE[:2]], "30-1-1", PEOPLE[:2])
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


def test_rows_of_a_batch_missing_from_its_answer_stay_in_flight_never_pending(connection, answer):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2])
    answer([Outcome("a@example.org", "accepted", "msg-1")], "30-1-1", PEOPLE[:2])
    assert raw_statuses(connection)["b@example.org"] == "in_flight"
    assert [d.email for d in ledger.recover_in_flight(connection, 30, "real")] == ["b@example.org"]
    assert ledger.status_by_email(connection, 30, "real")["b@example.org"] == "unknown"


def test_a_retry_writes_the_batch_ahead_again_and_counts_both_attempts(connection, answer):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:1])
    answer([Outcome("a@example.org", "failed", error="retrying: 429")], "30-1-1", PEOPLE[:1])
    row = ledger.deliveries(connection, 30, "real", ["failed"])[0]
    assert (row.last_error, row.attempts, row.accepted_at) == ("retrying: 429", 1, None)
    ledger.write_batch_ahead(connection, 30, "real", "sendgrid", "30-1-1", run, ids)
    assert ledger.status_by_email(connection, 30, "real")["a@example.org"] == "in_flight"
    answer([Outcome("a@example.org", "accepted", "msg-2")], "30-1-1", PEOPLE[:1])
    row = ledger.deliveries(connection, 30, "real", ["accepted"])[0]
    assert (row.attempts, row.message_id, row.delivery_id) == (2, "msg-2", ids["a@example.org"])


def test_an_accepted_row_in_a_batch_written_ahead_again_stays_accepted(connection, answer):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:1])
    answer([Outcome("a@example.org", "accepted", "msg-1")], "30-1-1", PEOPLE[:1])
    ahead(connection, run, PEOPLE[:1], batch_id="30-2-1")
    ledger.recover_in_flight(connection, 30, "real")
    row = ledger.deliveries(connection, 30, "real", ["accepted"])[0]
    assert (row.email, row.message_id, row.attempts) == ("a@example.org", "msg-1", 1)


def test_an_accepted_row_answered_again_in_a_whole_batch_keeps_its_first_answer(connection, answer):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:1])
    answer([Outcome("a@example.org", "accepted", "msg-1")], "30-1-1", PEOPLE[:1])
    ahead(connection, run, PEOPLE[:2], batch_id="30-2-1")
    answer([Outcome(email, "rejected", error="400") for email in PEOPLE[:2]], "30-2-1", PEOPLE[:2])
    rows = {d.email: d for d in ledger.deliveries(connection, 30, "real")}
    assert (rows["a@example.org"].status, rows["a@example.org"].message_id) == ("accepted", "msg-1")
    assert (rows["b@example.org"].status, rows["b@example.org"].last_error) == ("rejected", "400")
    assert connection.execute("SELECT count(*) FROM batches_in_flight").fetchone()[0] == 0


def test_an_answer_mixing_two_outcomes_writes_each_as_it_came(connection, answer):
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE)
    answer([Outcome("a@example.org", "accepted", "msg-1"), Outcome("b@example.org", "rejected", error="bad"),
            Outcome("c@example.org", "accepted", "msg-1")], "30-1-1", PEOPLE)
    rows = {d.email: d for d in ledger.deliveries(connection, 30, "real")}
    assert {email: (row.status, row.delivery_id, row.attempts) for email, row in rows.items()} == {
        "a@example.org": ("accepted", ids["a@example.org"], 1), "b@example.org": ("rejected", ids["b@example.org"], 1),
        "c@example.org": ("accepted", ids["c@example.org"], 1)}


def test_an_answer_for_a_batch_no_longer_open_still_writes_its_rows(connection, answer):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2])
    connection.execute("DELETE FROM batches_in_flight")   # as a second Ctrl-C's abandon leaves a batch closed
    answer([Outcome(email, "accepted", "msg-1") for email in PEOPLE[:2]], "30-1-1", PEOPLE[:2])
    assert raw_statuses(connection) == {"a@example.org": "accepted", "b@example.org": "accepted",
                                        "c@example.org": "pending"}


def test_one_answer_for_every_address_a_batch_carried_is_kept_on_its_row_and_written_from_there_in_one_statement(
        connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE)
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    ledger.record_outcomes(connection, 30, "real", [Outcome(email, "accepted", "msg-1") for email in PEOPLE],
                           batch_id="30-1-1", carried=frozenset(PEOPLE))
    connection.set_trace_callback(None)
    written = [s for s in dict.fromkeys(statements)   # a row's trigger reports its statement again
               if s.split()[0].upper() in ("WITH", "UPDATE", "INSERT", "DELETE")]
    assert len(written) == 3 and written[0].startswith("UPDATE batches_in_flight SET answer"), written
    assert "UPDATE deliveries" in written[1] and written[2].startswith("DELETE FROM batches_in_flight"), written
    assert not any("write_ahead" in s for s in statements)   # nothing staged from Python
    assert set(raw_statuses(connection).values()) == {"accepted"}


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


def test_a_send_answers_the_batches_it_wrote_ahead_from_their_rows_and_any_other_the_long_way(connection):
    """RunRecord remembers the addresses of each batch it wrote ahead, so its answer takes the short way;
    an answer for a batch this run did not write ahead (or whose answer leaves someone out) stages them."""
    from campaign.personalize import Envelope
    from campaign.send.plan import SendOptions
    from campaign.send.record import RunRecord
    from send_support import people

    audience = people(4)
    record = RunRecord.start(connection, 30, "real", "sendgrid", SendOptions(), audience).record
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    envelopes = [Envelope(r.email, r.name, delivery_id=f"id-{n}") for n, r in enumerate(audience)]
    record.write_batch_ahead(envelopes[:2], "30-1-1")
    record.record([Outcome(e.email, "accepted", "msg-1") for e in envelopes[:2]], "30-1-1")
    assert not any("write_ahead" in s for s in statements)
    record.write_batch_ahead(envelopes[2:], "30-1-2")
    record.record([Outcome(envelopes[2].email, "accepted", "msg-2")], "30-1-2")
    assert any("write_ahead" in s for s in statements)
    connection.set_trace_callback(None)
    assert ledger.status_by_email(connection, 30, "real") == {
        audience[0].email: "accepted", audience[1].email: "accepted", audience[2].email: "accepted",
        audience[3].email: "in_flight"}
    assert [d.delivery_id for d in ledger.deliveries(connection, 30, "real", ["accepted"])] == ["id-0", "id-1", "id-2"]


def test_rows_by_status_are_read_through_the_status_index_when_no_batch_is_in_flight(connection):
    # At the end of every send the report asks for the failed, unknown, refused and rejected rows:
    # with "OR email IN (those in flight)" always there, each ask read every row (0.1 s at 100,000)
    run = freeze(connection)
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    assert ledger.deliveries(connection, 30, "real", ["unknown"]) == []
    connection.set_trace_callback(None)
    [query] = [statement for statement in statements if statement.startswith("SELECT * FROM deliveries")]
    plan = " ".join(step[-1] for step in connection.execute(f"EXPLAIN QUERY PLAN {query}").fetchall())
    assert "USING INDEX deliveries_status (issue=? AND kind=? AND status=?)" in plan, plan   # not every row
    ahead(connection, run, PEOPLE[:1])   # with a batch in flight, its people are found too
    assert [d.email for d in ledger.deliveries(connection, 30, "real", ["in_flight"])] == PEOPLE[:1]


def test_an_answer_kept_on_its_batchs_row_reads_in_flight_until_it_is_written_on_the_peoples_rows(connection):
    """A concurrent send keeps each batch's one answer on the batch's row (one row written while the
    workers wait, not a thousand), and writes it on the people's rows later (fold_answer)."""
    run = freeze(connection)
    ids = ahead(connection, run, PEOPLE[:2])
    kept = ledger.record_outcomes(connection, 30, "real", [Outcome(e, "accepted", "msg-1") for e in PEOPLE[:2]],
                                  batch_id="30-1-1", carried=frozenset(PEOPLE[:2]), fold=False)
    assert kept and set(raw_statuses(connection).values()) == {"pending"}
    assert ledger.counts(connection, 30, "real")["in_flight"] == 2   # never read as pending meanwhile
    assert ledger.fold_answer(connection, "30-1-1") is True
    assert ledger.status_by_email(connection, 30, "real") == {
        "a@example.org": "accepted", "b@example.org": "accepted", "c@example.org": "pending"}
    rows = {d.email: d for d in ledger.deliveries(connection, 30, "real", ["accepted"])}
    assert {email: row.delivery_id for email, row in rows.items()} == ids
    assert {(row.message_id, row.provider, row.batch_id, row.attempts) for row in rows.values()} == {
        ("msg-1", "sendgrid", "30-1-1", 1)}
    assert {run_id for (run_id,) in connection.execute("SELECT run_id FROM deliveries WHERE status = 'accepted'")} == {run}
    assert ledger.fold_answer(connection, "30-1-1") is False   # closed: nothing more to write
    assert connection.execute("SELECT count(*) FROM batches_in_flight").fetchone()[0] == 0


def test_an_answer_a_dead_send_kept_on_its_batchs_row_is_written_by_the_next_run_never_made_unknown(connection):
    run = freeze(connection)
    ahead(connection, run, PEOPLE[:2], batch_id="30-1-1")
    ahead(connection, run, PEOPLE[2:], batch_id="30-1-2")
    ledger.record_outcomes(connection, 30, "real", [Outcome(e, "accepted", "msg-1") for e in PEOPLE[:2]],
                           batch_id="30-1-1", carried=frozenset(PEOPLE[:2]), fold=False)
    # killed here: batch 1 answered (its answer on its row only), batch 2 still with the provider
    recovered = ledger.recover_in_flight(connection, 30, "real")
    assert [row.email for row in recovered] == ["c@example.org"]
    assert ledger.status_by_email(connection, 30, "real") == {
        "a@example.org": "accepted", "b@example.org": "accepted", "c@example.org": "unknown"}
