"""`campaign suppress sync`: SendGrid's own suppression lists, into the ledger's suppressions.

SendGrid drops mail to addresses on its bounce, spam-report, invalid-address and unsubscribe lists;
a later send through SMTP would not. Each list is read with the official client
(`sg.client.suppression.bounces.get(query_params=...)`):

* incrementally: `start_time` is where the previous sync of that list got to (kept in the ledger's
  suppression_sync table), inclusive, so nothing created in the same second is missed;
* page by page (`limit`/`offset`) until a short page, up to an `end_time` fixed when the sync
  starts (so entries arriving meanwhile cannot shift the pages); each list is stored in one
  transaction;
* through 429s: the wait SendGrid asks for (Retry-After, else X-RateLimit-Reset), at most
  MAX_WAIT seconds each and MAX_RATE_LIMITED times per request, then a ProviderError (what was read
  so far is kept, and the next sync resumes from the list's last completed run);
* idempotently: an address suppressed already is counted as known and left as it was.

Blocks are temporary (a receiving server refused for now): they are read and reported, never
suppressed. With `[sendgrid] unsubscribe_group` set, that group's unsubscribes are read too (one
unpaginated list of addresses, read whole each time).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from email_validator import EmailNotValidError
from python_http_client.exceptions import HTTPError  # type: ignore[import-untyped]

from .addresses import AddressBook
from .config import Settings
from .errors import ProviderAuthError, ProviderError
from .ledger import transaction
from .providers.sendgrid import api_client
from .suppressions import insert_suppression, provider_suppression

SOURCE = "sendgrid-sync"
PAGE_SIZE = 500
MAX_RATE_LIMITED = 5        # 429s in a row for one request before giving up
MAX_WAIT = 60.0             # seconds, at most, for one 429
# (kind, the client's path under /v3/suppression, the suppression it means: '' = report only)
LISTS = (("bounces", "bounces", "bounced"), ("spam_reports", "spam_reports", "complained"),
         ("invalid_emails", "invalid_emails", "bounced"), ("unsubscribes", "unsubscribes", "unsubscribed"),
         ("blocks", "blocks", ""))


@dataclass(frozen=True)
class Blocked:
    email: str
    reason: str


@dataclass(frozen=True)
class KindResult:
    kind: str               # bounces, spam_reports, ..., blocks, group 123
    read: int               # entries SendGrid returned
    new: int                # newly suppressed
    known: int              # suppressed already (for blocks: 0; they are never suppressed)
    unusable: int           # entries whose address is not a valid address (never on our lists anyway)


@dataclass(frozen=True)
class SyncResult:
    kinds: tuple[KindResult, ...]
    blocked: tuple[Blocked, ...]   # temporary: reported, not suppressed


def sync_suppressions(connection: sqlite3.Connection, settings: Settings,
                      sleep: Callable[[float], None] = time.sleep) -> SyncResult:
    """Read every SendGrid suppression list (and the unsubscribe group) into the ledger."""
    client = api_client(settings.sendgrid, "Suppressions read")
    reader = _Reader(client, sleep)
    kinds, blocked = [], []
    until = int(time.time())      # a fixed end: entries arriving meanwhile cannot shift the pages
    for kind, path, reason in LISTS:
        since = _start_time(connection, kind)
        entries, latest = reader.all_pages(path, since, until)
        if reason:
            kinds.append(_store(connection, kind, reason, entries))
        else:
            blocked = [Blocked(str(e.get("email", "")), str(e.get("reason", ""))[:200]) for e in entries]
            kinds.append(KindResult(kind, len(entries), 0, 0, 0))
        _remember(connection, kind, max(since, latest))
    group = settings.sendgrid.unsubscribe_group
    if group:
        emails = reader.group(group)
        kinds.append(_store(connection, f"group {group}", "unsubscribed",
                            [{"email": email, "created": 0} for email in emails]))
    return SyncResult(tuple(kinds), tuple(blocked))


def _store(connection: sqlite3.Connection, kind: str, reason: str, entries: list[dict]) -> KindResult:
    book, new, unusable = AddressBook(), 0, 0
    now = datetime.now(timezone.utc)
    with transaction(connection):
        for entry in entries:
            try:
                email = book.normalise(str(entry.get("email", "")))
            except EmailNotValidError:
                unusable += 1
                continue
            created = entry.get("created") or 0
            at = datetime.fromtimestamp(created, timezone.utc) if isinstance(created, int) and created > 0 else now
            note = f"SendGrid {kind}: {entry.get('reason') or entry.get('status') or ''}".rstrip(": ")
            new += insert_suppression(connection, provider_suppression(email, reason, at, SOURCE, note))
    return KindResult(kind, len(entries), new, len(entries) - new - unusable, unusable)


def _start_time(connection: sqlite3.Connection, kind: str) -> int:
    row = connection.execute("SELECT start_time FROM suppression_sync WHERE kind = ?", (kind,)).fetchone()
    return int(row[0]) if row else 0


def _remember(connection: sqlite3.Connection, kind: str, start_time: int) -> None:
    with transaction(connection):
        connection.execute(
            "INSERT INTO suppression_sync (kind, start_time, synced_at) "
            "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ','now')) "
            "ON CONFLICT (kind) DO UPDATE SET start_time = excluded.start_time, synced_at = excluded.synced_at",
            (kind, start_time))


class _Reader:
    """GETs through the official client, with 429s waited out and answers checked."""

    def __init__(self, client: Any, sleep: Callable[[float], None]):
        self.client, self.sleep = client, sleep

    def all_pages(self, path: str, since: int, until: int) -> tuple[list[dict], int]:
        """Every entry created from `since` to `until`, and the latest `created` among them (0: none)."""
        entries: list[dict] = []
        offset = 0
        while True:
            endpoint = getattr(self.client.client.suppression, path)
            page = self.get(f"suppression/{path}", endpoint, {"start_time": since, "end_time": until,
                                                               "limit": PAGE_SIZE, "offset": offset})
            if not isinstance(page, list) or not all(isinstance(e, dict) for e in page):
                raise ProviderError(f"SendGrid's /v3/suppression/{path} did not answer a list of entries")
            entries += page
            if len(page) < PAGE_SIZE:
                break
            offset += PAGE_SIZE
        latest = max((e["created"] for e in entries if isinstance(e.get("created"), int)), default=0)
        return entries, latest

    def group(self, group_id: int) -> list[str]:
        endpoint = self.client.client.asm.groups._(str(group_id)).suppressions
        emails = self.get(f"asm/groups/{group_id}/suppressions", endpoint, None)
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise ProviderError(f"SendGrid's /v3/asm/groups/{group_id}/suppressions did not answer a list "
                                "of addresses; check [sendgrid] unsubscribe_group")
        return emails

    def get(self, where: str, endpoint: Any, query: dict | None) -> object:
        for _ in range(MAX_RATE_LIMITED + 1):
            try:
                response = endpoint.get(query_params=query) if query else endpoint.get()
                return json.loads(response.body or b"null")
            except HTTPError as error:
                if error.status_code != 429:
                    raise _failure(where, error) from None
                self.sleep(_wait(error.headers))
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                raise ProviderError(f"cannot reach SendGrid for /v3/{where} ({error}); check SENDGRID_API_URL "
                                    "and the network, then sync again") from None
            except ValueError:
                raise ProviderError(f"SendGrid's /v3/{where} answered something that is not JSON") from None
        raise ProviderError(f"SendGrid kept answering 429 (too many requests) for /v3/{where}; what was read is "
                            "kept: run `campaign suppress sync` again later")


def _wait(headers: Any) -> float:
    """Seconds to wait after a 429: Retry-After, else until X-RateLimit-Reset, within [0, MAX_WAIT]."""
    get = headers.get if headers is not None else (lambda name: None)
    try:
        retry_after = get("Retry-After")
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), MAX_WAIT)
        reset = get("X-RateLimit-Reset")
        return min(max(float(reset) - time.time(), 0.0), MAX_WAIT) if reset is not None else 1.0
    except ValueError:
        return 1.0


def _failure(where: str, error: HTTPError) -> ProviderError:
    body = error.body.decode("utf-8", "replace")[:300] if isinstance(error.body, bytes) else str(error.body)[:300]
    if error.status_code in (401, 403):
        return ProviderAuthError(f"SendGrid refused the API key for /v3/{where} ({error.status_code}): it needs "
                                 "the Suppressions read permission (and ASM for unsubscribe groups)")
    return ProviderError(f"SendGrid answered {error.status_code} for /v3/{where}: {body}")
