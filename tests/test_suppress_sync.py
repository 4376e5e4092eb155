"""`campaign suppress sync` with the real `sendgrid` client against the local stand-in's suppression
lists (answers validated against tsg_suppressions_v3.json), and `suppress import` of SendGrid's CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app as cli
from campaign.ledger import open_ledger
from campaign.suppressions import list_suppressions
from servers.sendgrid_server import SUPPRESSIONS_SCHEMA_FILE, SendGridServer

KEY = "SG.sync-test-key"
T0 = 1764000000


@pytest.fixture
def server():
    if not SUPPRESSIONS_SCHEMA_FILE.exists():
        pytest.skip(f"{SUPPRESSIONS_SCHEMA_FILE} not found (../shared is absent; set CAMPAIGN_SHARED): "
                    "the stand-in's answers could not be checked against SendGrid's schema")
    with SendGridServer(KEY) as running:
        yield running
    assert running.suppressions.errors == []          # every answer had SendGrid's shape


@pytest.fixture
def project(tmp_path, server):
    (tmp_path / "campaign.toml").write_text(
        f'database = "campaign.db"\n[sendgrid]\napi_url = "{server.url}"\ntimeout = 10\nunsubscribe_group = 42\n',
        encoding="utf-8")
    return tmp_path


def run(project: Path, *args: str):
    return CliRunner().invoke(cli, [*args, "--config", str(project / "campaign.toml")],
                              env={"SENDGRID_API_KEY": KEY, "CAMPAIGN_TOKEN_SECRET": "sync-secret"})


def sync(project: Path):
    return run(project, "suppress", "sync")


def suppressed(project: Path) -> dict[str, tuple[str, str]]:
    connection = open_ledger(project / "campaign.db")
    try:
        return {s.email: (s.reason, s.source) for s in list_suppressions(connection)}
    finally:
        connection.close()


def row(output: str, kind: str) -> list[str]:
    return next(line[len(kind):].split() for line in output.splitlines() if line.startswith(kind + " "))


def test_sync_reads_every_list_and_a_second_sync_adds_nothing(project, server):
    lists = server.suppressions
    lists.add("bounces", "ana@example.org", T0, reason="550 5.1.1 no such user")
    lists.add("bounces", "Bo@Example.org", T0 + 5)
    lists.add("spam_reports", "carla@example.org", T0 + 1)
    lists.add("invalid_emails", "dan@example", T0 + 2, reason="Mail domain mentioned in email address is unknown")
    lists.add("invalid_emails", "eve@example.org", T0 + 2, reason="Invalid syntax")
    lists.add("unsubscribes", "fay@example.org", T0 + 3)
    lists.add("blocks", "gus@example.org", T0 + 4, reason="421 try again later", status="4.7.0")
    lists.add_to_group(42, "hal@example.org")
    lists.add_to_group(7, "not-this-group@example.org")

    first = sync(project)
    assert first.exit_code == 0, first.output
    assert row(first.output, "bounces") == ["2", "2", "0", "0"]
    assert row(first.output, "invalid_emails") == ["2", "1", "0", "1"]
    assert row(first.output, "blocks") == ["1", "0", "0", "0"]
    assert row(first.output, "group 42") == ["1", "1", "0", "0"]
    assert "blocked (temporary, not suppressed): gus@example.org  421 try again later" in first.output
    assert suppressed(project) == {
        "ana@example.org": ("bounced", "sendgrid-sync"), "bo@example.org": ("bounced", "sendgrid-sync"),
        "carla@example.org": ("complained", "sendgrid-sync"), "eve@example.org": ("bounced", "sendgrid-sync"),
        "fay@example.org": ("unsubscribed", "sendgrid-sync"), "hal@example.org": ("unsubscribed", "sendgrid-sync")}

    before = suppressed(project)
    second = sync(project)
    assert second.exit_code == 0, second.output
    for kind in ("bounces", "spam_reports", "invalid_emails", "unsubscribes", "blocks", "group 42"):
        assert row(second.output, kind)[1] == "0", second.output      # nothing new
    assert suppressed(project) == before
    asked = {path.rsplit("/", 1)[-1]: query for path, query in lists.queries[-6:] if "suppression/" in path}
    assert asked["bounces"]["start_time"] == str(T0 + 5)       # where the first sync got to
    assert asked["spam_reports"]["start_time"] == str(T0 + 1)


def test_sync_pages_through_long_lists_and_asks_only_for_what_is_new(project, server):
    lists = server.suppressions
    for number in range(1203):
        lists.add("bounces", f"person{number}@example.org", T0 + number)
    first = sync(project)
    assert first.exit_code == 0, first.output
    assert row(first.output, "bounces") == ["1,203", "1,203", "0", "0"]
    offsets = [query["offset"] for path, query in lists.queries if path.endswith("/bounces")]
    assert offsets == ["0", "500", "1000"]
    ends = {query["end_time"] for path, query in lists.queries if path.startswith("/v3/suppression/")}
    assert len(ends) == 1                     # one fixed end for the whole sync: the pages cannot shift

    lists.add("bounces", "late1@example.org", T0 + 5000)
    lists.add("bounces", "late2@example.org", T0 + 5001)
    second = sync(project)
    assert row(second.output, "bounces") == ["3", "2", "1", "0"]   # the last one of before, same second: known
    assert len(suppressed(project)) == 1205


def test_a_429_mid_sync_is_waited_out(project, server):
    lists = server.suppressions
    for number in range(700):
        lists.add("bounces", f"person{number}@example.org", T0 + number)
    lists.add("unsubscribes", "fay@example.org", T0)
    lists.throttle(after=1)                 # the second page of bounces: 429 once
    result = sync(project)
    assert result.exit_code == 0, result.output
    assert row(result.output, "bounces") == ["700", "700", "0", "0"]
    bounce_offsets = [query["offset"] for path, query in lists.queries if path.endswith("/bounces")]
    assert bounce_offsets == ["0", "500", "500"]
    assert len(suppressed(project)) == 701


def test_sendgrid_answering_429_for_ever_stops_the_sync_in_one_line(project, server):
    server.suppressions.add("bounces", "ana@example.org", T0)
    server.suppressions.throttle(after=0, times=50)
    result = sync(project)
    assert result.exit_code == 1
    assert "kept answering 429" in result.output and "Traceback" not in result.output
    assert len(server.suppressions.queries) == 6        # bounded: the first try and five more
    assert suppressed(project) == {}


def test_a_wrong_api_key_is_one_line(project, server):
    result = CliRunner().invoke(cli, ["suppress", "sync", "--config", str(project / "campaign.toml")],
                                env={"SENDGRID_API_KEY": "SG.wrong", "CAMPAIGN_TOKEN_SECRET": "s"})
    assert result.exit_code != 0 and "Suppressions read" in result.output and "SG.wrong" not in result.output


SENDGRID_EXPORT = """created,email,reason,status
1764000000,ana@example.org,"550 5.1.1 The email account that you tried to reach does not exist",5.1.1
2025-11-02 10:20:30,bo@example.org,550 mailbox unavailable,5.0.0
1764000001,not an address,whatever,5.0.0
"""


def test_suppress_import_reads_sendgrids_export_with_reason(project):
    path = project / "bounces.csv"
    path.write_text(SENDGRID_EXPORT, encoding="utf-8")
    refused = run(project, "suppress", "import", str(path))
    assert refused.exit_code != 0 and "--reason" in refused.output
    result = run(project, "suppress", "import", str(path), "--reason", "bounced")
    assert result.exit_code == 1, result.output           # the bad row is reported by line
    assert "bounces.csv:4" in result.output and "imported 2 suppressions" in result.output
    connection = open_ledger(project / "campaign.db")
    try:
        rows = {s.email: s for s in list_suppressions(connection)}
    finally:
        connection.close()
    assert rows["ana@example.org"].reason == "bounced" and rows["ana@example.org"].date == "2025-11-24"
    assert rows["bo@example.org"].date == "2025-11-02" and "550 mailbox unavailable" in rows["bo@example.org"].note
