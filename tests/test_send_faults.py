"""Bad input and faults around a real send (issue 11): each case counts what reached a real local server.

The project and its helpers are test_send_cli's: issue 30 from this repository, a
small recipients file, a local SendGrid stand-in and a local aiosmtpd server.
"""

from __future__ import annotations

from collections import Counter

import pytest

from test_send_cli import campaign, deliveries, project  # noqa: F401  (project is a fixture)


@pytest.mark.parametrize("environ, appended, fragment", [
    ({"SENDGRID_API_URL": "api.sendgrid.com"}, "", "environment variable SENDGRID_API_URL 'api.sendgrid.com'"),
    ({}, '\n[sendgrid]\ntimeout = "30s"\n', "[sendgrid] timeout '30s' is not a number"),
    ({"CAMPAIGN_PROVIDER": "smtp"}, '\n[smtp]\ntimeout = "30s"\n', "[smtp] timeout '30s' is not a number"),
])
def test_a_configuration_typo_stops_the_send_before_anyone_is_marked(
        project, sendgrid_server, smtp_server, monkeypatch, environ, appended, fragment):  # noqa: F811
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with (project / "campaign.toml").open("a", encoding="utf-8") as config:
        config.write(appended)
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert deliveries(project) == {}
    assert Counter(sendgrid_server.delivered()) == Counter() and smtp_server.received() == Counter()


