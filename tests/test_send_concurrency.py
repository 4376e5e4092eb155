"""`[sendgrid] concurrency` (issue 18): several batches in flight, the ledger's promises kept.

Real SendGrid client, the local stand-in, real SQLite files. The stand-in's `gather`
holds mail/send answers until that many requests are in flight at once, then answers
the last one first: a send that never had four in flight could not finish its groups
(each waits at most 10 s, then the count of what was in flight fails the test).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from campaign import ledger
from campaign.errors import ProviderError
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import RetryPolicy, SendOptions, send_issue
from campaign.send.stop import StopSignal
from campaign.suppressions import add_suppression
from send_support import make_settings, people, small_issue
from servers import sendgrid_server as stand_in
from servers.sendgrid_server import SendGridServer

DRIVER = Path(__file__).with_name("send_support.py")
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


def send(settings, connection, recipients, batch_size, **options):
    return send_issue(connection, small_issue(), recipients, SendGridProvider(settings), settings,
                      SendOptions(batch_size=batch_size, **options), policy=FAST, sleep=lambda seconds: None)


def wait_until(happened, limit: float = 15.0) -> None:
    """Poll (bounded) until `happened()` is true; past the limit, go on: the test's checks then fail."""
    deadline = time.monotonic() + limit
    while not happened() and time.monotonic() < deadline:
        time.sleep(0.002)


def answer_number(message_id: str) -> int:
    return int(message_id.rsplit("-", 1)[1])   # the stand-in numbers message ids as it answers


def test_four_batches_in_flight_answered_out_of_order_are_each_recorded_against_their_own_request(tmp_path):
    with SendGridServer() as server:                      # validates every body against SendGrid's schema
        server.gather = 4
        server.delay = 0.5   # the last of a group answers at once but for this: time for `watch` to read
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        seen_in_flight: list[int] = []

        def watch() -> None:   # when four requests are at the server, the ledger has them all in flight
            wait_until(lambda: server.in_flight >= 4)
            reader = open_ledger(settings.database)
            seen_in_flight.append(ledger.counts(reader, 30, "real")["in_flight"])
            reader.close()

        watcher = threading.Thread(target=watch)
        watcher.start()
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(40), batch_size=5)
        watcher.join(timeout=20)
        assert report.outcome == "completed" and report.counts["accepted"] == 40
        assert server.max_in_flight == 4 and seen_in_flight == [20]
        sends = server.mail_sends()
        assert len(sends) == 8
        assert [answer_number(r.message_id) for r in sends[:4]] == [4, 3, 2, 1]   # last in, first answered
        by_email = {delivery.email: delivery for delivery in ledger.deliveries(connection, 30, "real")}
        for request in sends:
            assert {by_email[email].message_id for email in request.recipients} == {request.message_id}
        assert Counter(server.delivered()) == Counter(r.email for r in people(40))
        connection.close()


def _post_mail_send(server) -> None:
    request = urllib.request.Request(server.url + "/v3/mail/send", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {server.api_key}",
                                              "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=20).read()


def test_the_stand_in_lists_requests_in_the_order_it_counts_them_in_however_its_threads_are_scheduled(monkeypatch):
    """The four-in-flight test reads "last in, first answered" off mail_sends(): a handler thread paused
    between keeping its request and counting it in let a later request be counted first (seen once in
    20 sends of 40 batches under load)."""
    first_paused, second_seen = threading.Event(), threading.Event()
    serves = stand_in.serves_suppressions

    def pausing_the_first(path):   # called by each handler between keeping its request and going on
        if not first_paused.is_set():
            first_paused.set()
            second_seen.wait(10)
            time.sleep(0.2)        # time for the second to be counted in, had the first not been yet
        else:
            second_seen.set()
        return serves(path)

    monkeypatch.setattr(stand_in, "serves_suppressions", pausing_the_first)
    with SendGridServer(validate=False) as server:
        server.gather = 2
        first = threading.Thread(target=_post_mail_send, args=(server,))
        first.start()
        assert first_paused.wait(10)
        _post_mail_send(server)
        first.join(timeout=20)
        assert [answer_number(r.message_id) for r in server.mail_sends()] == [2, 1]   # last in, first answered


def test_an_unsubscribe_during_a_concurrent_send_is_excluded_from_later_batches(tmp_path):
    with SendGridServer(validate=False, delay=0.2) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        last = people(1, start=39)[0].email                  # in batch 8: not started before batch 1 answers

        def unsubscribe() -> None:
            wait_until(server.mail_sends)
            writer = open_ledger(settings.database)
            add_suppression(writer, last, "unsubscribed", note="one-click, during the send")
            writer.close()

        unsubscriber = threading.Thread(target=unsubscribe)
        unsubscriber.start()
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(40), batch_size=5)
        unsubscriber.join(timeout=20)
        assert report.outcome == "completed"
        assert last not in server.delivered() and len(server.delivered()) == 39
        assert ledger.status_by_email(connection, 30, "real")[last] == "skipped"
        connection.close()


