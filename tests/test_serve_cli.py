"""`campaign serve` as deployed: started with the README's documented command in a subprocess."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from campaign.freeze import freeze_audience
from campaign import ledger
from campaign.ledger import open_ledger
from campaign.personalize import recipient_token
from campaign.suppressions import list_suppressions
from web_support import fetch, one_click

README = Path(__file__).resolve().parents[1] / "README.md"
CAMPAIGN = Path(sys.executable).parent / "campaign"
SECRET = "serve-test-secret"
WAIT = 30.0


def readme_line(start: str) -> str:
    """The first line of a README code block that starts with `start` (after any `cd ... &&`)."""
    for line in README.read_text(encoding="utf-8").splitlines():
        command = line.strip().split("&&")[-1].strip()
        if command.startswith(start):
            return command.split(" #")[0]
    raise AssertionError(f"README shows no `{start} ...` command")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "campaign.toml").write_text(
        'database = "campaign.db"\n[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    connection = open_ledger(tmp_path / "campaign.db")
    run = ledger.start_run(connection, 30, "real", "sendgrid")
    freeze_audience(connection, 30, "real", [("ana@example.org", "Ana", ("members",))], run,
                           token_of=lambda email: recipient_token(email, SECRET))
    connection.close()
    return tmp_path


def start_documented_service(project: Path) -> tuple[subprocess.Popen, str]:
    words = shlex.split(readme_line("campaign serve --config"))
    process = subprocess.Popen([str(CAMPAIGN), *words[1:], "--port", "0"], cwd=project,
                               env={"PATH": str(CAMPAIGN.parent), "CAMPAIGN_TOKEN_SECRET": SECRET},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(WAIT)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first_line[0] if first_line else "")
    if match is None:
        process.kill()
        raise AssertionError(f"campaign serve did not say where it listens: {first_line} {process.stderr.read()}")
    return process, match.group(1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_the_documented_command_serves_healthz_takes_a_one_click_and_stops_cleanly(project, stop):
    process, base_url = start_documented_service(project)
    token = recipient_token("ana@example.org", SECRET)
    try:
        assert fetch(base_url + "/healthz").text == "ok\n"
        url = f"{base_url}/newsletter/unsubscribe?t={token}"
        curl = shlex.split(readme_line("curl -X POST"))
        assert curl[:4] == ["curl", "-X", "POST", "-d"] and curl[4] == "List-Unsubscribe=One-Click"
        if shutil.which("curl"):
            done = subprocess.run(["curl", "-s", *curl[1:5], url], capture_output=True, text=True, timeout=WAIT)
            assert "You are unsubscribed" in done.stdout
        else:
            assert one_click(url).status == 200
        fetch(f"{base_url}/newsletter/unsubscribe?t={token}&who=ana@example.org")
        fetch(f"{base_url}/archive/ana%40example.org")
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=WAIT)
    assert process.returncode == 0, err
    assert "stopped" in err
    assert '"GET /healthz HTTP/1.1" 200' in err and '"POST /newsletter/unsubscribe HTTP/1.1" 200' in err
    assert "ana@example.org" not in err + out and token not in err + out
    assert "a•••@example.org" in err
    connection = open_ledger(project / "campaign.db")
    assert [(s.email, s.source) for s in list_suppressions(connection)] == [("ana@example.org", "one-click")]
    connection.close()


def test_a_port_in_use_is_one_line_and_a_non_zero_exit(project):
    process, base_url = start_documented_service(project)
    try:
        port = base_url.rsplit(":", 1)[1]
        taken = subprocess.run([str(CAMPAIGN), "serve", "--config", "campaign.toml", "--port", port], cwd=project,
                               env={"PATH": str(CAMPAIGN.parent), "CAMPAIGN_TOKEN_SECRET": SECRET},
                               capture_output=True, text=True, timeout=WAIT)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=WAIT)
    assert taken.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr and "Traceback" not in taken.stderr
