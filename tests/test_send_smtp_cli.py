"""`campaign send --provider smtp` against a real aiosmtpd server set up for each production fault.

Each test checks the exit code, the one-line message, the ledger's statuses and how
many messages arrived per address (never two). Issue 30 from this repository is sent
with --force (its placeholder links fail the preflight gate on purpose; see
test_send_cli.py) to six recipients; SpamAssassin is kept off PATH.
"""

from __future__ import annotations

import ssl
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign import ledger
from campaign.cli import app
from campaign.ledger import open_ledger
from campaign.suppressions import suppressed_emails
from servers.smtp_server import SmtpServer

trustme = pytest.importorskip("trustme", reason="trustme (a test CA) is a test dependency: pip install -e '.[test]'")
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

REPO = Path(__file__).resolve().parents[1]
PEOPLE = [f"person{n}@example.org" for n in range(6)]
EXIT_LEFT, EXIT_STOPPED = 4, 5


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\nprovider = "smtp"\n'
        '[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    rows = "".join(f"{email},Person {n},City {n},Seoul,Korea,members\n" for n, email in enumerate(PEOPLE))
    (tmp_path / "recipients.csv").write_text("email,name,organisation,city,country,lists\n" + rows, encoding="utf-8")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # no SpamAssassin
    monkeypatch.setenv("CAMPAIGN_TOKEN_SECRET", "secret")
    return tmp_path


def use(monkeypatch, server: SmtpServer, security: str = "none", **environ: str) -> None:
    for name, value in {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": security,
                        **environ}.items():
        monkeypatch.setenv(name, value)


def send(project: Path, *args: str):
    return CliRunner().invoke(app, ["send", "--issue", "30", "--yes", "--force", *args,
                                    "--config", str(project / "campaign.toml")])


def statuses(project: Path) -> dict[str, str]:
    connection = open_ledger(project / "campaign.db")
    try:
        return ledger.status_by_email(connection, 30, "real")
    finally:
        connection.close()


def last_run(project: Path):
    connection = open_ledger(project / "campaign.db")
    try:
        return ledger.runs(connection, 30, "real")[-1]
    finally:
        connection.close()


def assert_stopped(project: Path, result, server: SmtpServer, *expected: str) -> None:
    """Exit 5, one line naming host:port, the setting and the reply; everyone pending; nothing arrived."""
    assert result.exit_code == EXIT_STOPPED, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if f"127.0.0.1:{server.port}" in line]
    assert len(lines) == 1, result.output
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert set(statuses(project).values()) == {"pending"}
    assert last_run(project).outcome == "stopped"
    assert server.messages == []


def authority_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_starttls_not_offered_stops_the_send_with_one_line(project, monkeypatch, smtp_server):
    use(monkeypatch, smtp_server, security="starttls")
    result = send(project)
    assert_stopped(project, result, smtp_server, "does not offer STARTTLS", "SMTP_SECURITY", "EHLO reply lists")


def test_an_untrusted_certificate_stops_the_send_with_one_line(project, monkeypatch):
    with SmtpServer(tls="starttls", certificate=authority_context(trustme.CA())) as server:
        use(monkeypatch, server, security="starttls")
        result = send(project)
        assert_stopped(project, result, server, "certificate does not verify", "SMTP_HOST")


def test_a_refused_login_stops_the_send_and_never_shows_the_password(project, monkeypatch):
    with SmtpServer(login=("newsletter", "right")) as server:
        use(monkeypatch, server, SMTP_USERNAME="newsletter", SMTP_PASSWORD="wrong-SECRET")
        result = send(project)
        assert_stopped(project, result, server, "refused the login", "535", "SMTP_PASSWORD")
        assert "wrong-SECRET" not in result.output


@pytest.mark.parametrize("code, text", [(421, "4.3.2 service shutting down"),          # reconnect, resend
                                        (452, "4.5.3 too many messages, slow down")])  # back off, resend
def test_a_421_or_452_mid_send_is_retried_and_everyone_is_mailed_once(project, monkeypatch, smtp_server,
                                                                       code, text):
    use(monkeypatch, smtp_server)
    smtp_server.refuse(PEOPLE[3], code, text, times=1)
    result = send(project)
    assert result.exit_code == 0, result.output
    assert smtp_server.received() == Counter(PEOPLE)
    assert set(statuses(project).values()) == {"accepted"}
    assert len(smtp_server.peers) == (2 if code == 421 else 1)


def test_no_such_mailbox_is_rejected_suppressed_and_not_a_failure_of_the_run(project, monkeypatch, smtp_server):
    use(monkeypatch, smtp_server)
    smtp_server.refuse(PEOPLE[2], 550, "5.1.1 <person2@example.org>: user unknown")
    smtp_server.refuse(PEOPLE[4], 550, "5.7.1 relaying denied")
    result = send(project)
    assert result.exit_code == 0, result.output
    assert "550 5.1.1" in result.output and "550 5.7.1" in result.output   # the reasons, in the send's output
    assert smtp_server.received() == Counter(PEOPLE[:2] + [PEOPLE[3], PEOPLE[5]])
    assert statuses(project)[PEOPLE[2]] == statuses(project)[PEOPLE[4]] == "rejected"
    connection = open_ledger(project / "campaign.db")
    try:
        suppressed = suppressed_emails(connection)
    finally:
        connection.close()
    assert suppressed[PEOPLE[2]][0] == "bounced" and PEOPLE[4] not in suppressed


def test_an_unknown_delivery_exits_non_zero_and_so_does_a_resume_with_nothing_to_send(project, monkeypatch,
                                                                                      smtp_server):
    use(monkeypatch, smtp_server)
    smtp_server.drop_next("DATA")   # the first message is stored, the answer never comes
    result = send(project)
    assert result.exit_code == EXIT_LEFT, result.output
    assert "1 unknown" in result.output and "may or may not" in result.output
    again = send(project)
    assert again.exit_code == EXIT_LEFT, again.output
    assert "Nothing to send" in again.output and "1 unknown" in again.output
    assert smtp_server.received() == Counter(PEOPLE)


def test_a_password_for_a_remote_host_in_the_clear_is_refused_before_anything(project, monkeypatch, smtp_server):
    use(monkeypatch, smtp_server, SMTP_HOST="smtp.example.org", SMTP_USERNAME="newsletter", SMTP_PASSWORD="pw")
    result = send(project)
    assert result.exit_code == EXIT_STOPPED, result.output
    assert "in the clear to smtp.example.org" in result.output and "Traceback" not in result.output
    assert smtp_server.messages == []