def test_someone_suppressed_after_their_batch_was_built_and_before_it_goes_is_skipped(tmp_path):
    # A batch is built while every worker is busy, so that a worker freed takes it at once; an
    # unsubscribe that comes meanwhile must still keep its person out of it.
    late = people(1, start=12)[0].email                 # in batch 3 (of 5 people each)

    class UnsubscribedOnceBuilt(SendGridProvider):
        def prepare(self, batch, body=None):
            super().prepare(batch, body)
            if batch.batch_id.endswith("-3"):   # built (batches 1 and 2 are at the server): the unsubscribe now
                writer = open_ledger(settings.database)
                add_suppression(writer, late, "unsubscribed", note="one-click, during the send")
                writer.close()

    with SendGridServer(validate=False, delay=0.2) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=2)
        connection = open_ledger(settings.database)
        report = send_issue(connection, small_issue(), people(20), UnsubscribedOnceBuilt(settings), settings,
                            SendOptions(batch_size=5), policy=FAST, sleep=lambda seconds: None)
        statuses = ledger.status_by_email(connection, 30, "real")
        connection.close()
    assert report.outcome == "completed"
    assert late not in server.delivered() and Counter(server.delivered()) == Counter(
        r.email for r in people(20) if r.email != late)
    assert statuses[late] == "skipped" and len(server.mail_sends()) == 4


def test_a_batch_that_cannot_be_built_stays_pending_and_the_batches_in_flight_are_recorded(tmp_path):
    with SendGridServer(validate=False, delay=0.1) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        twice = people(5) + people(3, start=5) + people(1, start=5) + people(11, start=8)   # batch 2: a duplicate
        connection = open_ledger(settings.database)
        with pytest.raises(ProviderError, match="appears twice"):
            send(settings, connection, twice, batch_size=5)
        statuses = ledger.status_by_email(connection, 30, "real")
        assert all(statuses[r.email] == "accepted" for r in people(5))           # batch 1 finished and recorded
        assert all(statuses[r.email] == "pending" for r in people(14, start=5))  # nothing of batch 2 went
        assert len(server.mail_sends()) == 1
        connection.close()


def test_a_stop_between_building_a_batch_and_writing_it_ahead_leaves_it_pending_and_the_run_interrupted(tmp_path):
    """Ctrl-C once while a batch is being built: that batch is never written ahead nor posted."""
    stop = StopSignal()

    class StoppedWhileBuilding(SendGridProvider):
        def prepare(self, batch):
            super().prepare(batch)
            if batch.batch_id.endswith("-3"):   # batches 1 and 2 are at the server, 3 is built: Ctrl-C now
                wait_until(lambda: server.in_flight >= 2, limit=10)
                stop.request()

    with SendGridServer(validate=False, delay=0.2) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        report = send_issue(connection, small_issue(), people(20), StoppedWhileBuilding(settings), settings,
                            SendOptions(batch_size=5), policy=FAST, sleep=lambda seconds: None, stop=stop)
        statuses = ledger.status_by_email(connection, 30, "real")
        assert report.outcome == "interrupted" and "before batch 3 of 4" in report.message
        assert [statuses[r.email] for r in people(10)] == ["accepted"] * 10
        assert [statuses[r.email] for r in people(10, start=10)] == ["pending"] * 10
        assert len(server.mail_sends()) == 2
        connection.close()


