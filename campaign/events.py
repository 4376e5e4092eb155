"""What SendGrid says happened after it accepted a message: its Event Webhook's events, into the ledger.

`parse_events` turns the webhook's JSON array (already verified: see web/webhook.py) into
ProviderEvent values; `record_events` stores them and applies their effects in one transaction:

* each event is kept once, keyed by `sg_event_id` (SendGrid delivers at least once);
* `bounce` of type bounce, and `dropped` because the address bounced or is invalid: suppression
  `bounced`; `dropped` because it reported spam or unsubscribed: `complained` / `unsubscribed`;
* `spamreport`: `complained`; `unsubscribe` and `group_unsubscribe`: `unsubscribed`;
* `bounce` of type blocked, `deferred`, and the rest: recorded only;
* an `unknown` delivery named by `processed`, `delivered`, `deferred` or `bounce` was sent after all:
  it becomes `accepted`; named by `dropped`, SendGrid never sent it: `rejected`. Events stored
  before their deliveries were unknown (a killed send's open batch) settle them when a send's
  recovery makes them unknown (`settle_by_stored_events`).

An event names its delivery by the custom_args the send put in its personalization: the delivery
id of that send attempt (`campaign_delivery`, ledger column delivery_id), else the issue number
(`campaign_issue`) and its address. A drop reported for an earlier attempt than the row's latest
resolves nothing. Effects apply only to an event seen for the first time, so a replay changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from email_validator import EmailNotValidError

from .addresses import AddressBook
from .errors import UsageError
from .ledger import ACCEPTED, REAL, REJECTED, Delivery, delivery_by_id, resolve_unknown, transaction
from .suppressions import insert_suppression, provider_suppression

PROVIDER = "sendgrid"
SOURCE = "sendgrid-event"
ARG_ISSUE, ARG_DELIVERY = "campaign_issue", "campaign_delivery"   # as the send writes them (sendgrid_payload)
SENT_EVENTS = ("processed", "delivered", "deferred", "bounce")     # an unknown delivery was sent after all
SUPPRESSING = {"spamreport": "complained", "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}
# `dropped` reasons (SendGrid's wording) and the suppression each one means; other drops are recorded only.
DROPPED_BECAUSE = (("bounced address", "bounced"), ("invalid smtpapi", ""), ("invalid", "bounced"),
                   ("spam reporting address", "complained"), ("unsubscribed address", "unsubscribed"))
MAX_DETAIL = 500


@dataclass(frozen=True)
class ProviderEvent:
    """One event about one address, as the provider reported it."""

    event_id: str
    event: str
    email: str              # normalised
    occurred_at: datetime   # UTC
    issue: int | None       # from custom_args; None for mail `campaign` did not send
    delivery_id: str
    message_id: str
    bounce_type: str        # bounce events: 'bounce' or 'blocked'
    detail: str             # the reason, SMTP response or clicked URL, shortened


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int             # new events (a replayed one is not stored again)
    duplicates: int
    unmatched: int          # new events naming no delivery in this ledger
    suppressed: int         # addresses newly suppressed
    resolved: int           # unknown deliveries that became accepted or rejected
    unreadable: int = 0     # events left out: no id, or no usable address or time


def parse_events(text: str) -> tuple[list[ProviderEvent], int]:
    """The webhook body (a JSON array of event objects): the events, and how many could not be read
    (no id, no usable address or time). A body that is not an array is a UsageError."""
    try:
        items = json.loads(text)
    except ValueError as error:
        raise UsageError(f"the body is not JSON ({error})") from None
    if not isinstance(items, list):
        raise UsageError("the body is not a JSON array of events")
    book, events = AddressBook(), []
    for index, item in enumerate(items):
        try:
            events.append(_event(index, item, book))
        except UsageError:   # one odd event (a dropped one for an address that is no address) spoils no batch
            continue
    return events, len(items) - len(events)


def _event(index: int, item: object, book: AddressBook) -> ProviderEvent:
    if not isinstance(item, dict):
        raise UsageError(f"event {index} is not an object")
    for key in ("sg_event_id", "event", "email", "timestamp"):
        if not item.get(key) and item.get(key) != 0:
            raise UsageError(f"event {index} has no {key!r}")
    try:
        email = book.normalise(str(item["email"]))
        moment = datetime.fromtimestamp(int(item["timestamp"]), timezone.utc)
    except (EmailNotValidError, ValueError, OverflowError, OSError) as error:
        raise UsageError(f"event {index}: bad email or timestamp ({error})") from None
    issue = str(item.get(ARG_ISSUE, ""))
    detail = " ".join(str(item.get(key, "")) for key in ("reason", "response", "url") if item.get(key))
    return ProviderEvent(
        event_id=str(item["sg_event_id"])[:200], event=str(item["event"])[:40], email=email, occurred_at=moment,
        issue=int(issue) if issue.isdigit() else None, delivery_id=str(item.get(ARG_DELIVERY, ""))[:100],
        message_id=str(item.get("sg_message_id", ""))[:200], bounce_type=str(item.get("type", "bounce")),
        detail=detail[:MAX_DETAIL])


def suppression_reason(event: ProviderEvent) -> str:
    """The suppression this event means ('' for none)."""
    if event.event == "bounce":
        return "bounced" if event.bounce_type != "blocked" else ""
    if event.event == "dropped":
        reason = event.detail.lower()
        return next((meaning for start, meaning in DROPPED_BECAUSE if reason.startswith(start)), "")
    return SUPPRESSING.get(event.event, "")


def resolution(event: ProviderEvent) -> str:
    """What an unknown delivery becomes on this event ('' for nothing)."""
    return _resolution_of(event.event)


def _resolution_of(kind: str) -> str:
    if kind == "dropped":
        return REJECTED
    return ACCEPTED if kind in SENT_EVENTS else ""


def _about_latest_attempt(event_delivery_id: str, row_delivery_id: str) -> bool:
    """Whether an event is about the row's latest send attempt (no telling counts as yes)."""
    return not (event_delivery_id and row_delivery_id) or event_delivery_id == row_delivery_id


