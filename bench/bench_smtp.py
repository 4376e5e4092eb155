"""`[smtp] connections`: the same SMTP send over 1 connection and over several, through the real CLI.

Run by hand:  .venv/bin/python bench/bench_smtp.py [RECIPIENTS] [DELAY] [CONNECTIONS]   (default 2000 0.02 4)

A relay answers each message after DELAY seconds (aiosmtpd on 127.0.0.1, in this process: its
`delay` holds the "250" after storing the message, as a relay that queues to disk or scans does).
`campaign send --issue 30 --yes --force` runs with CAMPAIGN_PROVIDER=smtp, once with
`[smtp] connections = 1` and once with CONNECTIONS, each on a fresh project and ledger. For each:
wall time of the process, messages per second, the messages the server stored and how many
distinct recipients they reached, and the most connections the server answered at once.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers.smtp_server import SmtpServer  # noqa: E402

from bench_send import CONFIG, bench_project, run_campaign  # noqa: E402


@dataclass(frozen=True)
class SmtpRun:
    connections: int
    seconds: float
    exit_code: int
    stored: int              # messages the server stored
    distinct: int            # distinct recipients among them
    most_at_once: int        # the most connections answered at once

    @property
    def per_second(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0


def measure_smtp(count: int, delay: float, connections: int) -> SmtpRun:
    with tempfile.TemporaryDirectory(prefix="campaign-bench-smtp-") as name, SmtpServer() as server:
        server.delay = delay
        folder = Path(name)
        environ = bench_project(folder, count, "https://api.sendgrid.com")
        config = CONFIG.format(root=ROOT).replace('provider = "sendgrid"', 'provider = "smtp"')
        (folder / "campaign.toml").write_text(config + f"[smtp]\nconnections = {connections}\n", encoding="utf-8")
        environ.update(CAMPAIGN_PROVIDER="smtp", SMTP_HOST=server.host, SMTP_PORT=str(server.port),
                       SMTP_SECURITY="none", COLUMNS="100")
        command = ["send", "--issue", "30", "--yes", "--force", "--config", str(folder / "campaign.toml")]
        run = run_campaign(f"smtp-{connections}", command, folder, environ)
        received = Counter(server.recipients())
        return SmtpRun(connections, run.seconds, run.exit_code, sum(received.values()), len(received),
                       server.most_at_once)


def compare(count: int, delay: float, connections: int) -> tuple[SmtpRun, SmtpRun]:
    """The same send over one connection, then over `connections`, in the same run."""
    return measure_smtp(count, delay, 1), measure_smtp(count, delay, connections)


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 2000
    delay = float(argv[1]) if len(argv) > 1 else 0.02
    connections = int(argv[2]) if len(argv) > 2 else 4
    for run in compare(count, delay, connections):
        print(f"{run.connections} connection(s): {run.seconds:.1f} s, {run.per_second:.0f} messages/s, "
              f"{run.stored:,} stored ({run.distinct:,} distinct), at most {run.most_at_once} at once, "
              f"exit {run.exit_code}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
