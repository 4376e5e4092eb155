"""When a `campaign send` holds its memory: peak RSS and an RSS timeline of one send (issue 18).

Run by hand:  .venv/bin/python bench/bench_send_memory.py [RECIPIENTS] [DELAY]   (default 1000000 0.05)

The same send as bench_send.py (the real command line in a subprocess, the
SendGrid stand-in answering after DELAY seconds, a fresh project), without the
dry run and the resumes. Its peak RSS comes from wait4 as there; besides, the
campaign process's RSS is read from /proc every half second together with the
requests the stand-in has received, so the timeline shows which phase holds the
peak: loading the audience (no request yet, RSS rising), the ledger work before
the first request (freezing the audience), or the sending itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.sendgrid_server import SendGridServer  # noqa: E402

from bench_send import bench_project, run_campaign  # noqa: E402

SAMPLE_SECONDS = 0.5


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) // 1024 for line in status.splitlines() if line.startswith("VmRSS")), None)


def measure(count: int, delay: float) -> tuple[float, float, int, list[tuple[float, int, int]]]:
    """(seconds, peak RSS MB, requests, [(seconds since start, RSS MB, requests so far)])."""
    timeline: list[tuple[float, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="campaign-bench-memory-") as name, \
            SendGridServer(api_key=None, delay=delay, validate=False) as server:
        folder = Path(name)
        environ = bench_project(folder, count, server.url)
        done = threading.Event()

        def sample() -> None:   # this process -> the launcher -> campaign
            started = time.perf_counter()
            while not done.wait(SAMPLE_SECONDS):
                for launcher in _children(os.getpid()):
                    for pid in _children(launcher):
                        rss = _rss_mb(pid)
                        if rss is not None:
                            timeline.append((time.perf_counter() - started, rss, len(server.mail_sends())))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run = run_campaign("send", ["send", "--issue", "30", "--yes", "--force", "--config",
                                    str(folder / "campaign.toml")], folder, environ)
        done.set()
        sampler.join()
        return run.seconds, run.peak_rss_mb, len(server.mail_sends()), timeline


def main(count: int, delay: float) -> None:
    seconds, peak, requests, timeline = measure(count, delay)
    print(f"send of {count:,}: {seconds:.1f} s, peak RSS {peak:.0f} MB, {requests} requests")
    step = max(1, len(timeline) // 40)
    for at, rss, sent in timeline[::step]:
        print(f"  {at:7.1f} s  RSS {rss:5d} MB  requests {sent}")
    if timeline:
        at, rss, sent = max(timeline, key=lambda sample: sample[1])
        print(f"highest sample: {rss} MB at {at:.1f} s, after {sent} requests")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
