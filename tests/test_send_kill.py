"""Kill the send at random points (SIGKILL, Ctrl-C) and resume: nobody skipped, nobody mailed twice.

The send runs as a subprocess (tests/send_support.py, the real send loop and the
real SendGrid provider) against a local SendGrid server in this process; the test
kills it after N requests were observed at the server plus a random delay, then
resumes in-process on the same SQLite file.

The server does not schema-validate bodies here: validation of a 500-recipient body
costs ~0.2 s and would triple this test's time; bodies are validated in test_send.py
and in the provider's own tests.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from campaign import ledger
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import RetryPolicy, SendOptions, send_issue
from send_support import make_settings, people, small_issue
from campaign.providers.smtp import SmtpProvider
from servers.sendgrid_server import SendGridServer
from servers.smtp_server import SmtpServer

DRIVER = Path(__file__).with_name("send_support.py")
COUNT, BATCH = 5000, 500
SEED = int(os.environ.get("KILL_TEST_SEED", "20261125"))


@pytest.fixture(scope="module")
def server():
    with SendGridServer(validate=False) as running:
        yield running


def start_send(server, database: Path, *extra: str) -> subprocess.Popen:
    environ = {**os.environ, "SENDGRID_API_URL": server.url, "SENDGRID_API_KEY": server.api_key}
    return subprocess.Popen([sys.executable, str(DRIVER), str(database), str(COUNT), str(BATCH), *extra],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_requests(server, count: int, process: subprocess.Popen, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while len(server.mail_sends()) < count and process.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.001)


def resume(settings, connection, **options):
    return send_issue(connection, small_issue(), people(COUNT), SendGridProvider(settings), settings,
                      SendOptions(batch_size=BATCH, **options), policy=RetryPolicy(base_delay=0.01),
                      sleep=lambda seconds: None)


@pytest.mark.parametrize("point", range(10))
def test_sigkill_at_any_point_then_resume_mails_everyone_exactly_once(server, tmp_path, point):
    rng = random.Random(SEED + point)
    server.clear()
    server.delay = rng.uniform(0.0, 0.03)
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url})
    process = start_send(server, settings.database)
    wait_for_requests(server, point + 1, process)       # a different batch each time
    time.sleep(rng.uniform(0.0, 0.04))                   # and a different moment within it
    process.send_signal(signal.SIGKILL)
    process.wait()
    accepted_before = {d.email for d in ledger.deliveries(open_ledger(settings.database), 30, "real",
                                                          ["accepted"])}
    server.delay = 0.0
    time.sleep(server.delay + 0.05)                      # let the server finish the request it holds

    connection = open_ledger(settings.database)
    report = resume(settings, connection)
    assert report.outcome == "completed"
    unknown = set(report.unknown)
    assert set(report.recovered) == unknown              # only rows left in flight become unknown
    assert len(unknown) in (0, BATCH)
    received = Counter(server.delivered())
    everyone = {recipient.email for recipient in people(COUNT)}
    assert accepted_before <= set(received)             # what the ledger said was accepted, was sent
    for email in everyone - unknown:
        assert received[email] == 1, email
    for email in unknown:
        assert received[email] <= 1, email
    assert report.counts["accepted"] == COUNT - len(unknown)

    completed = resume(settings, connection, resend_unknown=True)
    assert completed.outcome == "completed" and completed.unknown == ()
    assert completed.counts["accepted"] == COUNT
    received = Counter(server.delivered())
    assert set(received) == everyone
    assert all(received[email] == 1 for email in everyone - unknown)
    connection.close()


def test_ctrl_c_finishes_the_batch_in_flight_says_how_to_resume_and_exits_non_zero(server, tmp_path):
    server.clear()
    server.delay = 0.05
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url})
    process = start_send(server, settings.database)
    wait_for_requests(server, 3, process)
    process.send_signal(signal.SIGINT)                  # while batch 3 is with the server
    stdout, stderr = process.communicate(timeout=20)
    server.delay = 0.0
    assert process.returncode == 130, stderr
    assert "interrupted" in stdout and "before batch 4 of 10" in stdout
    assert "campaign send --issue 30" in stdout
    connection = open_ledger(settings.database)
    counts = ledger.counts(connection, 30, "real")
    assert counts["in_flight"] == 0 and counts["unknown"] == 0
    assert counts["accepted"] == 3 * BATCH
    report = resume(settings, connection)
    assert report.counts["accepted"] == COUNT
    assert Counter(server.delivered()) == Counter(r.email for r in people(COUNT))


def test_sigkill_mid_batch_over_smtp_leaves_at_most_the_message_being_answered_unknown(tmp_path):
    """SMTP answers message by message, and the ledger records each answer at once."""
    count, batch = 300, 100
    with SmtpServer() as server:
        server.delay = 0.005
        environ = {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}
        settings = make_settings(tmp_path, environ)
        process = subprocess.Popen(
            [sys.executable, str(DRIVER), str(settings.database), str(count), str(batch), "--smtp"],
            env={**os.environ, **environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while len(server.messages) < 150 and process.poll() is None:   # half-way through batch 2
            assert time.monotonic() < deadline, "the send made no progress"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait()
        delivered = set(server.recipients())
        connection = open_ledger(settings.database)
        statuses = ledger.status_by_email(connection, 30, "real")
        accepted = {email for email, status in statuses.items() if status == "accepted"}
        assert accepted <= delivered
        assert len(delivered - accepted) <= 1, "answers were recorded message by message, not per batch"

        server.delay = 0.0
        report = send_issue(connection, small_issue(), people(count), SmtpProvider(settings), settings,
                            SendOptions(batch_size=batch), sleep=lambda seconds: None)
        connection.close()
        assert report.outcome == "completed" and len(report.unknown) <= 1
        received = Counter(server.recipients())
        for recipient in people(count):
            if recipient.email not in report.unknown:
                assert received[recipient.email] == 1, recipient.email
            assert received[recipient.email] <= 1, recipient.email
