"""Instant resume: a second `campaign send` that finds nothing to send, without reading the file again.

A resume must load and validate the whole recipients file to learn whether
anyone was added since (1-3 s at 100,000 rows). When the last run of the same
command found nothing to send, that verdict is written to
output/.cache/resume-issue-N-KIND.json under a key made of everything the
verdict depends on:

* the recipients file's bytes (sha256) and path, the configured and selected lists;
* the suppression list (sha256 of every address, reason and date: a lifted
  suppression brings someone back);
* the ledger's state for this issue and kind: count per status, the latest
  `updated_at`, the latest run (a send, a webhook event or a crash changes one of them);
* email-validator's and campaign's versions (a new rule may accept an address
  the old one refused), and the options that decide who is eligible.

Any difference (one byte of the file) is a miss, and the resume reads the file
as before. The key is computed before and after the full read; the verdict is
written only when both agree, so a file edited meanwhile is never cached under
the wrong content. A cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import email_validator

from .. import __version__
from ..config import Settings
from ..errors import OutputError
from ..files import write_text_atomic
from ..suppressions import suppressed_emails
from .plan import SendOptions, SendPlan

FORMAT = 1
CHUNK = 1 << 20


@dataclass(frozen=True)
class AudienceSummary:
    """What the summary before a send shows of the audience (all a cached resume knows of it)."""

    lists: tuple[str, ...]
    excluded: int                   # rows of the recipients file left out (invalid, duplicate, suppressed...)


@dataclass(frozen=True)
class NothingToSend:
    plan: SendPlan
    audience: AudienceSummary


def cache_path(settings: Settings, issue: int, kind: str) -> Path:
    return settings.build_dir / ".cache" / f"resume-issue-{issue}-{kind}.json"


def resume_key(settings: Settings, connection: sqlite3.Connection, issue: int, kind: str, provider: str,
               lists: tuple[str, ...], options: SendOptions) -> str | None:
    """Everything a nothing-to-send verdict depends on, as one digest; None when the file cannot be read."""
    try:
        content = _file_digest(Path(settings.recipients))
    except OSError:
        return None
    suppressions = hashlib.sha256(repr(sorted(suppressed_emails(connection).items())).encode()).hexdigest()
    statuses = [list(row) for row in connection.execute(
        "SELECT status, count(*), max(updated_at) FROM deliveries WHERE issue = ? AND kind = ? GROUP BY status "
        "ORDER BY status", (issue, kind))]
    last_run = connection.execute("SELECT max(id) FROM send_runs").fetchone()[0]
    parts = [FORMAT, __version__, email_validator.__version__, str(Path(settings.recipients).resolve()), content,
             [(item.name, item.description) for item in settings.lists], list(lists), issue, kind, provider,
             repr(options), suppressions, statuses, last_run]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def cached_nothing_to_send(settings: Settings, issue: int, kind: str, key: str | None) -> NothingToSend | None:
    """The verdict of an earlier resume with the same key, or None (a miss: read the file)."""
    if key is None:
        return None
    try:
        stored = json.loads(cache_path(settings, issue, kind).read_text(encoding="utf-8"))
        if stored.get("key") != key:
            return None
        plan = SendPlan(**stored["plan"])
        audience = AudienceSummary(tuple(stored["audience"]["lists"]), int(stored["audience"]["excluded"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return NothingToSend(plan, audience) if plan.to_send == 0 else None


def remember_nothing_to_send(settings: Settings, key: str | None, found: NothingToSend) -> None:
    """Keep the verdict for the next resume; a cache that cannot be written is not an error."""
    if key is None or found.plan.to_send != 0:
        return
    stored = {"key": key, "plan": dataclasses.asdict(found.plan), "audience": dataclasses.asdict(found.audience)}
    try:
        write_text_atomic(cache_path(settings, found.plan.issue, found.plan.kind), json.dumps(stored))
    except (OutputError, OSError):
        pass


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
