"""`campaign serve`'s app under real uvicorn against a real ledger, after an outbox send of issue 30.

The unsubscribe URLs come from the List-Unsubscribe headers of the messages in the outbox,
with the local server's host swapped in.
"""

from __future__ import annotations

import email.policy
import mailbox
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app as cli
from campaign.config import load_settings
from campaign.ledger import open_ledger
from campaign.personalize import recipient_token
from campaign.suppressions import list_suppressions
from campaign.web.readers import FORM_LIMIT, create_app
from web_support import Served, fetch, on_local_host, one_click

REPO = Path(__file__).resolve().parents[1]
SECRET = "readers-test-secret"
RECIPIENTS = """email,name,organisation,city,country,lists
ana@example.org,Ana Lima,City of Lima,Lima,Peru,members
bo@example.org,Bo Lee,City of Seoul,Seoul,Korea,members
carla@example.org,Carla Diaz,Embassy of Chile,Seoul,Chile,embassies
dan@example.org,Dan Berg,City of Oslo,Oslo,Norway,members
"""
ADDRESSES = ("ana@example.org", "bo@example.org", "carla@example.org", "dan@example.org")


@pytest.fixture(scope="module")
def sent_project(tmp_path_factory):
    """Issue 30 sent to the outbox (a rehearsal), and its web copy written: done once, copied per test."""
    root = tmp_path_factory.mktemp("sent")
    (root / "campaign.toml").write_text(
        f'content_dir = "{REPO / "content"}"\nlayouts_dir = "{REPO / "layouts"}"\n'
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\nprovider = "outbox"\n'
        'newsletter_name = "WeGO e-Newsletter & Friends"\n'
        '[lists.members]\ndescription = "Member cities"\n[lists.embassies]\ndescription = "Embassies"\n',
        encoding="utf-8")
    (root / "recipients.csv").write_text(RECIPIENTS, encoding="utf-8")
    patch = pytest.MonkeyPatch()
    patch.setenv("PATH", str(Path(sys.executable).parent))  # no SpamAssassin: scored in the checks' tests
    patch.setenv("CAMPAIGN_TOKEN_SECRET", SECRET)
    try:
        for args in (["send", "-i", "30", "--yes", "--force"], ["preview", "-i", "30", "--web"]):
            result = CliRunner().invoke(cli, [*args, "--config", str(root / "campaign.toml")])
            assert result.exit_code == 0, result.output
    finally:
        patch.undo()
    return root


