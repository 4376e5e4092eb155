"""The live preview (issue 17): what one change costs, and how soon an open page shows it.

    .venv/bin/python bench/bench_live_preview.py [EDITS]

1. `build_snapshot` for issue 30 (render + checks without the spam score), cold and warm median:
   the work done once per change of the files.
2. One page request's fill of that snapshot (`/email` for the sample recipient), median of 200:
   the work done per request (render once, fill many).
3. Save-to-screen: `campaign preview --serve` in a subprocess on a copy of the project, Debian's
   Chromium on the page, EDITS heading edits on disk; for each, the time from the write until
   the new heading is in the frame (watchfiles debounce + render + SSE + frame reload).
Run on its own, not by run.py; its numbers are kept by hand at the end of RESULTS.md.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import load_settings  # noqa: E402
from campaign.live import build_snapshot  # noqa: E402
from campaign.merge import escape_html  # noqa: E402
from campaign.personalize import sample_envelope  # noqa: E402


def snapshot_times(runs: int = 10) -> tuple[float, float]:
    load = lambda: load_settings(ROOT / "campaign.toml")  # noqa: E731
    started = time.perf_counter()
    build_snapshot(load, 30, 1)
    cold = time.perf_counter() - started
    warm = []
    for version in range(runs):
        started = time.perf_counter()
        build_snapshot(load, 30, version + 2)
        warm.append(time.perf_counter() - started)
    return cold, statistics.median(warm)


def fill_time(requests: int = 200) -> float:
    settings = load_settings(ROOT / "campaign.toml")
    snapshot = build_snapshot(lambda: settings, 30, 1)
    assert snapshot.email is not None
    envelope = sample_envelope(settings, 30)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        snapshot.email.fill(envelope.fields, escape_html)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def save_to_screen(edits: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    project = Path(tempfile.mkdtemp(prefix="bench-live-"))
    for folder in ("content", "layouts"):
        shutil.copytree(ROOT / folder, project / folder)
    for name in ("campaign.toml", "recipients.example.csv"):
        shutil.copy(ROOT / name, project / name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from campaign.cli import main; main()", "preview",
                               "--issue", "30", "--serve", "--port", str(port)], cwd=project,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, target = f"http://127.0.0.1:{port}/", project / "content/issue-30/03-secretariat-activities.md"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_function("() => document.getElementById('status').textContent.startsWith('live')")
            original, times = target.read_text(encoding="utf-8"), []
            for edit in range(edits):
                heading = f"Secretariat news {edit}"
                text = original.replace("heading: WeGO Secretariat activities", f"heading: {heading}")
                started = time.perf_counter()
                target.write_text(text, encoding="utf-8")
                page.frame_locator("#email").locator("h2", has_text=heading).wait_for(timeout=15000)
                times.append(time.perf_counter() - started)
                time.sleep(0.5)
            browser.close()
        return times
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(project, ignore_errors=True)


def main() -> None:
    edits = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cold, warm = snapshot_times()
    print(f"snapshot (render + checks, no spam), issue 30: cold {cold * 1000:.0f} ms, warm median {warm * 1000:.0f} ms")
    print(f"fill of the snapshot for one request: median {fill_time() * 1e6:.0f} µs")
    if shutil.which("chromium") is None:
        print("save-to-screen: skipped, Chromium is not installed")
        return
    times = save_to_screen(edits)
    print(f"save-to-screen over {edits} edits: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s, min {min(times):.2f} s")


if __name__ == "__main__":
    main()
