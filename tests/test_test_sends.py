"""Test sends against the real `sendgrid` client and a local SendGrid server, faults injected.

A test send goes through the same retry loop as a real send (campaign/send/retry.py):
the same attempts, the same bounded total wait, the same stop request, and whatever
the provider raises comes back as an outcome per address, never as a traceback.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.providers.smtp import SmtpProvider
from campaign.send import RetryPolicy, SendOptions, StopSignal, send_issue, send_test
from send_support import API_KEY, make_settings, people, small_issue
from servers.sendgrid_server import Fault

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, rate_limit_jitter=0.01)
EDITORS = ["editor@example.com", "boss@example.com"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path, sendgrid_server):
    return make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url})


class Sleeps(list):
    """An injected sleep: remembers each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def send_copies(settings, *, policy=FAST, sleep=None, stop=None, addresses=EDITORS):
    return send_test(small_issue(), addresses, SendGridProvider(settings), settings, policy=policy,
                     sleep=sleep if sleep is not None else Sleeps(), stop=stop, rng=random.Random(1))


def test_a_test_send_rides_out_429_and_503_and_each_address_gets_one_copy(sendgrid_server, settings):
    sendgrid_server.script(Fault.rate_limited(retry_after=2), Fault.server_error(503), Fault.server_error(503))
    sleeps = Sleeps()
    report = send_copies(settings, sleep=sleeps)
    assert [outcome.status for outcome in report.outcomes] == ["accepted", "accepted"]
    assert sorted(sendgrid_server.delivered()) == sorted(EDITORS)
    assert len(sendgrid_server.mail_sends()) == 4
    assert len(sleeps) == 3 and 2 <= sleeps[0] <= 2.01           # Retry-After honoured, plus jitter
    assert all(0 <= wait <= 0.05 for wait in sleeps[1:])
    assert sendgrid_server.mail_sends()[-1].body["subject"].startswith("[TEST] ")


def test_a_500_after_sendgrid_accepted_a_test_send_is_unknown_and_never_resent(sendgrid_server, settings):
    sendgrid_server.script(Fault.accepted_then(500))
    report = send_copies(settings)
    assert [outcome.status for outcome in report.outcomes] == ["unknown", "unknown"]
    assert sorted(sendgrid_server.delivered()) == sorted(EDITORS) and len(sendgrid_server.mail_sends()) == 1


def test_a_test_send_gives_up_within_the_total_wait_and_says_so(sendgrid_server, settings):
    sendgrid_server.script(Fault.rate_limited(retry_after=100))
    report = send_copies(settings, policy=RetryPolicy(max_total_wait=30))
    assert [outcome.status for outcome in report.outcomes] == ["failed", "failed"]
    assert "gave up after 1 attempts" in report.outcomes[0].error
    assert len(sendgrid_server.mail_sends()) == 1 and sendgrid_server.delivered() == []


def test_a_stop_request_during_a_test_send_ends_it_without_another_attempt(sendgrid_server, settings):
    sendgrid_server.script(*[Fault.server_error(503)] * 3)
    stop = StopSignal()

    def stop_while_waiting(seconds: float) -> None:
        stop.request()   # Ctrl-C during the backoff wait

    report = send_copies(settings, sleep=stop_while_waiting, stop=stop)
    assert [outcome.status for outcome in report.outcomes] == ["failed", "failed"]
    assert "interrupted before retrying" in report.outcomes[0].error
    assert len(sendgrid_server.mail_sends()) == 1 and sendgrid_server.delivered() == []


def test_a_test_send_asked_to_stop_before_it_starts_sends_nothing(sendgrid_server, settings):
    stop = StopSignal()
    stop.request()
    report = send_copies(settings, stop=stop)
    assert {outcome.status for outcome in report.outcomes} == {"failed"}
    assert all("stopped" in outcome.error for outcome in report.outcomes)
    assert sendgrid_server.mail_sends() == []


