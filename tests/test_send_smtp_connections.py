"""`[smtp] connections` (issue 18): several SMTP connections at once, each message still written ahead.

Real aiosmtpd on loopback, real SQLite files, the real send loop. The server's `delay` holds
each "250" a moment, so its `most_at_once` counts the connections that were answered together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from campaign import ledger
from campaign.ledger import open_ledger
from campaign.providers.smtp import Pacer, SmtpProvider
from campaign.send import SendOptions, send_issue
from campaign.send.stop import StopSignal
from campaign.suppressions import find_suppression
from send_support import make_settings, people, small_issue
from servers.smtp_server import SmtpServer

DRIVER = Path(__file__).with_name("send_support.py")


def smtp_environ(server) -> dict[str, str]:
    return {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}


def send(settings, connection, recipients, batch_size=10, **keywords):
    return send_issue(connection, small_issue(), recipients, SmtpProvider(settings), settings,
                      SendOptions(batch_size=batch_size), sleep=lambda seconds: None, **keywords)


def start_driver(tmp_path, server, count: int, batch: int, connections: int):
    """tests/send_support.py sending `count` people over SMTP in a process a test can signal or kill."""
    environ = smtp_environ(server)
    settings = make_settings(tmp_path, environ, connections=connections)
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), str(settings.database), str(count), str(batch), "--smtp",
         "--connections", str(connections)],
        env={**os.environ, **environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return settings, process


def wait_until(happened, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not happened() and time.monotonic() < deadline:
        time.sleep(0.002)


def test_three_connections_carry_the_send_at_once_and_each_recipient_gets_one_message(tmp_path, smtp_server):
    smtp_server.delay = 0.03
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=3)
    connection = open_ledger(settings.database)
    report = send(settings, connection, people(60))
    assert report.outcome == "completed" and report.counts["accepted"] == 60
    assert smtp_server.most_at_once == 3 and len(smtp_server.peers) == 3
    assert Counter(smtp_server.recipients()) == Counter(r.email for r in people(60))
    sent_ids = {message.message["Message-ID"] for message in smtp_server.messages}
    rows = connection.execute("SELECT message_id FROM deliveries WHERE issue = 30").fetchall()
    assert {row[0] for row in rows} == sent_ids   # each row names the message its own connection sent


def test_one_connection_is_the_default(tmp_path, smtp_server):
    smtp_server.delay = 0.01
    settings = make_settings(tmp_path, smtp_environ(smtp_server))
    report = send(settings, open_ledger(settings.database), people(30))
    assert report.counts["accepted"] == 30
    assert smtp_server.most_at_once == 1 and len(smtp_server.peers) == 1


def test_no_such_mailbox_on_one_connection_is_suppressed_while_the_others_go_on(tmp_path, smtp_server):
    smtp_server.refuse("person00017@example.org", 550, "5.1.1 no such user")
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=4)
    connection = open_ledger(settings.database)
    report = send(settings, connection, people(40))
    statuses = ledger.status_by_email(connection, 30, "real")
    assert statuses.pop("person00017@example.org") == "rejected"
    assert set(statuses.values()) == {"accepted"} and report.outcome == "completed"
    suppression = find_suppression(connection, "person00017@example.org")
    assert suppression is not None and suppression.reason == "bounced"


def test_a_refused_sender_on_any_connection_stops_the_send_and_leaves_the_rest_pending(tmp_path, smtp_server):
    smtp_server.reply_next("MAIL", "553 5.7.1 sender not allowed")
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=3)
    connection = open_ledger(settings.database)
    report = send(settings, connection, people(60))
    counts = report.counts
    assert report.outcome == "stopped" and "refused the sender" in report.message
    assert counts["in_flight"] == 0 and counts["unknown"] == 0
    assert counts["accepted"] == len(smtp_server.messages) < 60
    assert counts["accepted"] + counts["pending"] == 60


def test_a_stop_request_lets_each_connection_finish_its_message_and_leaves_the_rest_pending(tmp_path, smtp_server):
    smtp_server.delay = 0.02
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=3)
    connection = open_ledger(settings.database)
    stop = StopSignal()
    threading.Thread(target=lambda: (wait_until(lambda: len(smtp_server.messages) >= 10), stop.request()),
                     daemon=True).start()
    report = send(settings, connection, people(90), stop=stop)
    counts = report.counts
    assert report.outcome == "interrupted" and "Resume with" in report.message
    assert counts["in_flight"] == 0 and counts["unknown"] == 0
    assert counts["accepted"] == len(smtp_server.messages) < 90
    resumed = send(settings, connection, people(90))
    assert resumed.counts["accepted"] == 90
    assert Counter(smtp_server.recipients()) == Counter(r.email for r in people(90))


def test_a_sigkill_with_three_connections_leaves_at_most_three_messages_unknown(tmp_path):
    count, batch = 300, 50
    with SmtpServer() as server:
        server.delay = 0.005
        settings, process = start_driver(tmp_path, server, count, batch, connections=3)
        wait_until(lambda: len(server.messages) >= 150 or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert len(server.peers) == 3, process.stderr.read() if process.stderr else ""   # all three sending
        delivered = set(server.recipients())
        connection = open_ledger(settings.database)
        statuses = ledger.status_by_email(connection, 30, "real")
        accepted = {email for email, status in statuses.items() if status == "accepted"}
        assert accepted <= delivered and 0 < len(accepted) < count
        assert len(delivered - accepted) <= 3, "each connection's message is written ahead, one by one"

        server.delay = 0.0
        report = send(settings, connection, people(count), batch_size=batch)
        assert report.outcome == "completed" and len(report.unknown) <= 3
        received = Counter(server.recipients())
        for recipient in people(count):
            assert received[recipient.email] <= 1, recipient.email
            if recipient.email not in report.unknown:
                assert received[recipient.email] == 1, recipient.email


def test_max_per_minute_counts_every_connection_together():
    times = iter([1000.0] * 100)
    waits: list[float] = []
    pacer = Pacer(limit=4, clock=lambda: next(times), sleep=waits.append)
    threads = [threading.Thread(target=lambda: [pacer.wait_turn() for _ in range(3)]) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [60.0] * 4 + [120.0]   # 9 messages, 4 a minute: 4 now, 4 after 60 s, 1 after 120 s


def test_max_per_connection_holds_for_each_connection(tmp_path, smtp_server):
    make_settings(tmp_path, connections=2)   # writes campaign.toml, ending in its [smtp] table
    config = tmp_path / "campaign.toml"
    config.write_text(config.read_text(encoding="utf-8") + "max_per_connection = 2\n", encoding="utf-8")
    settings = make_settings(tmp_path, smtp_environ(smtp_server))
    report = send(settings, open_ledger(settings.database), people(20), batch_size=5)
    assert report.counts["accepted"] == 20
    assert len(smtp_server.peers) == 10   # 20 messages, 2 a connection, however many at once


def test_a_second_ctrl_c_records_each_connections_message_unknown_and_leaves_the_rest_pending(tmp_path):
    count, batch = 60, 10
    with SmtpServer() as server:
        server.delay = 2.0   # three messages stored, each connection waiting for its "250"
        settings, process = start_driver(tmp_path, server, count, batch, connections=3)
        wait_until(lambda: server.answering == 3 or process.poll() is not None)
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
        assert process.returncode == 130 and "interrupted at once" in stdout, stdout + stderr
        statuses = ledger.status_by_email(open_ledger(settings.database), 30, "real")
        unknown = {email for email, status in statuses.items() if status == "unknown"}
        accepted = {email for email, status in statuses.items() if status == "accepted"}
        assert unknown | accepted == set(server.recipients()) and not unknown & accepted
        assert 1 <= len(unknown) <= 3   # each connection's message, stored and not yet answered (3 unless stalled)
        assert Counter(statuses.values())["pending"] == count - len(unknown) - len(accepted)


def test_a_list_smaller_than_a_batch_per_connection_still_uses_every_connection(tmp_path, smtp_server):
    """SMTP's batch (100) is only where the send loop counts and may pause: with several connections
    a send of 40 is spread over all of them, not one batch on one connection."""
    smtp_server.delay = 0.03
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=4)
    report = send(settings, open_ledger(settings.database), people(40), batch_size=None)
    assert report.counts["accepted"] == 40
    assert smtp_server.most_at_once == 4 and len(smtp_server.peers) == 4


def test_the_plan_shows_the_batches_the_connections_will_take():
    from campaign.providers import provider_info
    from campaign.send.plan import plan_send

    smtp = plan_send({}, 30, people(40), provider_info("smtp"), SendOptions(), concurrency=4)
    assert (smtp.to_send, smtp.batch_size) == (40, 10)
    assert plan_send({}, 30, people(1000), provider_info("smtp"), SendOptions(), concurrency=4).batch_size == 100
    assert plan_send({}, 30, people(40), provider_info("sendgrid"), SendOptions(), concurrency=4).batch_size == 1000


@pytest.mark.parametrize("connections", [1, 2])
def test_a_stop_during_a_4xx_backoff_leaves_that_message_failed_for_a_plain_resume_not_unknown(
        tmp_path, smtp_server, connections):
    """The server said 452 (not delivered); the send waits before trying that message again. The wait
    is the send's own, which a stop request cuts short, and meanwhile the row says `failed`: a stop
    (or a crash) then leaves it to a plain resume, instead of sending it anyway or calling it unknown."""
    slow = "person00003@example.org"
    smtp_server.refuse(slow, 452, "4.5.3 too many recipients, slow down", times=1)
    settings = make_settings(tmp_path, smtp_environ(smtp_server), connections=connections)
    connection = open_ledger(settings.database)
    stop = StopSignal()
    report = send_issue(connection, small_issue(), people(10), SmtpProvider(settings), settings,
                        SendOptions(batch_size=10 // connections), stop=stop, sleep=lambda seconds: stop.request())
    assert report.outcome == "interrupted"
    statuses = ledger.status_by_email(connection, 30, "real")
    assert statuses[slow] == "failed" and "unknown" not in statuses.values() and "in_flight" not in statuses.values()
    assert slow not in smtp_server.recipients()
    resumed = send(settings, connection, people(10))
    assert resumed.counts["accepted"] == 10 and Counter(smtp_server.recipients())[slow] == 1
