"""Sending 100,000 recipients with `campaign send` to the local SendGrid stand-in, a dry run, and a resume.

Run by hand:  .venv/bin/python bench/bench_send.py [RECIPIENTS] [DELAY]   (default 100000 0.05)

Everything goes through the real command line in a subprocess, as a user would
run it: `campaign send --issue 30 --yes` with CAMPAIGN_PROVIDER=sendgrid,
SENDGRID_API_URL at tests/servers/sendgrid_server.py on 127.0.0.1 (answering
202 after DELAY seconds; JSON-schema validation off, since that is SendGrid's
CPU, not ours, and the tests cover it), a dummy SENDGRID_API_KEY and a
temporary campaign.toml, recipients file and ledger. The order is:

1. `--dry-run` (personalises every message, writes the manifest, records nothing);
2. the send (everyone is sent);
3. the same send again (a resume that finds nothing left to send).

For each: wall time of the process (Python start-up included), its peak RSS
(os.wait4 in a small launcher process, so it is campaign's own), its exit code;
for the send, the requests and recipients the server received and the ledger's
size on disk. Issue 30's content still has '#' links, which the preflight gate
refuses for a real send, so the commands carry --force: the checks (SpamAssassin
included, when installed) still run and are part of the time. The dry run scores the
message with SpamAssassin and keeps the verdict (output/.cache/spamassassin/), so the send
and the resumes reuse it, as a send after an editor's `campaign check` or dry run does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.sendgrid_server import SendGridServer  # noqa: E402

from bench_personalize import synthetic_recipients  # noqa: E402

CAMPAIGN = ROOT / ".venv" / "bin" / "campaign"
CONFIG = """\
content_dir = "{root}/content"
layouts_dir = "{root}/layouts"
build_dir = "output"
recipients = "recipients.csv"
database = "campaign.db"
provider = "sendgrid"
[lists.members]
description = "Member cities"
[lists.embassies]
description = "Embassy contacts"
"""


@dataclass
class Run:
    """One `campaign send` process."""

    label: str
    seconds: float
    peak_rss_mb: float
    exit_code: int
    requests: int = 0                # POST /v3/mail/send received during this run
    delivered: int = 0               # recipients in accepted requests (duplicates counted)
    distinct: int = 0                # distinct addresses delivered
    largest_request: int = 0         # most recipients in one request
    request_mb: float = 0.0          # bytes of all request bodies
    output: str = ""                 # the last lines the command printed
    body_sizes: list[int] = field(default_factory=list)   # bytes of each request body (for the floor)


@dataclass
class SendTimes:
    recipients: int
    delay: float
    runs: dict[str, Run] = field(default_factory=dict)
    ledger_mb: float = 0.0
    ledger_files: str = ""
    dry_run_mb: float = 0.0          # output/issue-30/dry-run on disk
    dry_run_files: int = 0
    floor_seconds: float = 0.0       # a bare client posting the same-size bodies to the same stand-in
    floor_concurrency: int = 0


def write_recipients(path: Path, count: int) -> None:
    """`count` distinct valid recipients, half on each list, a tenth on both."""
    lines = ["email,name,organisation,city,country,lists,language"]
    for index, recipient in enumerate(synthetic_recipients(count)):
        lists = "members;embassies" if index % 10 == 0 else ("members" if index % 2 else "embassies")
        fields = recipient.fields
        name = fields["name"].replace('"', "")
        lines.append(f'{recipient.email},"{name}","{fields["organisation"]}",{fields["city"]},'
                     f'{fields["country"]},{lists},en')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Started by a small clean process, so the peak RSS is campaign's own: a child forked (or vforked) from this
# big benchmark process starts its high-water mark at ours, and ru_maxrss would report that instead.
LAUNCHER = """\
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    report.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_campaign(label: str, arguments: list[str], folder: Path, environ: dict[str, str]) -> Run:
    """Run the CLI once: its wall time (Python start-up included) and its own peak RSS (wait4's ru_maxrss)."""
    log, report = folder / f"{label}.log", folder / f"{label}.rusage"
    with open(log, "wb") as output:
        subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(report), str(CAMPAIGN), *arguments], cwd=folder,
                       env=environ, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    seconds, max_rss_kb, exit_code = report.read_text().split()
    text = log.read_text(encoding="utf-8", errors="replace")
    lines = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return Run(label, float(seconds), int(max_rss_kb) / 1024, int(exit_code), output="\n".join(lines[-8:]))


