"""`campaign preview --serve`: the editor's live page, served by real uvicorn in a subprocess, in real Chromium.

Each test runs the command in a temporary copy of the project on a free loopback
port, edits files on disk as an editor would, and waits (bounded) for the page
to follow. Nothing is mocked and nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS = 60.0              # first render in a fresh process, on a busy 2-core machine
FOLLOW_MS = 15_000                # a change on disk reaches the page well within this
COVER = Path("content/issue-30/01-cover-sao-paulo.md")
SECRETARIAT = Path("content/issue-30/03-secretariat-activities.md")
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PreviewServer:
    """`campaign preview --issue 30 --serve` in a subprocess, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, project: Path):
        self.project, self.port = project, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from campaign.cli import main; main()", "preview", "--issue", "30",
             "--serve", "--port", str(self.port)],
            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "CAMPAIGN_TOKEN_SECRET": "test-secret"})
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"preview --serve did not start: {self.process.stderr.read() if self.process.stderr else ''}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(self.url.rstrip("/") + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode("utf-8", "replace")

    def panel_shows(self, text: str, timeout: float = FOLLOW_MS / 1000) -> str:
        """Wait (bounded) until the panel contains `text`; return the panel."""
        deadline = time.monotonic() + timeout
        panel = ""
        while time.monotonic() < deadline:
            panel = self.get("/panel")[2]
            if text in panel:
                return panel
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear in the panel within {timeout} s:\n{panel[:2000]}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, errors = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate(timeout=10)
            raise AssertionError(f"preview --serve did not stop within 20 s of Ctrl-C:\n{errors}") from None
        return self.process.returncode, errors


@pytest.fixture
def project(tmp_path):
    for folder in ("content", "layouts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for name in ("campaign.toml", "recipients.example.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def server(project):
    running = PreviewServer(project)
    yield running
    code, errors = running.stop()
    assert code == 0, errors
    assert "Traceback" not in errors, errors


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@needs_chromium
def test_the_page_follows_edits_shows_errors_recovers_and_fits_a_phone(server, project):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url)
            expect(page.locator("#status")).to_have_text("live", timeout=FOLLOW_MS)
            frame = page.frame_locator("#email")
            expect(frame.locator("h2", has_text="São Paulo")).to_be_visible(timeout=FOLLOW_MS)
            page.evaluate("window.sameDocument = true")

            # 1. a heading edited on disk appears in the frame, with no reload by the test
            replace_in(project / SECRETARIAT, "heading: WeGO Secretariat activities", "heading: News from the Secretariat")
            expect(frame.locator("h2", has_text="News from the Secretariat")).to_be_visible(timeout=FOLLOW_MS)
            assert page.evaluate("window.sameDocument") is True, "the page itself was not reloaded"

            # 2. broken YAML: the error, with its file, shows in the page
            original = (project / COVER).read_text(encoding="utf-8")
            replace_in(project / COVER, "heading: São Paulo", "heading: [São Paulo")
            error = page.locator("#render-error")
            expect(error).to_contain_text("content/issue-30/01-cover-sao-paulo.md:", timeout=FOLLOW_MS)
            expect(frame.locator("body")).to_contain_text("01-cover-sao-paulo.md", timeout=FOLLOW_MS)

            # 3. fixed: the email comes back by itself
            (project / COVER).write_text(original, encoding="utf-8")
            expect(error).to_have_count(0, timeout=FOLLOW_MS)
            expect(frame.locator("h2", has_text="São Paulo")).to_be_visible(timeout=FOLLOW_MS)

            # 4. at 375 px nothing scrolls sideways
            page.get_by_role("button", name="Phone 375 px").click()
            expect(page.locator("#email")).to_have_js_property("offsetWidth", 375, timeout=FOLLOW_MS)
            page.wait_for_function(
                "() => { const f = document.getElementById('email');"
                " return f.contentWindow.innerWidth === 375 && f.offsetHeight > 2000; }", timeout=FOLLOW_MS)
            layout = page.evaluate(
                "() => { const d = document.getElementById('email').contentDocument;"
                " return [d.documentElement.scrollWidth, d.body.scrollWidth]; }")
            assert max(layout) <= 375, f"the email is {max(layout)} px wide at 375 px"
            assert page.evaluate("window.sameDocument") is True
        finally:
            browser.close()


@needs_chromium
def test_a_finding_links_to_its_section_in_the_frame(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url)
            link = page.locator("#findings a[data-anchor='section-smart-city-trends']").first
            expect(link).to_contain_text("06-smart-city-trends/", timeout=FOLLOW_MS)
            heading = page.frame_locator("#email").locator("#section-smart-city-trends")
            expect(heading).to_contain_text("Smart city trends")
            link.click()
            page.wait_for_function(
                "() => { const h = document.getElementById('email').contentDocument"
                ".getElementById('section-smart-city-trends').getBoundingClientRect();"
                " const f = document.getElementById('email').getBoundingClientRect();"
                " return f.top + h.top >= -2 && f.top + h.top < 300; }", timeout=FOLLOW_MS)
        finally:
            browser.close()


