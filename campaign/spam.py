"""SpamAssassin's opinion of one message, with local tests only: an adapter and nothing else.

Debian's `spamassassin -t -L` scores a message from stdin in a few seconds
without the network (-L: no DNS blocklists, no Razor/Pyzor). `-t` appends the
report: the score and a table of the rules that fired. A fresh, empty user
preferences file keeps the run from reading or writing ~/.spamassassin.
What a score means for an issue (which message to score, when it is a finding)
is campaign/checks/spam.py's business.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import CampaignError

INSTALL_HINT = "install it with `apt-get install spamassassin`"
TIMEOUT = 120.0
REPORT_HEAD = re.compile(r"Content analysis details:\s+\((-?[\d.]+) points, (-?[\d.]+) required\)")
RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


class SpamCheckError(CampaignError):
    """SpamAssassin ran but its answer could not be read."""


@dataclass(frozen=True)
class Rule:
    name: str
    points: float
    description: str


@dataclass(frozen=True)
class SpamReport:
    score: float
    required: float
    rules: tuple[Rule, ...]

    def summary(self) -> str:
        fired = ", ".join(f"{rule.name} {rule.points:+.1f}" for rule in self.rules if rule.points) or "none scoring"
        return f"SpamAssassin score {self.score:.1f} (spam at {self.required:.1f}); rules: {fired}"


def spamassassin() -> str | None:
    return shutil.which("spamassassin")


def score_message(message: bytes) -> SpamReport:
    with SpamRun(message) as run:
        return run.report()


class SpamRun:
    """SpamAssassin scoring one message in a process of its own: started at once, its report read later.

    It takes a second or two, most of it compiling its rules; a caller does other work meanwhile
    (the preflight checks do the rest of theirs). The message is read from a file, so the process
    never waits for us to feed it. Closing stops the process if still running and removes its files.
    """

    def __init__(self, message: bytes):
        program = spamassassin()
        if program is None:
            raise SpamCheckError(f"SpamAssassin is not installed; {INSTALL_HINT}")
        self._home = tempfile.TemporaryDirectory(prefix="campaign-spam-")
        home = Path(self._home.name)
        prefs = home / "user_prefs"
        prefs.write_text("", encoding="utf-8")
        (home / "message.eml").write_bytes(message)
        self._deadline = time.monotonic() + TIMEOUT
        try:
            with (home / "message.eml").open("rb") as stdin:
                self._process = subprocess.Popen(
                    [program, "-t", "-L", "-p", str(prefs)], stdin=stdin, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except OSError as error:
            self._home.cleanup()
            raise SpamCheckError(f"cannot run SpamAssassin ({program}): {error.strerror}") from None

    def report(self) -> SpamReport:
        """Wait for the score (at most TIMEOUT seconds from the start)."""
        try:
            output, _ = self._process.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SpamCheckError(f"SpamAssassin took over {TIMEOUT:.0f} s; is it configured to use "
                                 "the network?") from None
        return parse_report(output.decode("utf-8", "replace"))

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()
        self._home.cleanup()

    def __enter__(self) -> SpamRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_report(output: str) -> SpamReport:
    """The score and rules from the report `spamassassin -t` appends."""
    heads = list(REPORT_HEAD.finditer(output))
    if not heads:
        raise SpamCheckError("SpamAssassin gave no report; run `spamassassin -t -L < message.eml` to see why")
    head = heads[-1]
    rules: list[Rule] = []
    table = output[head.end():].split("\n")
    started = False
    for line in table:
        if line.startswith("----"):
            started = True
            continue
        if not started:
            continue
        match = RULE_LINE.match(line)
        if match:
            rules.append(Rule(match.group(2), float(match.group(1)), match.group(3).strip()))
        elif line.startswith(" " * 10) and rules and line.strip():
            last = rules[-1]
            rules[-1] = Rule(last.name, last.points, f"{last.description} {line.strip()}")
        elif not line.strip() and rules:
            break
    return SpamReport(score=float(head.group(1)), required=float(head.group(2)), rules=tuple(rules))
