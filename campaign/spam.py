"""SpamAssassin's opinion of one message, with local tests only: an adapter and nothing else.

Debian's `spamassassin -t -L` scores a message from stdin in a few seconds
without the network (-L: no DNS blocklists, no Razor/Pyzor). `-t` appends the
report: the score and a table of the rules that fired. A fresh, empty user
preferences file keeps the run from reading or writing ~/.spamassassin.
What a score means for an issue (which message to score, when it is a finding)
is campaign/checks/spam.py's business.

A verdict is kept (`remember_in`, output/.cache/spamassassin/) under a key made of the
message, without what changes on every build (Date, Message-ID, MIME boundaries), and of
SpamAssassin's installation: its script, rules, local configuration, sa-update's state and
its Perl modules, each file's size and time. The same message checked again by the same
installation (`campaign check`, then the test send, the dry run and the send) is answered
from there; any change to the message or to SpamAssassin runs it again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import CampaignError
from .files import write_text_atomic

INSTALL_HINT = "install it with `apt-get install spamassassin`"
TIMEOUT = 120.0
REPORT_HEAD = re.compile(r"Content analysis details:\s+\((-?[\d.]+) points, (-?[\d.]+) required\)")
RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")
VERDICTS_KEPT = 32      # the newest: an issue's drafts, then its send
# Where Debian's (and SpamAssassin's own `make install`'s) script says its rules and modules are.
INSTALLED_FOLDER = re.compile(rb"^my \$(?:DEF_RULES_DIR|LOCAL_RULES_DIR|LOCAL_STATE_DIR)\s*=\s*'([^']+)'", re.M)
INSTALLED_LIBRARY = re.compile(rb"^use lib '([^']+)'", re.M)
RUN_SPECIFIC_HEADER = re.compile(rb"^(?:Date|Message-ID):[^\r\n]*\r?\n", re.M | re.I)
BOUNDARY = re.compile(rb'boundary="([^"]+)"', re.I)


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
    remembered: bool = False   # kept from an identical message scored by the same installation

    def summary(self) -> str:
        fired = ", ".join(f"{rule.name} {rule.points:+.1f}" for rule in self.rules if rule.points) or "none scoring"
        kept = " (remembered: the same message was scored before by this SpamAssassin)" if self.remembered else ""
        return f"SpamAssassin score {self.score:.1f} (spam at {self.required:.1f}); rules: {fired}{kept}"


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

    def __init__(self, message: bytes, remember_in: Path | None = None):
        """`remember_in`: the folder of verdicts kept; an identical message scored before by the same
        installation is answered from it, and no process is started."""
        program = spamassassin()
        if program is None:
            raise SpamCheckError(f"SpamAssassin is not installed; {INSTALL_HINT}")
        self._verdict = _verdict_file(remember_in, program, message) if remember_in is not None else None
        self._known = _read_verdict(self._verdict)
        self._process: subprocess.Popen | None = None
        if self._known is None:
            self._start(program, message)

    @property
    def remembered(self) -> bool:
        return self._known is not None

    @property
    def process_started(self) -> bool:
        return self._process is not None

    def _start(self, program: str, message: bytes) -> None:
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
        if self._known is not None:
            return self._known
        assert self._process is not None
        try:
            output, _ = self._process.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SpamCheckError(f"SpamAssassin took over {TIMEOUT:.0f} s; is it configured to use "
                                 "the network?") from None
        text = output.decode("utf-8", "replace")
        report = parse_report(text)
        _keep_verdict(self._verdict, text[text.rfind("Content analysis details"):])   # the report, not the message
        return report

    def close(self) -> None:
        if self._process is None:
            return
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


# --- verdicts kept ------------------------------------------------------------------------------

def installation_fingerprint(program: str) -> str | None:
    """A digest of what SpamAssassin's verdict depends on besides the message: the script, and each file's
    name, size and time in its rule, configuration and state folders and its Perl modules. None when the
    script does not say where those are (a wrapper, another layout): then nothing is kept."""
    try:
        script = Path(program).resolve().read_bytes()
    except OSError:
        return None
    folders = [Path(os.fsdecode(found)) for found in INSTALLED_FOLDER.findall(script)]
    libraries = [Path(os.fsdecode(found)) / "Mail" for found in INSTALLED_LIBRARY.findall(script)]
    if len(folders) < 3 or not libraries:
        return None
    digest = hashlib.sha256(script)
    for folder in folders + [library / "SpamAssassin" for library in libraries]:
        _add_files(digest, folder)
    for library in libraries:
        _add_files(digest, library / "SpamAssassin.pm")
    return digest.hexdigest()


def _add_files(digest: "hashlib._Hash", root: Path) -> None:
    paths = [root] if root.is_file() else sorted(path for path in root.rglob("*") if path.is_file())
    digest.update(os.fsencode(root) + b"\0")
    for path in paths:
        try:
            status = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))


def _without_run_specific_parts(message: bytes) -> bytes:
    """The message as every build of it is: no Date or Message-ID header, each MIME boundary the same."""
    head, separator, body = message.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = message.partition(b"\n\n")
    stable = RUN_SPECIFIC_HEADER.sub(b"", head + separator) + body
    for number, boundary in enumerate(dict.fromkeys(BOUNDARY.findall(stable))):
        stable = stable.replace(boundary, b"BOUNDARY-%d" % number)
    return stable


def _verdict_file(folder: Path, program: str, message: bytes) -> Path | None:
    installation = installation_fingerprint(program)
    if installation is None:
        return None
    key = hashlib.sha256(b"campaign spam verdict 1\0" + installation.encode("ascii") + b"\0"
                         + _without_run_specific_parts(message)).hexdigest()
    return folder / f"{key}.txt"


def _read_verdict(path: Path | None) -> SpamReport | None:
    """The kept report, or None (none kept, or one that cannot be read: scored again)."""
    if path is None:
        return None
    try:
        return replace(parse_report(path.read_text(encoding="utf-8")), remembered=True)
    except (OSError, UnicodeDecodeError, ValueError, SpamCheckError):
        return None


def _keep_verdict(path: Path | None, report: str) -> None:
    """Keep SpamAssassin's report; a folder that cannot be written is not an error (scored again next time)."""
    if path is None:
        return
    try:
        write_text_atomic(path, report)
        forget_old_verdicts(path.parent)
    except (OSError, CampaignError):
        pass


def forget_old_verdicts(folder: Path) -> None:
    """Keep the VERDICTS_KEPT newest verdicts."""
    kept = sorted(folder.glob("*.txt"), key=lambda path: path.stat().st_mtime_ns, reverse=True)
    for old in kept[VERDICTS_KEPT:]:
        old.unlink(missing_ok=True)
