"""Instant resume (issue 18): a resume that found nobody to send is remembered, and never hides anyone new.

Real render, the real SendGrid client against the local stand-in, a real SQLite ledger.
The cache lives in output/.cache/ and is keyed by the recipients file's bytes, the
suppression list, the ledger's state and email-validator's version.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.ledger import open_ledger
from campaign.send import SendOptions
from campaign.send.resume_cache import cache_path
from campaign.send.workflow import SendHooks, SendRequest, run_send
from campaign.suppressions import add_suppression, remove_suppression
from send_support import API_KEY

REPO = Path(__file__).resolve().parents[1]
RECIPIENTS = "email,name,lists\nana@example.org,Ana,members\nbo@example.org,Bo,members\n"
REQUEST = SendRequest(30, "sendgrid", options=SendOptions(force=True))


@pytest.fixture
def project(tmp_path, sendgrid_server, monkeypatch):
    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\nprovider = "sendgrid"\n'
        '[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    (tmp_path / "recipients.csv").write_text(RECIPIENTS, encoding="utf-8")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # no SpamAssassin: seconds per call
    for name, value in {"SENDGRID_API_URL": sendgrid_server.url, "SENDGRID_API_KEY": API_KEY,
                        "CAMPAIGN_TOKEN_SECRET": "secret"}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def send(project: Path):
    """One `campaign send --issue 30 --force --yes`; returns (the SendResult, the settings)."""
    settings = load_settings(project / "campaign.toml")
    return run_send(settings, REQUEST, SendHooks()), settings


def test_a_second_resume_with_nothing_to_send_is_answered_from_the_cache(project, sendgrid_server, monkeypatch):
    first, settings = send(project)
    assert first.report is not None and sorted(sendgrid_server.delivered()) == ["ana@example.org", "bo@example.org"]
    nothing, _ = send(project)          # reads the file, finds nobody, remembers it
    assert nothing.report is None and nothing.plan.to_send == 0
    assert cache_path(settings, 30, "real").exists()
    # The file is not read again: loading it would fail now.
    monkeypatch.setattr("campaign.send.workflow.load_audience", lambda *args: pytest.fail("file read again"))
    again, _ = send(project)
    assert again.report is None and again.plan == nothing.plan


def test_a_person_added_since_is_sent_although_the_cache_said_nothing_to_send(project, sendgrid_server):
    send(project)
    send(project)                       # cache written: nothing to send
    with open(project / "recipients.csv", "a", encoding="utf-8") as stream:
        stream.write("cy@example.org,Cy,members\n")
    added, _ = send(project)
    assert added.report is not None and added.plan.to_send == 1
    assert sorted(sendgrid_server.delivered()) == ["ana@example.org", "bo@example.org", "cy@example.org"]


def test_a_lifted_suppression_brings_the_person_back_despite_the_cache(project, sendgrid_server):
    connection = open_ledger(project / "campaign.db")
    add_suppression(connection, "bo@example.org", "bounced")
    connection.close()
    send(project)
    nothing, _ = send(project)
    assert nothing.plan.to_send == 0 and sendgrid_server.delivered() == ["ana@example.org"]
    connection = open_ledger(project / "campaign.db")
    remove_suppression(connection, "bo@example.org")
    connection.close()
    back, _ = send(project)
    assert back.report is not None and sorted(sendgrid_server.delivered()) == ["ana@example.org", "bo@example.org"]


def test_a_cache_that_cannot_be_read_is_a_miss_not_an_error(project, sendgrid_server):
    _, settings = send(project)
    send(project)
    cache_path(settings, 30, "real").write_text("{not json", encoding="utf-8")
    nothing, _ = send(project)
    assert nothing.report is None and nothing.plan.to_send == 0


def test_a_send_collects_young_objects_less_often_and_leaves_the_process_as_it_found_it(project, sendgrid_server):
    # A send makes a few objects per recipient that live for a batch: at CPython's default (a
    # collection every 700 allocations) a million-recipient send spent ~10 s in the collector.
    gc.set_threshold(700, 10, 10)
    during: list[tuple[int, int, int]] = []
    settings = load_settings(project / "campaign.toml")
    hooks = SendHooks(on_plan=lambda plan, subject, audience: during.append(gc.get_threshold()))
    result = run_send(settings, REQUEST, hooks)
    assert result.report is not None and result.report.accepted == 2
    assert during and during[0][0] >= 100_000
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("left, checked_early", [("pending", True), ("accepted", False)])
def test_a_resume_with_people_left_starts_its_checks_before_loading_the_audience(project, sendgrid_server,
                                                                                  monkeypatch, left, checked_early):
    """The checks (SpamAssassin: a second or two) run while the audience loads, as on a first send;
    a resume whose ledger has nobody left to send does not start them before it knows."""
    first, settings = send(project)
    assert first.report is not None
    (project / "recipients.csv").write_text(RECIPIENTS + "cy@example.org,Cy,members\n", encoding="utf-8")
    if left == "pending":   # frozen by a run that died before sending to her
        connection = open_ledger(settings.database)
        with connection:
            connection.execute("INSERT INTO deliveries (issue, kind, email, name, lists, created_at, updated_at) "
                               "VALUES (30, 'real', 'cy@example.org', 'Cy', 'members', '', '')")
        connection.close()
    import campaign.send.workflow as workflow
    order: list[str] = []
    preflight, load = workflow.Preflight.__init__, workflow.load_audience
    monkeypatch.setattr(workflow.Preflight, "__init__",
                        lambda self, *args, **keywords: (order.append("checks"), preflight(self, *args, **keywords))[1])
    monkeypatch.setattr(workflow, "load_audience", lambda *args: (order.append("load"), load(*args))[1])
    resumed, _ = send(project)
    assert (order[0] == "checks") is checked_early, order
    assert resumed.report is not None and "cy@example.org" in sendgrid_server.delivered()