def test_refused_credentials_in_a_test_send_become_outcomes_not_a_traceback(sendgrid_server, settings):
    sendgrid_server.script(Fault.unauthorized(401))
    report = send_copies(settings)
    assert [outcome.status for outcome in report.outcomes] == ["failed", "failed"]
    assert "401" in report.outcomes[0].error and "SENDGRID_API_KEY" in report.outcomes[0].error


def test_a_test_send_and_a_real_send_share_the_retry_limits(sendgrid_server, settings, tmp_path):
    """The same policy gives up after the same attempts with the same waits, test send or real send."""
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
    sendgrid_server.script(*[Fault.server_error(503)] * 3)
    test_sleeps = Sleeps()
    report = send_copies(settings, policy=policy, sleep=test_sleeps, addresses=["editor@example.com"])
    test_attempts = len(sendgrid_server.mail_sends())
    sendgrid_server.clear()
    sendgrid_server.script(*[Fault.server_error(503)] * 3)
    real_sleeps = Sleeps()
    connection = open_ledger(tmp_path / "campaign.db")
    try:
        real = send_issue(connection, small_issue(), people(1), SendGridProvider(settings), settings,
                          SendOptions(), policy=policy, sleep=real_sleeps, rng=random.Random(1))
    finally:
        connection.close()
    assert test_attempts == len(sendgrid_server.mail_sends()) == 3
    assert test_sleeps == real_sleeps and len(real_sleeps) == 2
    assert report.outcomes[0].status == "failed" and real.counts["failed"] == 1
    assert "gave up after 3 attempts" in report.outcomes[0].error


def test_ctrl_c_during_a_test_send_stops_it_at_once_with_each_address_reported(tmp_path, sendgrid_server):
    """The real command line in a subprocess: a 429 asks for a 60 s wait, Ctrl-C cuts it short."""
    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\n[lists.members]\ndescription = "Members"\n',
        encoding="utf-8")
    (tmp_path / "recipients.csv").write_text("email,name,lists\nana@example.org,Ana,members\n", encoding="utf-8")
    sendgrid_server.script(Fault.rate_limited(retry_after=60))
    environ = {**os.environ, "PATH": str(Path(sys.executable).parent),   # no SpamAssassin: not what is tested
               "SENDGRID_API_URL": sendgrid_server.url, "SENDGRID_API_KEY": API_KEY,
               "CAMPAIGN_TOKEN_SECRET": "secret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "campaign", "send", "--issue", "30", "--provider", "sendgrid",
         "--test-to", "editor@example.com", "--config", str(tmp_path / "campaign.toml")],
        cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sendgrid_server.mail_sends() and process.poll() is None:
            assert time.monotonic() < deadline, "the test send never reached the server"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 130, stderr   # issues 11/15: an interrupted send exits 130, a test send too (was 1)
    assert "editor@example.com: failed" in stdout and "429" in stdout and "Traceback" not in stderr
    assert len(sendgrid_server.mail_sends()) == 1 and sendgrid_server.delivered() == []


def test_an_smtp_test_send_waits_out_a_4xx_with_the_sends_own_wait(tmp_path, smtp_server):
    """The 452's backoff goes through the test send's wait, which a stop request cuts short, not a bare sleep."""
    smtp_server.refuse("editor@example.com", 452, "4.5.3 slow down", times=1)
    settings = make_settings(tmp_path, {"SMTP_HOST": smtp_server.host, "SMTP_PORT": str(smtp_server.port),
                                        "SMTP_SECURITY": "none"})
    sleeps = Sleeps()
    report = send_test(small_issue(), EDITORS, SmtpProvider(settings, sleep=lambda seconds: pytest.fail("slept")),
                       settings, policy=FAST, sleep=sleeps, rng=random.Random(1))
    assert [outcome.status for outcome in report.outcomes] == ["accepted", "accepted"]
    assert len(sleeps) == 1 and sorted(smtp_server.recipients()) == sorted(EDITORS)
