"""Bounces read back from the bounce mailbox: hard ones become `bounced` suppressions.

Mail sent over SMTP bounces to the envelope sender (`[smtp] envelope_from`). Export
that mailbox as an mbox file with any mail program; each message is read by
flufl.bounce (GNU Mailman's detectors: RFC 3464 delivery status notifications and
the formats of qmail, Exim, Postfix, Microsoft, Yahoo and others), which tells
permanent failures from temporary ones. With `[smtp] verp = true` the bounce was
addressed to bounces+TAG@domain, and TAG names the recipient exactly, even when the
report itself names a forwarding address; without it, the addresses the report names
are taken. Permanent failures are suppressed as `bounced`, with the server's
diagnostic as the note; temporary ones (a full mailbox, "delayed") are left alone.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import date as Date, datetime, timezone
from email.message import EmailMessage
from pathlib import Path

from flufl.bounce import all_failures

from .errors import UsageError
from .ledger import address_for_token
from .mbox import read_mbox, sent_at
from .personalize import link_token_of_bounce_tag
from .suppressions import add_suppression

VERP_TAG = re.compile(r"\+([a-z2-7]{29})@", re.IGNORECASE)
VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
MAX_NOTE = 300


@dataclass(frozen=True)
class Unrecognised:
    number: int        # 1-based position in the mbox
    sender: str
    subject: str


@dataclass(frozen=True)
class BounceImport:
    suppressed: tuple[tuple[str, str], ...]    # (address, diagnostic): hard bounces suppressed now
    already: tuple[str, ...]                   # hard bounces of addresses suppressed before
    soft: tuple[tuple[str, str], ...]          # (address, diagnostic): temporary failures, left alone
    unrecognised: tuple[Unrecognised, ...]     # messages in which no failure was found (auto-replies...)


def import_bounces(connection: sqlite3.Connection, path: Path) -> BounceImport:
    """Suppress every hard bounce in the mbox at `path`; report the soft ones and the rest."""
    suppressed: list[tuple[str, str]] = []
    already: list[str] = []
    soft: list[tuple[str, str]] = []
    unrecognised: list[Unrecognised] = []
    for number, message in enumerate(read_mbox(Path(path), "the bounce mailbox"), start=1):
        temporary, permanent = _failures(message)
        if not temporary and not permanent:
            unrecognised.append(Unrecognised(number, str(message.get("From", "")),
                                             " ".join(str(message.get("Subject", "")).split())))
            continue
        hard = [(address, _diagnostic(message, address)) for address in permanent]
        recipient = _verp_recipient(connection, message)
        if hard and recipient:   # the report may name a forwarding address; VERP names who we sent to
            hard = [(recipient, hard[0][1])]
        for address, diagnostic in hard:
            try:
                suppression, added = add_suppression(connection, address, "bounced", _day(sent_at(message)),
                                                     diagnostic)
            except UsageError:   # not a usable address: nothing to suppress
                continue
            if added:
                suppressed.append((suppression.email, diagnostic))
            else:
                already.append(suppression.email)
        soft += [(address, _diagnostic(message, address)) for address in temporary if address not in permanent]
    return BounceImport(tuple(suppressed), tuple(already), tuple(soft), tuple(unrecognised))


def _failures(message: EmailMessage) -> tuple[list[str], list[str]]:
    """(temporary, permanent) addresses, as flufl.bounce finds them (it answers in bytes)."""
    temporary, permanent = all_failures(message)
    decode = lambda found: sorted({address.decode("ascii", "replace").strip().lower() for address in found})  # noqa: E731
    return decode(temporary), decode(permanent)


def _verp_recipient(connection: sqlite3.Connection, message: EmailMessage) -> str | None:
    """The recipient a VERP bounce address (bounces+TAG@domain) names, when the ledger knows the tag."""
    for header in VERP_HEADERS:
        for value in message.get_all(header, []):
            for tag in VERP_TAG.findall(str(value)):
                token = link_token_of_bounce_tag(tag)
                address = address_for_token(connection, token) if token else None
                if address:
                    return address
    return None


def _diagnostic(message: EmailMessage, address: str) -> str:
    """What the receiving server said about `address`: the DSN's Status and Diagnostic-Code, else
    the lines after the address in the report's text, else the report's subject."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload():
            if isinstance(block, str):  # a delivery-status part parsed as text: no fields to read
                continue
            final = str(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
            if final.split(";", 1)[-1].strip().strip("<>").lower() == address:
                said = f"{block.get('Status', '')} {str(block.get('Diagnostic-Code', '')).split(';', 1)[-1]}"
                return _short(said) or _short(str(message.get("Subject", "")))
    return _text_diagnostic(message, address) or _short(str(message.get("Subject", "")))


def _text_diagnostic(message: EmailMessage, address: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    try:
        lines = body.get_content().splitlines() if body is not None else []
    except (LookupError, ValueError):
        return ""
    for index, line in enumerate(lines):
        if address in line.lower():
            following: list[str] = []
            for after in [line.lower().split(address, 1)[1].strip(" <>:")] + lines[index + 1:index + 4]:
                if not after.strip() or after.startswith("-"):
                    if following:
                        break
                    continue
                following.append(after.strip())
            return _short(" ".join(following))
    return ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_NOTE else text[:MAX_NOTE - 3] + "..."


def _day(moment: datetime | None) -> Date | None:
    return moment.astimezone(timezone.utc).date() if moment else None
