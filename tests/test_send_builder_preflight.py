"""A first send large enough for a builder process starts it before the audience loads, and the
builder renders and checks the issue meanwhile (campaign/send/builder.py, send/workflow.py, issue 18).

Real render, real spawned builder process, the real SendGrid client and the local stand-in,
real SQLite files. The threshold is lowered so that a small recipients file takes that path.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import campaign.checks.gate  # noqa: F401  (patched through sys.modules: see nothing_rendered_here)
import campaign.render
from campaign.config import load_settings
from campaign.errors import ChecksFailed, LayoutError
from campaign.ledger import open_ledger
from campaign.send import SendOptions
from campaign.send import builder as builders
from campaign.send.workflow import Preflight, SendHooks, SendRequest, run_send
from send_support import API_KEY
from test_send_builder import NEEDS_PROC, children_of, command_line

REPO = Path(__file__).resolve().parents[1]
AUDIENCE = [f"person{number:03}@example.org" for number in range(40)]
SLOW_SPAMASSASSIN = """#!/bin/sh
cat > /dev/null
sleep 5
echo 'Content analysis details:   (0.1 points, 5.0 required)'
"""


@pytest.fixture
def project(tmp_path, sendgrid_server, monkeypatch):
    """Issue 30 of this repository (its placeholder links are errors: a real send needs --force), 40 people."""
    shutil.copytree(REPO / "layouts", tmp_path / "layouts")
    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "layouts"\nrecipients = "recipients.csv"\n'
        'database = "campaign.db"\nprovider = "sendgrid"\n[lists.members]\ndescription = "Member cities"\n'
        '[sendgrid]\nconcurrency = 2\n', encoding="utf-8")
    (tmp_path / "recipients.csv").write_text(
        "email,name,lists\n" + "".join(f"{email},Person {n},members\n" for n, email in enumerate(AUDIENCE)),
        encoding="utf-8")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # no SpamAssassin unless a test adds one
    for name, value in {"SENDGRID_API_URL": sendgrid_server.url, "SENDGRID_API_KEY": API_KEY,
                        "CAMPAIGN_TOKEN_SECRET": "secret"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(builders, "SECOND_PROCESS_FROM", 10)
    return tmp_path


def nothing_rendered_here(monkeypatch) -> None:
    """The sending process fails if it renders or checks the issue itself (the spawned builder is unaffected)."""
    def refused(*args, **kwargs):
        raise AssertionError("the sending process rendered or checked the issue itself")

    monkeypatch.setattr(campaign.render, "render_issue", refused)
    monkeypatch.setattr(sys.modules["campaign.checks.gate"], "gate_decision", refused)   # `checks.gate`: a function


def send(project: Path, *, force: bool, **hooks):
    settings = load_settings(project / "campaign.toml")
    return run_send(settings, SendRequest(30, "sendgrid", options=SendOptions(force=force)),
                    SendHooks(confirmed_ahead=True, **hooks))


def ledger_rows(project: Path) -> list[int]:
    connection = open_ledger(project / "campaign.db")
    try:
        return [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("send_runs", "deliveries", "link_tokens", "batches_in_flight")]
    finally:
        connection.close()


def test_a_large_first_send_is_rendered_and_checked_by_its_builder_and_posts_that_render(
        project, sendgrid_server, monkeypatch):
    expected = campaign.render.render_issue(load_settings(project / "campaign.toml"), 30)
    nothing_rendered_here(monkeypatch)
    shown = []
    result = send(project, force=True, on_findings=shown.append)
    assert result.report is not None and result.report.outcome == "completed"
    assert Counter(sendgrid_server.delivered()) == Counter(AUDIENCE)
    [decision] = shown   # the builder's findings, shown once: issue 30's placeholder links, gone over with --force
    assert decision.forced and decision.errors and "placeholder" in decision.forced_over.lower()
    for request in sendgrid_server.mail_sends():
        assert request.body["content"][1]["value"] == expected.html.source
    connection = open_ledger(project / "campaign.db")
    try:
        assert tuple(connection.execute("SELECT forced, findings FROM send_runs").fetchone()) == (1, decision.forced_over)
    finally:
        connection.close()


def test_a_large_first_send_the_builders_checks_refuse_sends_nothing_and_records_nothing(
        project, sendgrid_server, monkeypatch):
    nothing_rendered_here(monkeypatch)
    shown = []
    with pytest.raises(ChecksFailed, match="placeholder"):
        send(project, force=False, on_findings=shown.append)
    assert len(shown) == 1 and shown[0].refused
    assert sendgrid_server.mail_sends() == [] and ledger_rows(project) == [0, 0, 0, 0]


def test_a_layout_error_in_the_builder_is_the_one_line_error_of_a_render_in_this_process(
        project, sendgrid_server):
    layout = project / "layouts" / "base.mjml.j2"
    layout.write_text(layout.read_text(encoding="utf-8") + "\n{% if %}\n", encoding="utf-8")
    with pytest.raises(LayoutError) as here:
        campaign.render.render_issue(load_settings(project / "campaign.toml"), 30)
    with pytest.raises(LayoutError) as there:
        send(project, force=True)
    assert str(there.value) == str(here.value) and "\n" not in str(there.value)
    assert sendgrid_server.mail_sends() == [] and ledger_rows(project) == [0, 0, 0, 0]


def builder_checking(project: Path, *, force: bool = True) -> builders.SecondProcess:
    settings = load_settings(project / "campaign.toml")
    builder = builders.second_process_ahead(settings, "sendgrid", builders.IssueToCheck(30, force, False), False)
    assert builder is not None
    return builder


@NEEDS_PROC
def test_when_the_builder_dies_before_it_answers_the_issue_is_rendered_and_checked_here(project):
    builder = builder_checking(project)
    try:
        child, = [pid for pid in children_of(os.getpid()) if b"spawn_main" in command_line(pid)]
        os.kill(child, signal.SIGKILL)                # the out-of-memory killer, say
        settings = load_settings(project / "campaign.toml")
        shown = []
        with ThreadPoolExecutor(1) as background:
            checked = Preflight(settings, 30, background, SendHooks(on_findings=shown.append), force=True,
                                rehearsal=False, builder=builder)
            assert checked.rendered.html.source == campaign.render.render_issue(settings, 30).html.source
            decision = checked.decision()
    finally:
        builder.close()
    assert shown == [decision] and decision.forced and decision.errors


def test_a_slow_spam_check_in_the_builder_never_holds_up_a_first_sends_link_token_digests(project, monkeypatch):
    tools = project / "tools"
    tools.mkdir()
    (tools / "spamassassin").write_text(SLOW_SPAMASSASSIN, encoding="utf-8")
    (tools / "spamassassin").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{Path(sys.executable).parent}:/usr/bin:/bin")   # the child's PATH
    builder = builder_checking(project)
    try:
        assert builder.rendering is not None and builder.rendering.result(timeout=30).number == 30
        started = time.monotonic()
        [(_, digests)] = builder.token_digests(AUDIENCE)
        assert digests is not None and len(digests.result(timeout=30)) == 32 * len(AUDIENCE)
        made_in = time.monotonic() - started
        decision = builder.decision()
        assert not decision.done(), f"SpamAssassin (5 s) had answered after {made_in:.1f} s"
        assert decision.result(timeout=30).findings
    finally:
        builder.close()


def test_the_builder_is_started_ahead_only_for_a_file_long_enough_and_a_provider_that_can_use_it(project):
    settings = load_settings(project / "campaign.toml")
    check = builders.IssueToCheck(30, True, False)
    assert [builders.second_process_ahead(settings, provider, check, False) for provider in ("outbox", "smtp")] \
        == [None, None]
    (project / "recipients.csv").write_text("email,name,lists\n" + "".join(
        f"{email},,members\n" for email in AUDIENCE[:9]), encoding="utf-8")   # 9 people: under 10
    assert builders.second_process_ahead(settings, "sendgrid", check, False) is None
    (project / "recipients.csv").write_text("email,name,lists\n" + "".join(
        f"{email},,members\n" for email in AUDIENCE[:10]), encoding="utf-8")
    builder = builders.second_process_ahead(settings, "sendgrid", check, False)
    assert builder is not None
    builder.close()
    (project / "campaign.toml").write_text((project / "campaign.toml").read_text(encoding="utf-8").replace(
        "concurrency = 2", "concurrency = 1"), encoding="utf-8")
    assert builders.second_process_ahead(load_settings(project / "campaign.toml"), "sendgrid", check, False) is None


def test_a_small_list_of_a_long_file_is_checked_by_the_builder_started_ahead_and_sent_from_here(
        project, sendgrid_server, monkeypatch):
    # 40 lines start the builder ahead (threshold 10 here); the list chosen holds 2 people, too few
    # for it: it renders and checks, then is closed, and the two batches are built in this process
    toml = project / "campaign.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + '[lists.embassies]\ndescription = "Embassies"\n',
                    encoding="utf-8")
    envoys = ["envoy1@example.org", "envoy2@example.org"]
    with (project / "recipients.csv").open("a", encoding="utf-8") as rows:
        rows.writelines(f"{email},Envoy,embassies\n" for email in envoys)
    nothing_rendered_here(monkeypatch)
    closed = []
    monkeypatch.setattr(builders.SecondProcess, "close",
                        lambda self, close=builders.SecondProcess.close: (closed.append(self), close(self))[1])
    settings = load_settings(toml)
    result = run_send(settings, SendRequest(30, "sendgrid", lists=("embassies",), options=SendOptions(
        force=True, batch_size=1)), SendHooks(confirmed_ahead=True))
    assert result.report is not None and result.report.outcome == "completed"
    assert Counter(sendgrid_server.delivered()) == Counter(envoys) and len(sendgrid_server.mail_sends()) == 2
    assert closed and all(builder.issue is None for builder in closed)   # it never built a batch
