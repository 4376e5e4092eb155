"""`campaign send` and `campaign status` end to end: real render, real local SendGrid and SMTP servers.

The project is issue 30 from this repository with a small recipients file. Issue 30
has placeholder links on purpose, so the preflight gate refuses it: real sends here
pass --force (and check that the ledger records it). SpamAssassin is kept off PATH:
scoring costs seconds per call and is tested with the checks, not here.
"""

from __future__ import annotations

import csv
import importlib
import email
import email.policy
import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign import ledger
from campaign.audience import Audience
from campaign.cli import app
from campaign.config import load_settings
from campaign.dry_run import dry_run
from campaign.errors import ChecksFailed, ContentError
from campaign.ledger import open_ledger
from campaign.merge import MergeTemplate
from campaign.providers.sendgrid import SendGridProvider
from campaign.providers.smtp import SmtpProvider
from campaign.send import SendOptions, StopSignal, send_issue
from campaign.send.workflow import Preflight, SendHooks, SendRequest, run_send
from campaign.suppressions import add_suppression
from send_support import API_KEY, make_settings, people, small_issue

REPO = Path(__file__).resolve().parents[1]
RECIPIENTS = """email,name,organisation,city,country,lists
ana@example.org,Ana & <b>Bob</b>,City of Lima,Lima,Peru,members;embassies
bo@example.org,Bo Lee,City of Seoul,Seoul,Korea,members
=cmd@example.org,=HYPERLINK("x"),Evil,Nowhere,None,members
carla@example.org,Carla Diaz,Embassy of Chile,Seoul,Chile,embassies
dan@example.org,Dan Suppressed,City of Oslo,Oslo,Norway,members
bo@example.org,Bo Lee,City of Seoul,Seoul,Korea,embassies
"""
AUDIENCE = {"ana@example.org", "bo@example.org", "=cmd@example.org", "carla@example.org"}