def test_a_stray_quote_in_the_recipients_file_costs_one_row_not_the_rest_of_the_file(project, smtp_server,  # noqa: F811
                                                                                  monkeypatch):
    people = [f"p{n}@example.org" for n in range(1, 9)]
    rows = [f"{address},Person,Org,City,Country,members" for address in people]
    rows.insert(3, 'minji.kim@example.org,"Kim Min-ji,Seoul,Korea,members')          # line 5
    (project / "recipients.csv").write_text("email,name,organisation,city,country,lists\n"
                                            + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_PROVIDER", "smtp")
    audience = campaign(project, "audience")
    assert "line 5" in audience.output and "never closed" in audience.output and "5 lines" in audience.output
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert "Traceback" not in result.output
    assert smtp_server.received() == Counter(people)            # everyone else once; minji not at all
    assert set(deliveries(project)) == set(people)


# -- item 1: a dry run contacts no provider, ever ---------------------------------------------

@pytest.mark.parametrize("provider", ["smtp", "outbox"])
def test_dry_run_with_test_to_is_refused_and_sends_nothing(project, smtp_server, provider):  # noqa: F811
    result = campaign(project, "send", "--issue", "30", "--provider", provider, "--dry-run",
                      "--test-to", "boss@example.org")
    assert result.exit_code == 2, result.output
    assert "--dry-run" in result.output and "--test-to" in result.output and "Traceback" not in result.output
    assert smtp_server.received() == Counter()
    assert not (project / "output" / "issue-30" / "test-outbox.mbox").exists()


# -- item 2: a ledger deleted or replaced during a send ----------------------------------------

def _send_and_meddle(tmp_path, smtp_server, meddle):
    from campaign.ledger import open_ledger
    from campaign.providers.smtp import SmtpProvider
    from campaign.send import SendOptions, send_issue
    from send_support import make_settings, people, small_issue

    settings = make_settings(tmp_path, {"SMTP_HOST": smtp_server.host, "SMTP_PORT": str(smtp_server.port),
                                        "SMTP_SECURITY": "none"})
    database = tmp_path / "campaign.db"
    connection = open_ledger(database)
    done = []

    def on_progress(progress):
        if progress.done == 2 and not done:
            done.append(meddle(database))

    report = send_issue(connection, small_issue(), people(6), SmtpProvider(settings), settings,
                        SendOptions(batch_size=2), on_progress=on_progress)
    connection.close()
    return report, database


def _delete(database):
    for suffix in ("", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def _replace(database):
    import shutil

    _delete(database)
    shutil.copy(database.with_name("spare.db"), database)


@pytest.mark.parametrize("meddle, what", [(_delete, "was deleted"), (_replace, "was replaced")])
def test_a_send_stops_when_its_ledger_file_is_deleted_or_replaced(tmp_path, smtp_server, meddle, what):
    from campaign.ledger import open_ledger

    open_ledger(tmp_path / "spare.db").close()
    report, database = _send_and_meddle(tmp_path, smtp_server, meddle)
    assert report.outcome == "stopped"
    assert what in report.message and str(database) in report.message
    assert sum(smtp_server.received().values()) == 2 and max(smtp_server.received().values()) == 1
    rescued = [path for path in tmp_path.iterdir() if path.name.startswith("campaign.db.rescued")]
    assert len(rescued) == 1 and str(rescued[0]) in report.message
    rescued_ledger = open_ledger(rescued[0])
    from campaign import ledger

    assert Counter(ledger.status_by_email(rescued_ledger, 30, "real").values())["accepted"] == 2
    rescued_ledger.close()


# -- item 8: the resume hint repeats every option that shaped the run ---------------------------

def test_the_resume_hint_repeats_every_option_and_running_it_resumes_the_same_send(project, smtp_server,  # noqa: F811
                                                                                 monkeypatch):
    import shlex

    from test_send_cli import RECIPIENTS

    other = project / "other recipients.csv"
    other.write_text(RECIPIENTS, encoding="utf-8")
    (project / "recipients.csv").write_text("email,lists\nnobody@example.org,members\n", encoding="utf-8")
    for address in ("ana@example.org", "bo@example.org", "=cmd@example.org"):
        smtp_server.refuse(address, 550)
    monkeypatch.setenv("CAMPAIGN_PROVIDER", "outbox")      # a literal hint without --provider would rehearse
    first = campaign(project, "send", "--issue", "30", "--provider", "smtp", "--recipients", str(other),
                     "--list", "members", "--list", "embassies", "--batch-size", "1", "--force", "--yes")
    assert "paused" in first.output, first.output
    hint = first.output.split("Resume with `")[1].split("`")[0]
    words = shlex.split(hint)
    assert words[:4] == ["campaign", "send", "--issue", "30"]
    for option in (["--provider", "smtp"], ["--recipients", str(other)], ["--list", "members"],
                   ["--list", "embassies"], ["--batch-size", "1"], ["--config", str(project / "campaign.toml")]):
        assert hint.count(shlex.join(option)) == 1, hint
    assert "--force" in words and "--restart" not in words and "--yes" not in words
    from typer.testing import CliRunner

    from campaign.cli import app

    again = CliRunner().invoke(app, [*words[1:], "--yes"])
    assert again.exit_code == 0, again.output
    assert smtp_server.received() == Counter({"carla@example.org": 1})


# -- item 9: a dry run answers for a real send, and always writes its samples ---------------------

def test_a_dry_run_after_an_outbox_rehearsal_answers_for_the_real_send_and_writes_samples(project, smtp_server,  # noqa: F811
                                                                                        monkeypatch):
    monkeypatch.setenv("CAMPAIGN_PROVIDER", "outbox")                     # the quick start's default
    rehearsal = campaign(project, "send", "--issue", "30", "--yes")
    assert rehearsal.exit_code == 0, rehearsal.output
    dry = campaign(project, "send", "--issue", "30", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would send: 4" in dry.output and "real send" in dry.output
    directory = project / "output" / "issue-30" / "dry-run"
    assert sorted(path.name for path in directory.glob("sample-*.eml")) == [
        "sample-1.eml", "sample-2.eml", "sample-3.eml"]
    assert smtp_server.received() == Counter()


def test_a_dry_run_with_nobody_left_to_send_still_writes_its_samples(project, smtp_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CAMPAIGN_PROVIDER", "smtp")
    sent = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert sent.exit_code == 0, sent.output
    dry = campaign(project, "send", "--issue", "30", "--dry-run")
    assert dry.exit_code == 0 and "would send: 0" in dry.output
    directory = project / "output" / "issue-30" / "dry-run"
    assert len(list(directory.glob("sample-*.eml"))) == 3
    assert smtp_server.received() == Counter({address: 1 for address in
                                              ("ana@example.org", "bo@example.org", "=cmd@example.org",
                                               "carla@example.org")})


# -- item 19: an issue that does not exist ---------------------------------------------------------

def test_an_issue_that_does_not_exist_is_an_error_and_creates_no_ledger(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from campaign.cli import app
    from test_send_cli import REPO, RECIPIENTS

    (tmp_path / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\nrecipients = "r.csv"\n'
        '[lists.members]\ndescription = "m"\n[lists.embassies]\ndescription = "e"\n', encoding="utf-8")
    (tmp_path / "r.csv").write_text(RECIPIENTS, encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_TOKEN_SECRET", "s" * 40)
    config = ["--config", str(tmp_path / "campaign.toml")]
    for command in (["audience", "--issue", "31"], ["send", "--issue", "31", "--yes"]):
        result = CliRunner().invoke(app, [*command, *config])
        assert result.exit_code == 2, (command, result.output)
        assert "issue 31 does not exist" in result.output
    assert not (tmp_path / "campaign.db").exists()
