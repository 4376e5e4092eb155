"""Issue 18's measurements: the bare-client floor, and five SIGKILLs of a concurrent send.

Run by hand:  .venv/bin/python bench/bench_scale.py [RECIPIENTS] [DELAY]   (default 100000 0.05: the kills)

* `bare_client_seconds(server, sizes, concurrency)`: the floor a send is compared
  with. A bare urllib client posts bodies of the same sizes as the send's requests,
  `concurrency` at a time, to the same stand-in (same delay, same JSON parsing),
  in the same run. Nothing is built, recorded or checked: only HTTP and waiting.
* `kill_five_times(count, delay)`: `campaign send` (the real CLI, concurrency 4)
  SIGKILLed at five random moments, resumed each time, then run to the end and
  once more with --resend-unknown. Counts copies per address at the stand-in: not
  timed. Nobody may get two copies before --resend-unknown, nobody may be missing
  after it; second copies only among the rows left unknown, at most
  concurrency x batch size per kill.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign import ledger  # noqa: E402
from servers.sendgrid_server import SendGridServer  # noqa: E402

from bench_send import CAMPAIGN, bench_project  # noqa: E402


def _body(size: int) -> bytes:
    """A mail/send body of exactly `size` bytes (a padded plain-text content)."""
    shell = {"personalizations": [{"to": [{"email": "floor@example.org"}]}],
             "from": {"email": "newsletter@example.org"}, "subject": "floor",
             "content": [{"type": "text/plain", "value": ""}]}
    empty = len(json.dumps(shell).encode())
    shell["content"][0]["value"] = "x" * max(0, size - empty)
    return json.dumps(shell).encode()


def bare_client_seconds(server: SendGridServer, sizes: list[int], concurrency: int) -> float:
    """Post bodies of `sizes` to the stand-in, `concurrency` at a time; wall seconds (bodies built first)."""
    bodies = [_body(size) for size in sizes]

    def post(body: bytes) -> None:
        request = urllib.request.Request(f"{server.url}/v3/mail/send", data=body, method="POST", headers={
            "Authorization": "Bearer SG.floor", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except urllib.error.HTTPError:
            pass

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies))
    seconds = time.perf_counter() - started
    server.clear()
    return seconds


@dataclass
class KillCounts:
    recipients: int
    concurrency: int
    batch: int
    kills: list[int] = field(default_factory=list)       # requests seen at the stand-in at each kill
    unknown_after_kill: list[int] = field(default_factory=list)   # rows each kill left in flight unanswered
    most_copies_before: int = 0                           # before --resend-unknown
    unknown_before_resend: int = 0
    second_copies: int = 0                                # addresses with two copies after --resend-unknown
    second_copies_outside_unknown: int = 0
    missing_after: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def bound(self) -> int:
        return len(self.kills) * self.concurrency * self.batch


def _in_flight(database: Path) -> int:
    """Rows a kill left in flight with no answer (in a batch written ahead, or marked one by one): what the
    next run calls unknown. A batch answered just before the kill reads in flight too until its rows are
    written; the next run writes them with its answer, so it is not counted here."""
    connection = sqlite3.connect(database)
    try:
        answered = connection.execute(
            "SELECT count(*) FROM batches_in_flight AS batch, json_each(batch.deliveries) "
            "WHERE batch.issue = 30 AND batch.kind = 'real' AND batch.answer IS NOT NULL").fetchone()[0]
        return ledger.counts(connection, 30, "real")["in_flight"] - answered
    finally:
        connection.close()


def _unknown(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        return ledger.emails_with_status(connection, 30, "real", ["unknown", "in_flight"])
    finally:
        connection.close()


def kill_five_times(count: int, delay: float, seed: int = 18, kills: int = 5) -> KillCounts:
    rng = random.Random(seed)
    result = KillCounts(recipients=count, concurrency=4, batch=1000)
    with tempfile.TemporaryDirectory(prefix="campaign-bench-kill-") as name, \
            SendGridServer(api_key=None, delay=delay, validate=False) as server:
        folder = Path(name)
        environ = bench_project(folder, count, server.url)
        environ.update(PATH=str(Path(sys.executable).parent))
        command = [str(CAMPAIGN), "send", "--issue", "30", "--yes", "--force",
                   "--config", str(folder / "campaign.toml")]
        batches = -(-count // result.batch)
        for kill in range(kills):
            seen = len(server.mail_sends())
            target = seen + rng.randint(1, max(1, batches // (kills + 1)))
            process = subprocess.Popen(command, cwd=folder, env=environ, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 600
            while len(server.mail_sends()) < target and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, delay))
            process.send_signal(signal.SIGKILL)
            process.wait()
            result.kills.append(len(server.mail_sends()))
            result.unknown_after_kill.append(_in_flight(folder / "campaign.db"))
            time.sleep(delay + 0.1)   # the stand-in answers what it holds (into a closed socket)
        finished = subprocess.run(command, cwd=folder, env=environ, capture_output=True, check=False)
        result.exit_codes.append(finished.returncode)
        copies = Counter(server.delivered())
        result.most_copies_before = max(copies.values(), default=0)
        unknown = _unknown(folder / "campaign.db")
        result.unknown_before_resend = len(unknown)
        resent = subprocess.run([*command, "--resend-unknown"], cwd=folder, env=environ, capture_output=True,
                                check=False)
        result.exit_codes.append(resent.returncode)
        copies = Counter(server.delivered())
        twice = {email for email, n in copies.items() if n > 1}
        result.second_copies = len(twice)
        result.second_copies_outside_unknown = len(twice - unknown)
        everyone = {line.split(",", 1)[0] for line in
                    (folder / "recipients.csv").read_text(encoding="utf-8").splitlines()[1:]}
        result.missing_after = len(everyone - set(copies))
    return result


if __name__ == "__main__":
    counts = kill_five_times(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
                             float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
    print(counts)