def startup_seconds(runs: int = 3) -> float:
    """`campaign --help`: Python start-up and importing the CLI, which every command pays (median)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(CAMPAIGN), "--help"], capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def preflight_seconds(settings, rendered) -> tuple[float, float]:
    """The preflight checks a send, dry run or resume runs first (SpamAssassin included when installed):
    the first time this message is checked, and again (SpamAssassin's verdict kept), in a fresh build_dir."""
    from dataclasses import replace

    from campaign.checks import check_issue

    times = []
    with tempfile.TemporaryDirectory(prefix="campaign-bench-checks-") as build:
        for _ in range(2):
            started = time.perf_counter()
            check_issue(replace(settings, build_dir=Path(build)), rendered.number, rendered=rendered)
            times.append(time.perf_counter() - started)
    return times[0], times[1]


def _count_requests(run: Run, server: SendGridServer) -> Run:
    sends = server.mail_sends()
    run.requests = len(sends)
    delivered = [address for request in sends if request.delivered for address in request.recipients]
    run.delivered, run.distinct = len(delivered), len(set(delivered))
    run.largest_request = max((len(request.recipients) for request in sends), default=0)
    run.request_mb = sum(len(request.raw) for request in sends) / 1e6
    run.body_sizes = [len(request.raw) for request in sends]
    server.clear()  # the recorded bodies are ~100 MB: let them go before the next run
    return run


def _size(paths: list[Path]) -> float:
    return sum(path.stat().st_size for path in paths if path.exists()) / 1e6


def bench_project(folder: Path, count: int, api_url: str) -> dict[str, str]:
    """A project in `folder` with `count` recipients, sending to the stand-in at `api_url`; returns its environment."""
    (folder / "campaign.toml").write_text(CONFIG.format(root=ROOT), encoding="utf-8")
    write_recipients(folder / "recipients.csv", count)
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("CAMPAIGN_", "SENDGRID_", "SMTP_"))}
    environ.update(CAMPAIGN_PROVIDER="sendgrid", SENDGRID_API_URL=api_url, SENDGRID_API_KEY="SG.bench-dummy-key",
                   CAMPAIGN_TOKEN_SECRET="bench-secret", NO_COLOR="1")
    return environ


def measure_send(count: int, delay: float, *, dry_run: bool = True, concurrency: int = 4) -> SendTimes:
    times = SendTimes(recipients=count, delay=delay)
    with tempfile.TemporaryDirectory(prefix="campaign-bench-send-") as name, \
            SendGridServer(api_key=None, delay=delay, validate=False) as server:
        folder = Path(name)
        environ = bench_project(folder, count, server.url)
        environ.update(COLUMNS="100")
        command = ["send", "--issue", "30", "--yes", "--force", "--config", str(folder / "campaign.toml")]

        if dry_run:
            times.runs["dry-run"] = _count_requests(
                run_campaign("dry-run", [*command, "--dry-run"], folder, environ), server)
            dry_run_folder = folder / "output" / "issue-30" / "dry-run"
            files = [path for path in dry_run_folder.rglob("*") if path.is_file()]
            times.dry_run_mb, times.dry_run_files = _size(files), len(files)

        times.runs["send"] = _count_requests(run_campaign("send", command, folder, environ), server)
        database = folder / "campaign.db"
        ledger_files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        times.ledger_mb = _size(ledger_files)
        times.ledger_files = ", ".join(f"{path.name} {path.stat().st_size / 1e6:.1f} MB"
                                       for path in ledger_files if path.exists())

        times.runs["resume"] = _count_requests(run_campaign("resume", command, folder, environ), server)
        # the same resume again: answered from output/.cache when nothing changed
        times.runs["resume-cached"] = _count_requests(run_campaign("resume-cached", command, folder, environ),
                                                      server)
        from bench_scale import bare_client_seconds   # noqa: PLC0415

        times.floor_concurrency = concurrency
        times.floor_seconds = bare_client_seconds(server, times.runs["send"].body_sizes, concurrency)
    return times


@dataclass(frozen=True)
class SendAndFloor:
    """One more first send of the same list, as `measure_send` makes it (a fresh project: its dry run, the
    send, a resume and a cached resume), then the bare client posting the same bodies at once: the send
    and its floor are measured within seconds of each other."""

    dry_run_seconds: float
    send_seconds: float
    floor_seconds: float
    cached_resume_seconds: float
    exit_codes: tuple[int, ...]
    requests: int

    @property
    def ratio(self) -> float:
        return self.send_seconds / self.floor_seconds if self.floor_seconds else float("inf")

    @classmethod
    def of(cls, times: SendTimes) -> "SendAndFloor":
        runs = times.runs
        return cls(runs["dry-run"].seconds, runs["send"].seconds, times.floor_seconds, runs["resume-cached"].seconds,
                   tuple(run.exit_code for run in runs.values()), runs["send"].requests)


def send_and_floor(count: int, delay: float) -> SendAndFloor:
    return SendAndFloor.of(measure_send(count, delay))


def main(count: int, delay: float) -> None:
    times = measure_send(count, delay)
    for run in times.runs.values():
        print(f"{run.label:<8} {run.seconds:7.2f} s  peak RSS {run.peak_rss_mb:6.0f} MB  exit {run.exit_code}  "
              f"requests {run.requests}  delivered {run.delivered:,} ({run.distinct:,} distinct, "
              f"at most {run.largest_request:,} per request, {run.request_mb:.0f} MB sent)")
        print("    " + run.output.replace("\n", "\n    "))
    print(f"ledger {times.ledger_mb:.1f} MB ({times.ledger_files}); dry run wrote {times.dry_run_files} files, "
          f"{times.dry_run_mb:.1f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
