"""SIGTERM (systemd, cron, `kill`) stops `campaign send` like Ctrl-C, for every provider.

The real CLI runs as a subprocess against a local server in this process; the test
sends SIGTERM once some mail has arrived. What was in flight (one SMTP message, one
SendGrid batch) is finished and recorded, the send exits 143, nothing is left in
flight or unknown, and a resume mails everyone else exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from campaign import ledger
from campaign.ledger import open_ledger
from servers.sendgrid_server import SendGridServer
from servers.smtp_server import SmtpServer

REPO = Path(__file__).resolve().parents[1]
API_KEY = "SG.test-key-not-secret"
PEOPLE = [f"person{n:03d}@example.org" for n in range(60)]


def make_project(root: Path, provider: str) -> Path:
    (root / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        f'recipients = "recipients.csv"\ndatabase = "campaign.db"\nprovider = "{provider}"\n'
        '[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    rows = "".join(f"{email},Person {n},City {n},Seoul,Korea,members\n" for n, email in enumerate(PEOPLE))
    (root / "recipients.csv").write_text("email,name,organisation,city,country,lists\n" + rows, encoding="utf-8")
    return root / "campaign.toml"


def start(config: Path, environ: dict[str, str], *extra: str) -> subprocess.Popen:
    environ = {**os.environ, "PATH": str(Path(sys.executable).parent),   # no SpamAssassin
               "CAMPAIGN_TOKEN_SECRET": "secret", **environ}
    return subprocess.Popen([sys.executable, "-m", "campaign", "send", "--issue", "30", "--yes", "--force",
                             *extra, "--config", str(config)],
                            cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(arrived, process: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not arrived() and process.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()


def statuses(database: Path) -> Counter:
    connection = open_ledger(database)
    try:
        return Counter(ledger.status_by_email(connection, 30, "real").values())
    finally:
        connection.close()


def test_sigterm_over_smtp_finishes_the_message_in_flight_and_exits_143(tmp_path):
    config = make_project(tmp_path, "smtp")
    with SmtpServer() as server:
        server.delay = 0.05
        environ = {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}
        process = start(config, environ)
        wait_until(lambda: len(server.messages) >= 5, process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 143, stdout + stderr
        assert "interrupted" in stdout and "during batch 1 of 1" in stdout + stderr
        counts = statuses(tmp_path / "campaign.db")
        assert counts["in_flight"] == counts["unknown"] == 0
        assert counts["accepted"] == len(server.messages) < len(PEOPLE)   # stopped, each answer recorded
        assert counts["pending"] == len(PEOPLE) - counts["accepted"]
        server.delay = 0.0
        resumed = start(config, environ)
        stdout, stderr = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, stdout + stderr
        assert server.received() == Counter(PEOPLE)


def test_sigterm_over_sendgrid_finishes_the_batch_in_flight_and_exits_143(tmp_path):
    config = make_project(tmp_path, "sendgrid")
    with SendGridServer(validate=False, delay=0.1) as server:
        environ = {"SENDGRID_API_URL": server.url, "SENDGRID_API_KEY": API_KEY}
        process = start(config, environ, "--batch-size", "5")
        wait_until(lambda: len(server.mail_sends()) >= 2, process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 143, stdout + stderr
        assert "interrupted" in stdout
        counts = statuses(tmp_path / "campaign.db")
        assert counts["in_flight"] == counts["unknown"] == 0
        assert counts["accepted"] == len(server.delivered()) and counts["accepted"] % 5 == 0
        assert 0 < counts["accepted"] < len(PEOPLE)
        server.delay = 0.0
        resumed = start(config, environ, "--batch-size", "5")
        stdout, stderr = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, stdout + stderr
        assert Counter(server.delivered()) == Counter(PEOPLE)