@pytest.mark.parametrize("point", range(3))
def test_a_sigkill_with_batches_in_flight_leaves_at_most_concurrency_batches_unknown(tmp_path, point):
    count, batch, concurrency = 4000, 250, 4
    rng = random.Random(20261125 + point)
    with SendGridServer(validate=False, delay=0.05) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=concurrency)
        process = subprocess.Popen(
            [sys.executable, str(DRIVER), str(settings.database), str(count), str(batch),
             "--concurrency", str(concurrency)],
            env={**os.environ, "SENDGRID_API_URL": server.url, "SENDGRID_API_KEY": server.api_key},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while len(server.mail_sends()) < 3 + 3 * point and process.poll() is None:
            assert time.monotonic() < deadline, "the send made no progress"
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.04))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=20)
        time.sleep(0.1)                                       # the stand-in finishes what it holds
        server.delay = 0.0
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(count), batch)
        unknown = set(report.unknown)
        assert report.outcome == "completed" and set(report.recovered) == unknown
        assert len(unknown) <= concurrency * batch and len(unknown) % batch == 0
        received = Counter(server.delivered())
        assert all(received[r.email] == 1 for r in people(count) if r.email not in unknown)
        assert all(received[email] <= 1 for email in unknown)
        done = send(settings, connection, people(count), batch, resend_unknown=True)
        assert done.counts["accepted"] == count and set(server.delivered()) == {r.email for r in people(count)}
        connection.close()


def test_a_ledger_deleted_during_a_concurrent_send_stops_it_after_recording_the_batches_in_flight(tmp_path):
    with SendGridServer(validate=False, delay=0.3) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        database = settings.database

        def delete_when_posted() -> None:
            wait_until(server.mail_sends)
            for suffix in ("", "-wal", "-shm"):
                database.with_name(database.name + suffix).unlink(missing_ok=True)

        meddler = threading.Thread(target=delete_when_posted)
        meddler.start()
        connection = open_ledger(database)
        report = send(settings, connection, people(40), batch_size=5)
        meddler.join(timeout=20)
        connection.close()
        assert report.outcome == "stopped" and "was deleted" in report.message
        sent = Counter(server.delivered())
        assert 1 <= len(server.mail_sends()) <= 8 and max(sent.values()) == 1
        rescued, = [path for path in tmp_path.iterdir() if path.name.startswith("campaign.db.rescued")]
        kept = open_ledger(rescued)
        statuses = ledger.status_by_email(kept, 30, "real")
        kept.close()
        assert {email for email, status in statuses.items() if status == "accepted"} == set(sent)


def test_a_concurrent_send_gives_every_row_a_delivery_id_and_sends_it_in_custom_args(tmp_path):
    # The webhook matches SendGrid's events to ledger rows by this id; the concurrent path
    # (SendGrid's default) must carry it like the one-batch-at-a-time path does.
    with SendGridServer(validate=False) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(20), batch_size=5)
        assert report.outcome == "completed"
        sent = {personalization["to"][0]["email"]: personalization["custom_args"].get("campaign_delivery", "")
                for request in server.mail_sends() for personalization in request.body["personalizations"]}
        stored = {delivery.email: delivery.delivery_id for delivery in ledger.deliveries(connection, 30, "real")}
        connection.close()
    assert len(sent) == 20 and all(sent.values()), sent
    assert sent == stored


def test_a_worker_writes_only_its_batchs_row_and_the_answer_reaches_everyones_row_before_the_send_ends(tmp_path):
    """A worker waits for one row (the answer kept on its batch's row), not a thousand: the people's
    rows are written by the ledger's own thread meanwhile, or at the end, never by a worker."""
    writers: dict[str, set[str]] = {"batch answers": set(), "people's rows": set()}

    def traced(statement: str) -> None:
        thread = threading.current_thread().name.split("_")[0]
        if statement.startswith("UPDATE batches_in_flight SET answer"):
            writers["batch answers"].add(thread)
        elif statement.startswith("WITH ahead") and "UPDATE deliveries" in statement:
            writers["people's rows"].add(thread)

    with SendGridServer() as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        connection.set_trace_callback(traced)
        report = send(settings, connection, people(200), batch_size=10)
        connection.set_trace_callback(None)
        left_open = connection.execute("SELECT count(*) FROM batches_in_flight").fetchone()[0]
        rows = ledger.deliveries(connection, 30, "real")
        connection.close()
    assert writers["batch answers"] == {"campaign-batch"}
    assert writers["people's rows"] and writers["people's rows"] <= {"campaign-ledger-meanwhile", "MainThread"}
    assert report.outcome == "completed" and report.counts["accepted"] == 200 and left_open == 0
    carried = {p["to"][0]["email"]: (request.message_id, p["custom_args"]["campaign_delivery"])
               for request in server.mail_sends() for p in request.body["personalizations"]}
    assert {row.email: (row.message_id, row.delivery_id) for row in rows} == carried   # each its own request's
