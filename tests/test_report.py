"""`campaign report --issue 30`: a real send in the ledger, SendGrid's events posted to the real service
under uvicorn (signed), then the table, the CSV and the HTML page (opened in headless Chromium)."""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app as cli
from campaign.config import load_settings
from campaign.ledger import open_ledger
from campaign.web.readers import create_app
from campaign.web.webhook import WEBHOOK_PATH
from web_support import Served, fetch
from webhook_support import Signer, body_of, event, record_send

EVENTS = [
    event("processed", "bo@example.org"), event("delivered", "bo@example.org"),
    event("delivered", "ana@example.org"), event("delivered", "dan@example.org"),
    event("dropped", "carla@example.org", reason="Bounced Address"),
    event("bounce", "fay@example.org", type="bounce", reason="550 5.1.1 no such user"),
    event("bounce", "ana@example.org", type="blocked", reason="421 try later"),
    event("open", "ana@example.org"), event("open", "ana@example.org"),     # one reader, opened twice
    event("click", "dan@example.org", url="https://wego.example.org/"),
    event("spamreport", "dan@example.org"), event("deferred", "eve@example.org"),
    event("delivered", "someone@example.org", issue=29),                   # another issue: not counted
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A real send of issue 30, then the events above through POST /webhooks/sendgrid."""
    root = tmp_path_factory.mktemp("report")
    (root / "campaign.toml").write_text(
        'database = "campaign.db"\n[lists.members]\ndescription = "Member cities"\n'
        '[lists.embassies]\ndescription = "Embassies"\n[sendgrid]\ntrack_opens = true\ntrack_clicks = true\n',
        encoding="utf-8")
    record_send(root / "campaign.db")
    signer = Signer()
    settings = load_settings(root / "campaign.toml", environ={
        "CAMPAIGN_TOKEN_SECRET": "report-secret", "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
    body = body_of(EVENTS)
    with Served(create_app(settings)) as base_url:
        assert fetch(base_url + WEBHOOK_PATH, "POST", body, signer.headers(body)).status == 200
    return root


def report(project: Path, *args: str):
    result = CliRunner().invoke(cli, ["report", "--issue", "30", *args, "--config", str(project / "campaign.toml")])
    assert result.exit_code == 0, result.output
    return result


def expected(project: Path) -> dict[str, dict[str, int]]:
    """What the ledger itself says, counted here by plain SQL: {list or 'all lists': {column: n}}."""
    connection = open_ledger(project / "campaign.db")
    try:
        deliveries = connection.execute(
            "SELECT email, lists, status FROM deliveries WHERE issue = 30 AND kind = 'real'").fetchall()
        events = connection.execute("SELECT DISTINCT email, event, detail FROM provider_events WHERE issue = 30"
                                    ).fetchall()
    finally:
        connection.close()
    lists_of = {email: lists.split() + ["all lists"] for email, lists, _ in deliveries}
    table: dict[str, Counter] = {}
    for email, lists, status in deliveries:
        for name in lists_of[email]:
            table.setdefault(name, Counter()).update(["recipients", status])
    names = {"delivered": "delivered", "deferred": "deferred", "dropped": "dropped", "spamreport": "spam reports",
             "open": "unique opens", "click": "unique clicks"}
    for email, kind, detail in events:
        if kind == "processed":
            continue              # not a column of the report
        column = ("blocked" if detail.startswith("blocked") else "bounced") if kind == "bounce" else names[kind]
        for name in lists_of[email]:
            table[name][column] += 1
    return {name: dict(counts) for name, counts in table.items()}


def test_the_table_counts_the_ledger_and_the_events_per_list(project):
    lines = report(project).output.splitlines()
    header = lines[1].split()
    assert header[:8] == ["list", "recipients", "accepted", "rejected", "failed", "unknown", "skipped", "pending"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if not line.startswith("all lists")}
    total = next(line for line in lines if line.startswith("all lists")).split()[2:]
    assert rows["members"][:2] == ["5", "5"] and rows["embassies"][:3] == ["2", "1", "1"]
    assert total[:3] == ["6", "5", "1"]          # bo and eve resolved to accepted, carla to rejected
    assert "12 SendGrid events" in lines[0]


def test_the_csv_has_a_row_per_list_and_the_total(project, tmp_path):
    path = tmp_path / "issue-30.csv"
    report(project, "--csv", str(path))
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    assert [row["list"] for row in rows] == ["members", "embassies", "all lists"]
    want = expected(project)
    for row in rows:
        for column, value in row.items():
            if column not in ("issue", "list"):
                assert int(value) == want[row["list"]].get(column, 0), (row["list"], column)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_the_html_page_shows_the_chart_and_the_ledgers_numbers_in_chromium(project, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file, picture = tmp_path / "issue-30.html", tmp_path / "issue-30.png"
    report(project, "--html", str(page_file))
    text = page_file.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            page.screenshot(path=str(picture), full_page=True)
            bars = page.locator("svg rect.bar")
            assert bars.count() >= 8
            box = page.locator("svg").first.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 50
            shown = {row.get_attribute("data-list"): {cell.get_attribute("data-column"): int(cell.inner_text()
                                                                                          .replace(",", ""))
                                                       for cell in row.locator("td[data-column]").all()}
                     for row in page.locator("tr[data-list]").all()}
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]          # nothing fetched: the page is self-contained
    want = expected(project)
    for name, columns in shown.items():
        assert {column: value for column, value in columns.items() if value} == want[name], name
    assert picture.stat().st_size > 10_000
    if os.environ.get("CAMPAIGN_KEEP_SCREENSHOTS"):
        shutil.copy(picture, os.environ["CAMPAIGN_KEEP_SCREENSHOTS"])


def test_an_issue_without_a_real_send_is_one_line(project):
    result = CliRunner().invoke(cli, ["report", "--issue", "29", "--config", str(project / "campaign.toml")])
    assert result.exit_code != 0 and "issue 29 has no real send" in result.output
    assert "Traceback" not in result.output