@pytest.fixture
def project(tmp_path, sendgrid_server, smtp_server, monkeypatch):
    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\nprovider = "sendgrid"\n'
        '[lists.members]\ndescription = "Member cities"\n[lists.embassies]\ndescription = "Embassies"\n',
        encoding="utf-8")
    (tmp_path / "recipients.csv").write_text(RECIPIENTS, encoding="utf-8")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # no SpamAssassin (see module doc)
    for name, value in {"SENDGRID_API_URL": sendgrid_server.url, "SENDGRID_API_KEY": API_KEY,
                        "CAMPAIGN_TOKEN_SECRET": "secret", "SMTP_HOST": smtp_server.host,
                        "SMTP_PORT": str(smtp_server.port), "SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(name, value)
    connection = open_ledger(tmp_path / "campaign.db")
    add_suppression(connection, "dan@example.org", "unsubscribed")
    connection.close()
    return tmp_path


def campaign(project: Path, *args: str):
    result = CliRunner().invoke(app, [*args, "--config", str(project / "campaign.toml")])
    return result


def deliveries(project: Path, kind: str = "real") -> dict[str, str]:
    connection = open_ledger(project / "campaign.db")
    try:
        return ledger.status_by_email(connection, 30, kind)
    finally:
        connection.close()


def test_dry_run_contacts_no_provider_changes_no_record_and_writes_a_manifest(project, sendgrid_server):
    before = (project / "campaign.db").read_bytes()
    result = campaign(project, "send", "--issue", "30", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would send: 4" in result.output and "excluded: 2" in result.output
    assert sendgrid_server.mail_sends() == []
    assert deliveries(project) == {} and (project / "campaign.db").read_bytes() == before
    directory = project / "output" / "issue-30" / "dry-run"
    assert sorted(path.name for path in directory.iterdir()) == [
        "manifest.csv", "sample-1.eml", "sample-2.eml", "sample-3.eml"]
    with (directory / "manifest.csv").open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    actions = Counter((row["email"], row["action"]) for row in rows)
    assert actions[("ana@example.org", "send")] == 1                  # on both lists: one row, one copy
    assert actions[("bo@example.org", "send")] == 1 and actions[("bo@example.org", "excluded")] == 1
    suppressed = next(row for row in rows if row["email"] == "dan@example.org")
    assert suppressed["action"] == "excluded" and "unsubscribed" in suppressed["reason"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    assert actions[("'=cmd@example.org", "send")] == 1
    sample = email.message_from_bytes((directory / "sample-1.eml").read_bytes(), policy=email.policy.default)
    assert sample["To"].addresses[0].addr_spec == "ana@example.org"
    assert sample["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Ana &amp; &lt;b&gt;Bob&lt;/b&gt;" in sample.get_body(("html",)).get_content()


def test_send_without_a_terminal_refuses_unless_yes(project, sendgrid_server):
    result = campaign(project, "send", "--issue", "30", "--force")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert sendgrid_server.mail_sends() == []


def test_sendgrid_send_mails_each_person_once_and_status_explains(project, sendgrid_server):
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert "recipients: 4 after deduplication and suppressions" in result.output
    assert "4 accepted" in result.output and "campaign status --issue 30" in result.output
    assert Counter(sendgrid_server.delivered()) == Counter(AUDIENCE)
    again = campaign(project, "send", "--issue", "30", "--yes", "--force", "--resend-unknown")
    assert again.exit_code == 0 and "Nothing to send" in again.output
    assert len(sendgrid_server.delivered()) == 4
    finished = campaign(project, "send", "--issue", "30", "--yes")   # no --force: nothing left to check
    assert finished.exit_code == 0 and "Nothing to send" in finished.output
    assert "placeholder" not in finished.output

    status = campaign(project, "status", "--issue", "30", "--csv", str(project / "status.csv"))
    assert status.exit_code == 0, status.output
    assert "by status:   accepted 4" in status.output
    assert "members: accepted 3" in status.output and "embassies: accepted 3" in status.output
    assert "sendgrid: accepted 4" in status.output
    assert "--force" in status.output and "sent with --force over preflight findings" in status.output
    with (project / "status.csv").open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["email"].removeprefix("'") for row in rows} == AUDIENCE
    assert "'=cmd@example.org" in {row["email"] for row in rows}             # spreadsheet-safe
    assert all(row["status"] == "accepted" and row["message_id"] for row in rows)


def test_without_force_the_preflight_gate_stops_the_send(project, sendgrid_server):
    result = campaign(project, "send", "--issue", "30", "--yes")
    assert result.exit_code != 0
    assert "placeholder" in result.output and "--force" in result.output
    assert sendgrid_server.mail_sends() == []


def test_the_gate_refuses_before_the_summary_and_leaves_no_run_in_the_ledger(project, sendgrid_server):
    result = campaign(project, "send", "--issue", "30", "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "to send now" not in result.output, "refused before the summary and the confirmation"
    connection = open_ledger(project / "campaign.db")
    try:
        assert connection.execute("SELECT COUNT(*) FROM send_runs").fetchone()[0] == 0
    finally:
        connection.close()


def test_dry_runs_and_test_sends_show_the_check_errors_and_go_on(project, sendgrid_server):
    for args in (["--dry-run"], ["--test-to", "editor@example.org"]):
        result = campaign(project, "send", "--issue", "30", *args)
        assert result.exit_code == 0, result.output
        assert "[link-placeholder]" in result.output and "going on" in result.output


def test_unauthorized_stops_with_nothing_accepted_and_status_shows_why(project, sendgrid_server, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == 5   # issue 15: a configuration fault has its own exit code (it was 1)
    assert "401" in result.output and "SENDGRID_API_KEY" in result.output
    assert "accepted" not in set(deliveries(project).values())
    status = campaign(project, "status", "--issue", "30")
    assert "stopped" in status.output and "401" in status.output


def test_test_send_reaches_only_the_test_addresses_and_changes_no_record(project, sendgrid_server):
    result = campaign(project, "send", "--issue", "30", "--test-to", "editor@example.com",
                      "--test-to", "boss@example.com", "--as", "ana@example.org")
    assert result.exit_code == 0, result.output
    assert sorted(sendgrid_server.delivered()) == ["boss@example.com", "editor@example.com"]
    body = sendgrid_server.mail_sends()[0].body
    assert body["subject"].startswith("[TEST] ")
    substitutions = body["personalizations"][0]["substitutions"]
    assert "Ana &amp; &lt;b&gt;Bob&lt;/b&gt;" in substitutions.values()
    assert deliveries(project) == {}
    follow_up = campaign(project, "send", "--issue", "30", "--test-to", "dan@example.org")
    assert "not sent, suppressed" in follow_up.output
    assert len(sendgrid_server.delivered()) == 2


def test_a_test_send_with_refused_credentials_says_so_per_address_without_a_traceback(project, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    result = campaign(project, "send", "--issue", "30", "--test-to", "editor@example.org")
    # issue 15: refused credentials are a configuration fault, exit 5 for every kind of send (it was 1)
    assert result.exit_code == 5 and "Traceback" not in result.output
    assert "editor@example.org: failed" in result.output and "401" in result.output


def test_the_send_workflow_decides_once_and_asks_before_anything_is_sent(project, sendgrid_server):
    settings = load_settings(project / "campaign.toml")
    request = SendRequest(30, "sendgrid", options=SendOptions(force=True))
    shown: list = []
    hooks = SendHooks(on_findings=shown.append, on_plan=lambda plan, subject, audience: shown.append(plan),
                      confirm=lambda plan: False)
    declined = run_send(settings, request, hooks)
    decision, plan = shown
    assert declined.report is None and plan.to_send == len(AUDIENCE) and plan.kind == "real"
    assert decision.forced and not decision.refused and decision.errors
    assert sendgrid_server.mail_sends() == [] and deliveries(project) == {}
    sent = run_send(settings, request, replace(hooks, confirm=lambda plan: True))
    assert sent.report is not None and sent.report.outcome == "completed"
    assert sorted(sendgrid_server.delivered()) == sorted(AUDIENCE)
    connection = open_ledger(project / "campaign.db")
    try:
        run, = ledger.runs(connection, 30)
    finally:
        connection.close()
    assert run.forced and run.findings == decision.forced_over


def _write_lock_is_held(database: Path) -> bool:
    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:   # "database is locked"
        return True
    finally:
        other.close()


@pytest.fixture
def slow_checks(monkeypatch):
    """The real checks, deciding half a second late, as SpamAssassin does (it is not on PATH here)."""
    gate = importlib.import_module("campaign.checks.gate")
    checking = gate.gate_decision

    def late(*args, **kwargs):
        time.sleep(0.5)
        return checking(*args, **kwargs)
    monkeypatch.setattr(gate, "gate_decision", late)


def test_with_the_send_confirmed_ahead_the_audience_is_frozen_while_the_checks_finish(project, sendgrid_server,
                                                                                      slow_checks):
    settings = load_settings(project / "campaign.toml")
    seen: list = []
    hooks = SendHooks(confirmed_ahead=True, confirm=lambda plan: seen.append("confirm") or True,
                      on_findings=lambda decision: seen.append(("findings", _write_lock_is_held(project / "campaign.db"))),
                      on_plan=lambda plan, subject, audience: seen.append("plan"),
                      progress=lambda total: nullcontext(lambda progress: seen.append("progress")))
    sent = run_send(settings, SendRequest(30, "sendgrid", options=SendOptions(force=True)), hooks)
    assert sent.report is not None and sent.report.outcome == "completed"
    # the run and its rows were written, uncommitted, before the findings were shown; the bar came after
    assert seen[:3] == [("findings", True), "plan", "confirm"] and set(seen[3:]) == {"progress"}
    assert sorted(sendgrid_server.delivered()) == sorted(AUDIENCE)
    connection = open_ledger(project / "campaign.db")
    try:
        run, = ledger.runs(connection, 30)
        assert run.forced and "placeholder" in run.findings
    finally:
        connection.close()


def test_checks_that_refuse_a_send_confirmed_ahead_leave_the_ledger_as_it_was(project, sendgrid_server, slow_checks):
    settings = load_settings(project / "campaign.toml")
    held: list[bool] = []
    hooks = SendHooks(confirmed_ahead=True, on_findings=lambda d: held.append(_write_lock_is_held(project / "campaign.db")))
    with pytest.raises(ChecksFailed):
        run_send(settings, SendRequest(30, "sendgrid"), hooks)
    assert held == [True] and not _write_lock_is_held(project / "campaign.db")
    connection = open_ledger(project / "campaign.db")
    try:
        assert [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("send_runs", "deliveries", "link_tokens")] == [0, 0, 0]
    finally:
        connection.close()
    assert sendgrid_server.mail_sends() == []


def test_checks_that_decided_before_the_audience_loaded_are_shown_before_anything_is_written(project,
                                                                                            sendgrid_server,
                                                                                            monkeypatch):
    # as with a large audience, whose loading outlasts SpamAssassin: the checks have decided by the plan
    monkeypatch.setattr(Preflight, "decided", lambda preflight: preflight._decision.result() is not None)
    settings = load_settings(project / "campaign.toml")
    held: list[bool] = []
    hooks = SendHooks(confirmed_ahead=True, on_findings=lambda d: held.append(_write_lock_is_held(project / "campaign.db")))
    with pytest.raises(ChecksFailed):
        run_send(settings, SendRequest(30, "sendgrid"), hooks)
    assert held == [False]   # shown at once: a refusal then costs no freezing


SLOW_SPAMASSASSIN = """#!/bin/sh
cat > /dev/null
touch "{started}"
sleep 30
echo 'Content analysis details:   (0.1 points, 5.0 required)'
"""


def test_a_send_killed_while_the_checks_finish_leaves_the_ledger_as_it_was_and_resumes_whole(project,
                                                                                            sendgrid_server):
    # `send --yes` freezes the audience while SpamAssassin runs, committing only when the checks pass:
    # a SIGKILL meanwhile (the checks never answered) must leave no run and no row behind
    tools = project / "tools"
    tools.mkdir()
    started = project / "spamassassin-started"
    (tools / "spamassassin").write_text(SLOW_SPAMASSASSIN.format(started=started), encoding="utf-8")
    (tools / "spamassassin").chmod(0o755)
    environ = {**os.environ, "PATH": f"{tools}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    command = [sys.executable, "-m", "campaign", "send", "--issue", "30", "--yes", "--force",
               "--config", str(project / "campaign.toml")]
    process = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and _write_lock_is_held(project / "campaign.db")):
            assert process.poll() is None and time.monotonic() < deadline, "the send never reached the checks' wait"
            time.sleep(0.02)
        time.sleep(0.2)   # the freeze, well under way or done, in the transaction held open
    finally:
        process.kill()
        process.wait()
    connection = open_ledger(project / "campaign.db")
    try:
        assert [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("send_runs", "deliveries", "link_tokens", "batches_in_flight")] == [0, 0, 0, 0]
    finally:
        connection.close()
    assert sendgrid_server.mail_sends() == []
    resumed = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert resumed.exit_code == 0, resumed.output
    assert Counter(sendgrid_server.delivered()) == Counter(AUDIENCE)

def test_outbox_rehearsal_never_makes_the_real_smtp_send_skip_anyone(project, smtp_server):
    rehearsal = campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes", "--force")
    assert rehearsal.exit_code == 0, rehearsal.output
    assert "rehearsal" in rehearsal.output
    assert (project / "output" / "issue-30" / "outbox.mbox").exists()
    assert deliveries(project, "outbox") == dict.fromkeys(AUDIENCE, "accepted")
    real = campaign(project, "send", "--issue", "30", "--provider", "smtp", "--yes", "--force")
    assert real.exit_code == 0, real.output
    assert Counter(smtp_server.recipients()) == Counter(AUDIENCE)
    assert deliveries(project) == dict.fromkeys(AUDIENCE, "accepted")


def test_an_outbox_rehearsal_can_start_over_but_a_real_send_cannot(project, smtp_server):
    mailbox_path = project / "output" / "issue-30" / "outbox.mbox"
    assert campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes").exit_code == 0
    again = campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes")
    assert "Nothing to send" in again.output
    restarted = campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert Counter(message["To"].split("<")[-1].rstrip(">") for message in mailbox.mbox(mailbox_path)) \
        == Counter(AUDIENCE), "the restarted rehearsal's mailbox holds one copy per person"
    real = campaign(project, "send", "--issue", "30", "--provider", "smtp", "--yes", "--force", "--restart")
    assert real.exit_code == 2 and "never restarts" in real.output
    assert smtp_server.recipients() == []


# --- library level: provider switch, dry-run scale, broken merge fields ---------------------------

def test_switching_from_sendgrid_to_smtp_half_way_mails_nobody_twice(tmp_path, sendgrid_server, smtp_server):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url, "SMTP_HOST": smtp_server.host,
                                        "SMTP_PORT": str(smtp_server.port), "SMTP_SECURITY": "none"})
    connection = open_ledger(settings.database)
    stop = StopSignal()
    first = send_issue(connection, small_issue(), people(30), SendGridProvider(settings), settings,
                       SendOptions(batch_size=10), stop=stop, on_progress=lambda p: p.done >= 10 and stop.request())
    assert first.outcome == "interrupted" and first.counts["accepted"] == 10
    smtp = SmtpProvider(settings)
    try:
        second = send_issue(connection, small_issue(), people(30), smtp, settings, SendOptions(batch_size=10))
    finally:
        smtp.close()
    assert second.attempted == 20 and second.counts["accepted"] == 30
    received = Counter(sendgrid_server.delivered()) + Counter(smtp_server.recipients())
    assert received == Counter(r.email for r in people(30))
    by_provider = ledger.counts_by(connection, 30, "real", "provider")
    assert by_provider == {"sendgrid": {"accepted": 10}, "smtp": {"accepted": 20}}


def test_dry_run_of_100000_recipients_writes_one_manifest_and_three_samples(tmp_path):
    settings = make_settings(tmp_path)
    audience = Audience(lists=("members",), recipients=tuple(people(100_000)), exclusions=())
    report = dry_run(settings, small_issue(), audience, {})
    assert report.would_send == 100_000
    assert len(list(report.directory.iterdir())) == 4
    with report.manifest.open(encoding="utf-8-sig") as stream:
        assert sum(1 for _ in stream) == 100_001
    assert not settings.database.exists()


def test_dry_run_fails_on_a_merge_field_a_recipient_has_no_value_for(tmp_path):
    settings = make_settings(tmp_path)
    issue = small_issue()
    issue = issue.__class__(**{**issue.__dict__, "html": MergeTemplate("<p>Hello [[city]]</p>")})
    audience = Audience(lists=("members",), recipients=tuple(people(3)), exclusions=())
    with pytest.raises(ContentError, match=r"\[\[city\]\].*person00000@example.org"):
        dry_run(settings, issue, audience, {})


def test_a_later_list_and_a_new_suppression_never_mail_anyone_twice(project, sendgrid_server):
    members = campaign(project, "send", "--issue", "30", "--list", "members", "--yes", "--force")
    assert members.exit_code == 0, members.output
    assert sorted(sendgrid_server.delivered()) == ["=cmd@example.org", "ana@example.org", "bo@example.org"]
    connection = open_ledger(project / "campaign.db")
    add_suppression(connection, "carla@example.org", "unsubscribed")
    connection.close()
    everyone = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert everyone.exit_code == 0, everyone.output
    assert "Nothing to send" in everyone.output
    assert Counter(sendgrid_server.delivered()) == Counter(AUDIENCE - {"carla@example.org"})


def test_make_providers_default_outbox_is_the_mailbox_campaign_send_writes(project):
    """Issue 10, bug 5: make_provider used build/outbox.mbox, the CLI build/issue-N/outbox.mbox."""
    from campaign.config import load_settings
    from campaign.providers import make_provider

    result = campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes")
    assert result.exit_code == 0, result.output
    provider = make_provider("outbox", load_settings(project / "campaign.toml"), issue=30)
    try:
        assert f"outbox: {provider.path}" in result.output.replace("\n", "")
        assert len(mailbox.mbox(provider.path)) == len(AUDIENCE)
    finally:
        provider.close()
