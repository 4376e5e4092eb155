"""`campaign suppress import-mbox`: unsubscribes mailed to the List-Unsubscribe mailto, read from an mbox."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.freeze import freeze_audience
from campaign import ledger
from campaign.cli import app
from campaign.ledger import open_ledger
from campaign.personalize import recipient_token
from campaign.suppressions import add_suppression, list_suppressions

SECRET = "inbox-test-secret"
MAILED = ("ana@example.org", "bo@example.org", "carla@example.org")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A ledger that has recorded a delivery of issue 30 to MAILED (tokens kept when the audience is frozen)."""
    (tmp_path / "campaign.toml").write_text(
        'database = "campaign.db"\n[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_TOKEN_SECRET", SECRET)
    connection = open_ledger(tmp_path / "campaign.db")
    run = ledger.start_run(connection, 30, "outbox", "outbox")
    freeze_audience(connection, 30, "outbox", ((email, "", ("members",)) for email in MAILED), run,
                           token_of=lambda email: recipient_token(email, SECRET))
    connection.close()
    return tmp_path


def write_mbox(path: Path, *messages: tuple[str, str, str]) -> Path:
    box = mailbox.mbox(path)
    for sender, subject, date in messages:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, "unsubscribe@wego.example.org", subject
        if date:
            message["Date"] = date
        message.set_content("Please take me off the list.\n")
        box.add(message)
    box.close()
    return path


def campaign(project: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--config", str(project / "campaign.toml")])


def suppressions(project: Path):
    connection = open_ledger(project / "campaign.db")
    try:
        return {s.email: s for s in list_suppressions(connection)}
    finally:
        connection.close()


def test_import_mbox_records_a_token_subject_and_a_plain_from_and_reports_an_unknown_sender(project):
    token = recipient_token("ana@example.org", SECRET)
    mbox = write_mbox(project / "inbox.mbox",
                      ("Forwarding Desk <desk@another.example.com>", f"Re: unsubscribe {token}",
                       "Tue, 24 Nov 2026 09:30:00 +0900"),
                      ("Bo Lee <Bo@Example.org>", "please remove me", ""),
                      ("Eve <eve@example.net>", "unsubscribe", ""))
    result = campaign(project, "suppress", "import-mbox", str(mbox))
    assert result.exit_code == 1, result.output
    assert "recorded 2 unsubscribes, 0 already suppressed, 1 messages not matched" in result.stdout
    assert "message 3: from eve@example.net" in result.stderr
    recorded = suppressions(project)
    assert set(recorded) == {"ana@example.org", "bo@example.org"}
    assert {s.source for s in recorded.values()} == {"mailto"}
    assert recorded["ana@example.org"].at == "2026-11-24T00:30:00Z"   # when they sent it


def test_import_mbox_again_changes_nothing_and_a_forged_token_is_not_a_match(project):
    mbox = write_mbox(project / "inbox.mbox", ("carla@example.org", "unsubscribe", ""))
    assert campaign(project, "suppress", "import-mbox", str(mbox)).exit_code == 0
    again = campaign(project, "suppress", "import-mbox", str(mbox))
    assert "recorded 0 unsubscribes, 1 already suppressed, 0 messages not matched" in again.stdout
    forged = write_mbox(project / "forged.mbox",
                        ("x@example.net", f"unsubscribe {recipient_token('bo@example.org', 'guess')}", ""))
    assert campaign(project, "suppress", "import-mbox", str(forged)).exit_code == 1
    assert set(suppressions(project)) == {"carla@example.org"}


def test_import_mbox_keeps_an_earlier_suppression(project):
    connection = open_ledger(project / "campaign.db")
    add_suppression(connection, "bo@example.org", "bounced", "2026-01-02")
    connection.close()
    mbox = write_mbox(project / "inbox.mbox", ("bo@example.org", "unsubscribe", ""))
    assert "1 already suppressed" in campaign(project, "suppress", "import-mbox", str(mbox)).stdout
    assert suppressions(project)["bo@example.org"].reason == "bounced"


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"), (b"Subject: hello\n\nnot an mbox\n", "not an mbox file"),
])
def test_a_missing_or_wrong_file_is_one_line_naming_it(project, content, expected):
    path = project / "inbox.mbox"
    if content is not None:
        path.write_bytes(content)
    result = campaign(project, "suppress", "import-mbox", str(path))
    assert result.exit_code != 0 and expected in result.stderr and "Traceback" not in result.output
    assert str(path) in result.stderr