@dataclass(frozen=True)
class _Match:
    """The real delivery an event names."""

    issue: int
    email: str
    latest: bool            # about the row's latest send attempt (or there is no telling)


def record_events(connection: sqlite3.Connection, events: Iterable[ProviderEvent]) -> IngestResult:
    """Store every new event and apply its effects, all in one transaction."""
    received = stored = unmatched = suppressed = resolved = 0
    with transaction(connection):
        for event in events:
            received += 1
            match = _match(connection, event)
            if not _store(connection, event, match):
                continue
            stored += 1
            unmatched += match is None
            reason = suppression_reason(event)
            if reason:
                suppressed += insert_suppression(connection, provider_suppression(
                    event.email, reason, event.occurred_at, SOURCE, f"SendGrid {event.event}: {event.detail}"))
            status = resolution(event)
            # An earlier attempt's drop says nothing about the latest one; any attempt's being sent does.
            if match is not None and status and (match.latest or status == ACCEPTED):
                resolved += resolve_unknown(connection, match.issue, match.email, status,
                                            f"SendGrid reported {event.event} at {_iso(event.occurred_at)}")
    return IngestResult(received, stored, received - stored, unmatched, suppressed, resolved)


def settle_by_stored_events(connection: sqlite3.Connection, issue: int, unknown: Sequence[Delivery]) -> set[str]:
    """The addresses of these rows (just made `unknown` by a crash's recovery) that events stored earlier
    settle, as `record_events` would have had they arrived now; returns the ones settled.

    Events that came while a batch was written ahead and unanswered (its process killed) found nothing
    unknown to settle then, and SendGrid sends each event once: without this the rows stayed unknown
    though SendGrid had said what became of them, and `--resend-unknown` mailed those people again.
    """
    latest = {row.email: row.delivery_id for row in unknown}
    found = connection.execute(
        f"SELECT email, event, delivery_id, occurred_at FROM provider_events WHERE issue = ? "
        f"AND event IN ({', '.join('?' for _ in (*SENT_EVENTS, 'dropped'))}) "
        f"AND email IN (SELECT value FROM json_each(?)) ORDER BY occurred_at",
        (issue, *SENT_EVENTS, "dropped", json.dumps(sorted(latest)))).fetchall()
    sent: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for email, kind, delivery_id, occurred_at in found:
        note = f"SendGrid reported {kind} at {occurred_at}"
        if _resolution_of(kind) == ACCEPTED:   # any attempt's being sent settles it (never sent again)
            sent.setdefault(email, note)
        elif _about_latest_attempt(delivery_id, latest[email]):   # an earlier attempt's drop says nothing
            dropped.setdefault(email, note)
    verdicts = {**{email: (REJECTED, note) for email, note in dropped.items()},
                **{email: (ACCEPTED, note) for email, note in sent.items()}}
    return {email for email, (status, note) in verdicts.items()
            if resolve_unknown(connection, issue, email, status, note)}


def _match(connection: sqlite3.Connection, event: ProviderEvent) -> _Match | None:
    """By the delivery id the message carried (custom_args campaign_delivery) when a real row's latest
    attempt has it; else by the issue (custom_args campaign_issue) and the address."""
    if event.delivery_id:
        row = delivery_by_id(connection, event.delivery_id)
        if row is not None and row.kind == REAL:
            return _Match(row.issue, row.email, True)
    if event.issue is None:
        return None
    found = connection.execute("SELECT delivery_id FROM deliveries WHERE issue = ? AND kind = 'real' AND email = ?",
                               (event.issue, event.email)).fetchone()
    if found is None:
        return None
    return _Match(event.issue, event.email, latest=_about_latest_attempt(event.delivery_id, found[0]))


def _store(connection: sqlite3.Connection, event: ProviderEvent, match: _Match | None) -> bool:
    cursor = connection.execute(
        "INSERT INTO provider_events (event_id, provider, event, email, issue, delivery_id, message_id, detail, "
        "occurred_at, received_at, matched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "strftime('%Y-%m-%dT%H:%M:%SZ','now'), ?) ON CONFLICT (event_id) DO NOTHING",
        (event.event_id, PROVIDER, event.event, event.email, match.issue if match else event.issue,
         event.delivery_id, event.message_id,
         f"{event.bounce_type}: {event.detail}" if event.event == "bounce" else event.detail,
         _iso(event.occurred_at), int(match is not None)))
    return cursor.rowcount == 1


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_counts(connection: sqlite3.Connection, issue: int) -> dict[str, dict[str, int]]:
    """{event: {list name or '': addresses}} for one issue, '' meaning every address: each address
    counts once per kind of event (two opens are one reader); a bounce of type blocked counts as 'blocked'.
    A person on two lists counts under each."""
    rows = connection.execute(
        "SELECT CASE WHEN e.event = 'bounce' AND e.detail LIKE 'blocked:%' THEN 'blocked' ELSE e.event END, "
        "coalesce(d.lists, ''), count(DISTINCT e.email) FROM provider_events e "
        "LEFT JOIN deliveries d ON d.issue = e.issue AND d.kind = 'real' AND d.email = e.email "
        "WHERE e.issue = ? GROUP BY 1, d.lists", (issue,))
    table: dict[str, dict[str, int]] = {}
    for event, lists, number in rows:
        bucket = table.setdefault(event, {})
        for name in ["", *lists.split()]:
            bucket[name] = bucket.get(name, 0) + number
    return table