def test_preview_as_a_recipient_and_an_unknown_address(server):
    status, _, email = server.get("/email?as=jorge.munoz%40example.org")
    assert status == 200 and "Dear Jorge Mu&#241;oz," in email
    status, _, panel = server.get("/panel?as=jorge.munoz%40example.org")
    assert "jorge.munoz@example.org" in panel and "recipient-error" not in panel
    status, _, panel = server.get("/panel?as=nobody%40example.org")
    assert status == 200 and 'id="recipient-error"' in panel and "nobody@example.org" in panel
    assert "Dear Sample Reader," in server.get("/email?as=nobody%40example.org")[2]
    assert server.get("/panel?as=%3Cscript%3E")[0] == 200
    assert "<script>" not in server.get("/panel?as=%3Cscript%3E")[2], "the address is escaped"


def test_an_unknown_section_kind_and_a_layout_error_name_their_file(server, project):
    replace_in(project / SECRETARIAT, "kind: text", "kind: gallery")
    panel = server.panel_shows("render-error")
    assert "layouts/sections/gallery.mjml.j2" in panel and "03-secretariat-activities.md" in panel
    replace_in(project / SECRETARIAT, "kind: gallery", "kind: text")
    server.panel_shows("Plain-text part")
    layout = project / "layouts" / "sections" / "text.mjml.j2"
    first, rest = layout.read_text(encoding="utf-8").split("\n", 1)
    layout.write_text(f"{first}\n{{{{ section.heading( }}}}\n{rest}", encoding="utf-8")  # line 2: unclosed call
    panel = server.panel_shows("render-error")
    assert "layouts/sections/text.mjml.j2:2" in panel
    status, _, email = server.get("/email")
    assert status == 200 and "layouts/sections/text.mjml.j2:2" in email


def version_of(panel: str) -> int:
    return int(re.search(r'id="snapshot" data-version="(\d+)"', panel).group(1))


def test_requests_fill_one_render_and_each_change_renders_once_campaign_toml_included(server, project):
    first = version_of(server.get("/panel")[2])
    for _ in range(10):
        assert server.get("/email")[0] == 200
        assert server.get("/email?as=jorge.munoz%40example.org")[0] == 200
    assert version_of(server.get("/panel")[2]) == first, "requests fill the render; they never render again"
    config = project / "campaign.toml"
    replace_in(config, "Seoul Global Center 5F", "Seoul Global Center 6F")
    server.panel_shows("Seoul Global Center 6F")  # the text part, from the new settings
    assert "Seoul Global Center 6F" in server.get("/email")[2]
    assert version_of(server.get("/panel")[2]) > first


def test_the_page_is_local_read_only_and_sends_careful_headers(server):
    status, headers, page = server.get("/")
    assert status == 200 and "Issue 30 · live preview" in page
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'nonce-" in policy and "unsafe-inline" not in policy
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    _, email_headers, email = server.get("/email")
    assert email_headers["x-frame-options"] == "SAMEORIGIN" and "<script" not in email.lower()
    assert 'src="images/cover-sao-paulo.png"' in email, "pictures come from the issue's folder"
    status, headers, _ = server.get("/images/cover-sao-paulo.png")
    assert status == 200 and headers["content-type"] == "image/png"
    assert server.get("/images/..%2Fissue.yaml")[0] == 404
    assert server.get("/", headers={"Host": "preview.example.org"})[0] == 400, "DNS rebinding is refused"
    request = urllib.request.Request(server.url, data=b"x=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_ctrl_c_ends_the_event_stream_and_the_server_cleanly(project):
    server = PreviewServer(project)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    connection.request("GET", "/events")
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("content-type").startswith("text/event-stream")
    assert answer.readline() == b"retry: 1000\n"
    replace_in(project / SECRETARIAT, "heading: WeGO Secretariat activities", "heading: Secretariat news")
    received = b""
    deadline = time.monotonic() + FOLLOW_MS / 1000
    while b"event: render" not in received and time.monotonic() < deadline:
        received += answer.readline()
    assert b"event: render" in received, received
    code, errors = server.stop()
    rest = answer.read()                       # returns only when the stream has ended (bounded by the timeout)
    assert b"event:" not in rest
    assert code == 0 and errors.strip().endswith("stopped"), errors
    assert "Traceback" not in errors and "rendered issue 30" in errors


def test_serving_an_issue_that_does_not_exist_is_one_line(project):
    result = subprocess.run(
        [sys.executable, "-c", "from campaign.cli import main; main()", "preview", "--issue", "31", "--serve",
         "--port", "0"], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: issue 31 does not exist: no folder {project / 'content' / 'issue-31'}; "
        "start it with `campaign new --issue 31`"]


def test_serve_with_web_or_screenshots_is_refused_in_one_line(project):
    result = subprocess.run(
        [sys.executable, "-c", "from campaign.cli import main; main()", "preview", "--issue", "30", "--serve",
         "--web"], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --serve shows the issue live; write --web or --screenshots in a run without --serve"]


def test_a_port_in_use_is_one_line_naming_it(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", "from campaign.cli import main; main()", "preview", "--issue", "30", "--serve",
             "--port", str(port)], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0], lines
