"""`campaign suppress import-bounces`: a bounce mailbox of real-shaped reports, read with flufl.bounce.

The mbox holds what a mail program exports from the envelope sender's inbox: RFC 3464
delivery status notifications (multipart/report) that failed and that were only
delayed, a qmail report (QSBMF, a non-standard format flufl.bounce knows), a report to
a VERP address after a real SMTP send, and an out-of-office reply.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

from typer.testing import CliRunner

from campaign.cli import app
from campaign.config import load_settings
from campaign.ledger import open_ledger
from campaign.providers.smtp import SmtpProvider
from campaign.send import SendOptions, send_issue
from campaign.suppressions import add_suppression, suppressed_emails
from send_support import people, small_issue

SECRET = "test-secret"


def dsn(to: str, recipient: str, action: str, status: str, diagnostic: str, number: int) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464 multipart/report)."""
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Tue, 24 Nov 2026 10:0{number}:00 +0000
Message-ID: <bounce-{number}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B{number}"

--B{number}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--B{number}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Tue, 24 Nov 2026 09:59:00 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.net
Diagnostic-Code: smtp; {diagnostic}

--B{number}
Content-Type: text/rfc822-headers

From: WeGO Secretariat <newsletter@wego.example.org>
To: {recipient}
Subject: WeGO Newsletter 30

--B{number}--
""".replace("\n", "\r\n").encode("ascii")


QMAIL = b"""From: MAILER-DAEMON@mail.example.org
To: bounces@wego.example.org
Subject: failure notice
Date: Tue, 24 Nov 2026 11:00:00 +0000

Hi. This is the qmail-send program at mail.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<old.office@example.org>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

From: newsletter@wego.example.org
Subject: WeGO Newsletter 30
"""

OUT_OF_OFFICE = b"""From: Carla Diaz <carla@example.org>
To: bounces@wego.example.org
Subject: Automatic reply: WeGO Newsletter 30
Date: Tue, 24 Nov 2026 12:00:00 +0000

I am out of the office until December.
"""


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path)
    for message in messages:
        box.add(message)
    box.flush()
    box.close()
    return path


def verp_send(tmp_path: Path, server) -> str:
    """Send issue 30 to three people over SMTP with VERP; returns the MAIL FROM person00001's copy had."""
    config = tmp_path / "campaign.toml"
    config.write_text('recipients = "recipients.csv"\ndatabase = "campaign.db"\n'
                      '[lists.members]\ndescription = "Member cities"\n'
                      f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\n'
                      'envelope_from = "bounces@wego.example.org"\nverp = true\n', encoding="utf-8")
    settings = load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": SECRET})
    connection = open_ledger(settings.database)
    try:
        report = send_issue(connection, small_issue(), people(3), SmtpProvider(settings), settings, SendOptions())
    finally:
        connection.close()
    assert report.outcome == "completed"
    return next(stored.mail_from for stored in server.messages if stored.rcpt_tos == ["person00001@example.org"])


def test_hard_bounces_are_suppressed_with_the_diagnostic_and_soft_ones_left(tmp_path, smtp_server):
    verp_address = verp_send(tmp_path, smtp_server)
    assert verp_address.startswith("bounces+") and "person00001" not in verp_address
    connection = open_ledger(tmp_path / "campaign.db")
    add_suppression(connection, "twice@example.com", "bounced", note="earlier bounce")
    connection.close()
    mbox = write_mbox(tmp_path / "bounces.mbox", [
        dsn("bounces@wego.example.org", "gone@example.com", "failed", "5.1.1",
            "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown", 1),
        dsn("bounces@wego.example.org", "full@example.com", "delayed", "4.2.2",
            "452 4.2.2 Mailbox full", 2),
        QMAIL,
        # the report names where the mail was forwarded; the VERP address names who we sent it to
        dsn(verp_address, "p1.forwarded@elsewhere.example.net", "failed", "5.1.1", "550 5.1.1 no such user", 3),
        dsn("bounces@wego.example.org", "twice@example.com", "failed", "5.1.1", "550 5.1.1 unknown", 4),
        OUT_OF_OFFICE,
    ])
    result = CliRunner().invoke(app, ["suppress", "import-bounces", str(mbox),
                                      "--config", str(tmp_path / "campaign.toml")],
                                env={"CAMPAIGN_TOKEN_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert "suppressed 3 hard bounces, 1 already suppressed, 1 soft bounces left alone, 1 messages not bounces" \
        in result.output
    assert "Automatic reply" in result.output

    connection = open_ledger(tmp_path / "campaign.db")
    try:
        suppressed = suppressed_emails(connection)
        notes = dict(connection.execute("SELECT email, note FROM suppressions"))
    finally:
        connection.close()
    hard = {"gone@example.com", "old.office@example.org", "person00001@example.org"}
    assert {email for email in suppressed if suppressed[email][0] == "bounced"} == hard | {"twice@example.com"}
    assert "full@example.com" not in suppressed                       # soft: left alone
    assert "p1.forwarded@elsewhere.example.net" not in suppressed     # VERP named our recipient instead
    assert "5.1.1" in notes["gone@example.com"] and "User unknown" in notes["gone@example.com"]
    assert "no mailbox here by that name" in notes["old.office@example.org"]
    assert "no such user" in notes["person00001@example.org"]
    assert notes["twice@example.com"] == "earlier bounce"             # the first suppression stands


def test_a_file_that_is_not_an_mbox_is_one_line(tmp_path):
    (tmp_path / "campaign.toml").write_text('[lists.members]\ndescription = "Members"\n', encoding="utf-8")
    not_mbox = tmp_path / "bounces.csv"
    not_mbox.write_text("email,reason\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["suppress", "import-bounces", str(not_mbox),
                                      "--config", str(tmp_path / "campaign.toml")],
                                env={"CAMPAIGN_TOKEN_SECRET": SECRET})
    assert result.exit_code != 0 and "not an mbox file" in result.output and "Traceback" not in result.output