@pytest.fixture
def project(sent_project, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(sent_project, root)
    return root


@pytest.fixture
def settings(project):
    return load_settings(project / "campaign.toml", environ={"CAMPAIGN_TOKEN_SECRET": SECRET})


@pytest.fixture
def served(settings):
    with Served(create_app(settings)) as base_url:
        yield base_url


def unsubscribe_urls(project: Path) -> dict[str, str]:
    """{address: the https URL in its message's List-Unsubscribe header}."""
    urls = {}
    for message in mailbox.mbox(project / "output" / "issue-30" / "outbox.mbox",
                                factory=lambda f: email.message_from_binary_file(f, policy=email.policy.default)):
        header = str(message["List-Unsubscribe"])
        urls[message["To"].addresses[0].addr_spec] = re.search(r"<(https://[^>]+)>", header).group(1)
    return urls


def suppressions(project: Path):
    connection = open_ledger(project / "campaign.db")
    try:
        return list_suppressions(connection)
    finally:
        connection.close()


def test_get_shows_the_masked_address_and_one_button_and_changes_nothing(project, served):
    url = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    for _ in range(3):   # a scanner, a previewer, the person
        answer = fetch(url)
        assert answer.status == 200
    assert "a•••@example.org" in answer.text and "ana@example.org" not in answer.text
    assert "WeGO e-Newsletter &amp; Friends" in answer.text
    assert answer.text.count("<form") == 1 and 'method="post"' in answer.text
    assert "<script" not in answer.text
    assert suppressions(project) == []


def test_one_click_post_records_unsubscribed_with_source_and_time(project, served):
    answer = one_click(on_local_host(unsubscribe_urls(project)["bo@example.org"], served))
    assert answer.status == 200 and "You are unsubscribed" in answer.text
    assert "bo@example.org" not in answer.text
    [recorded] = suppressions(project)
    assert (recorded.email, recorded.reason, recorded.source) == ("bo@example.org", "unsubscribed", "one-click")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", recorded.at) and not recorded.at.endswith("00:00:00Z")


def test_a_second_post_changes_nothing(project, served):
    url = on_local_host(unsubscribe_urls(project)["carla@example.org"], served)
    assert one_click(url).status == 200
    first = suppressions(project)
    again = fetch(url, "POST", b"confirm=unsubscribe", {"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status == 200 and "You are unsubscribed" in again.text
    assert suppressions(project) == first and suppressions(project)[0].source == "one-click"
    assert "already unsubscribed" in fetch(url).text


def test_the_pages_button_records_source_web_also_as_multipart(project, served):
    urls = unsubscribe_urls(project)
    form = fetch(on_local_host(urls["ana@example.org"], served), "POST", b"confirm=unsubscribe",
                 {"Content-Type": "application/x-www-form-urlencoded"})
    boundary = "b0undary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
                 f"One-Click\r\n--{boundary}--\r\n").encode()
    one_click_multipart = fetch(on_local_host(urls["dan@example.org"], served), "POST", multipart,
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert form.status == one_click_multipart.status == 200
    assert {(s.email, s.source) for s in suppressions(project)} == {
        ("ana@example.org", "web"), ("dan@example.org", "one-click")}


def test_forged_unknown_and_malformed_tokens_get_a_4xx_that_reveals_nothing(project, served):
    real = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    forged = real.split("?t=")[0] + "?t=" + recipient_token("ana@example.org", "not-the-secret")
    never_mailed = real.split("?t=")[0] + "?t=" + recipient_token("eve@example.org", SECRET)
    malformed = [real.split("?t=")[0] + "?t=" + token for token in ("", "x", "a" * 200, "%3Cscript%3E", "ana@example.org")]
    for url in [forged, never_mailed, *malformed, real.split("?")[0]]:
        for answer in (fetch(url), one_click(url)):
            assert 400 <= answer.status < 500, url
            assert not re.search(r"[\w.+-]+@[\w-]+\.\w+", answer.text) and "This link does not work" in answer.text
    assert suppressions(project) == []


def test_pages_forbid_scripts_and_framing_and_no_full_address_appears(project, served):
    url = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    for answer in (fetch(url), fetch(served + "/newsletter/"), fetch(served + "/nowhere"), one_click(url)):
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert not any(address in answer.text for address in ADDRESSES)


def test_bodies_over_64_kb_are_refused_and_record_nothing(project, served):
    url = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    too_big = b"List-Unsubscribe=One-Click&pad=" + b"x" * FORM_LIMIT
    assert fetch(url, "POST", too_big, {"Content-Type": "application/x-www-form-urlencoded"}).status == 413
    assert suppressions(project) == []
    assert fetch(url, "POST", b"List-Unsubscribe=One-Click&pad=" + b"x" * 1000,
                 {"Content-Type": "application/x-www-form-urlencoded"}).status == 200


def test_the_web_copy_and_its_images_are_served_and_listed_newest_first(project, served):
    page = fetch(served + "/newsletter/issue-30/")
    assert page.status == 200 and "[[" not in page.text and "<script" not in page.text
    images = set(re.findall(r'src="images/([^"]+)"', page.text))
    assert images and all(fetch(f"{served}/newsletter/issue-30/images/{name}").status == 200 for name in images)
    older = project / "output" / "issue-29" / "web"
    older.mkdir(parents=True)
    (older / "index.html").write_text("<html><head><title>Issue 29 &amp; more</title></head></html>", "utf-8")
    listing = fetch(served + "/newsletter/")
    assert listing.status == 200
    assert listing.text.index('href="/newsletter/issue-30/"') < listing.text.index('href="/newsletter/issue-29/"')
    assert "Issue 29 &amp; more" in listing.text


def test_an_issue_without_a_web_copy_and_paths_outside_it_are_404(project, served):
    for path in ("/newsletter/issue-31/", "/newsletter/issue-31/images/x.png", "/newsletter/issue-30/../../campaign.toml",
                 "/newsletter/issue-30/%2e%2e/%2e%2e/campaign.toml", "/newsletter/issue-x/", "/campaign.db"):
        assert fetch(served + path).status == 404, path


def test_redirects_only_go_to_our_own_issue_paths(project, served):
    answer = fetch(served + "/newsletter/issue-30", headers={"Host": "evil.example"})
    assert answer.status == 308 and answer.headers["Location"] == "/newsletter/issue-30/"
    for path in ("//evil.example/", "/newsletter/unsubscribe?t=x&next=https://evil.example/",
                 "/newsletter//evil.example"):
        assert "Location" not in fetch(served + path).headers


def test_healthz_answers_ok(served):
    answer = fetch(served + "/healthz")
    assert (answer.status, answer.text) == (200, "ok\n")


def test_state_changes_only_on_post(project, served):
    url = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    for method in ("PUT", "DELETE", "PATCH"):
        assert fetch(url, method, b"List-Unsubscribe=One-Click").status == 405
    assert suppressions(project) == []


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_a_reader_on_a_phone_confirms_in_chromium_and_the_suppression_is_recorded(project, served):
    from playwright.sync_api import sync_playwright

    url = on_local_host(unsubscribe_urls(project)["ana@example.org"], served)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            refused = []
            page.on("console", lambda message: refused.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.goto(url)
            widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]")
            assert widths[2] == 375 and max(widths[:2]) <= 375, f"scrolls sideways: {widths}"
            assert page.get_by_text("a•••@example.org").is_visible()
            assert suppressions(project) == []
            page.get_by_role("button", name="Unsubscribe").click()
            page.get_by_role("heading", name="You are unsubscribed").wait_for(timeout=10_000)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            assert not refused, refused
        finally:
            browser.close()
    [recorded] = suppressions(project)
    assert (recorded.email, recorded.reason, recorded.source) == ("ana@example.org", "unsubscribed", "web")
