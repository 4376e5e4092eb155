"""The mailto route of List-Unsubscribe: unsubscribes read back from the unsubscribe inbox.

Every message's `List-Unsubscribe` offers `mailto:...?subject=unsubscribe%20TOKEN`.
Export that inbox as an mbox file with any mail program; each message whose subject
carries a token the ledger knows, or whose From address is someone the ledger has
mailed, becomes an `unsubscribed` suppression (source `mailto`, dated when it was
sent). The rest are reported for a person to answer.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from email_validator import EmailNotValidError

from .addresses import normalise_email
from .ledger import address_for_token
from .mbox import read_mbox, sent_at
from .personalize import recipient_token
from .suppressions import record_unsubscribe

SUBJECT_TOKEN = re.compile(r"unsubscribe\s+([A-Za-z0-9_-]{8,128})", re.IGNORECASE)


@dataclass(frozen=True)
class Unmatched:
    number: int      # 1-based position in the mbox
    sender: str      # the From address as written ('' when none)
    subject: str
    reason: str


@dataclass(frozen=True)
class InboxImport:
    recorded: tuple[str, ...]       # addresses unsubscribed now
    already: tuple[str, ...]        # addresses that were suppressed before (left as they were)
    unmatched: tuple[Unmatched, ...]


def import_unsubscribe_mbox(connection: sqlite3.Connection, path: Path, token_secret: str) -> InboxImport:
    """Record an unsubscribe for every message of the mbox at `path` that names a known recipient."""
    recorded: list[str] = []
    already: list[str] = []
    unmatched: list[Unmatched] = []
    for number, message in enumerate(read_mbox(Path(path), "the unsubscribe inbox"), start=1):
        subject = " ".join(str(message.get("Subject", "")).split())
        sender = _sender(message)
        address = _known_address(connection, subject, sender, token_secret)
        if address is None:
            why = "no known token in the subject, and the sender is not a recipient the ledger has mailed"
            unmatched.append(Unmatched(number, sender, subject, why))
            continue
        suppression, added = record_unsubscribe(connection, address, "mailto", at=sent_at(message))
        (recorded if added else already).append(suppression.email)
    return InboxImport(tuple(recorded), tuple(already), tuple(unmatched))


def _sender(message: EmailMessage) -> str:
    try:
        addresses = message["From"].addresses if message["From"] else ()
    except (AttributeError, IndexError, ValueError):
        addresses = ()
    return addresses[0].addr_spec if addresses else ""


def _known_address(connection: sqlite3.Connection, subject: str, sender: str, token_secret: str) -> str | None:
    """The address the subject's token stands for, else the sender when the ledger has mailed them."""
    for token in SUBJECT_TOKEN.findall(subject):
        address = address_for_token(connection, token)
        if address:
            return address
    try:
        normalised = normalise_email(sender)
    except (EmailNotValidError, ValueError):
        return None
    known = address_for_token(connection, recipient_token(normalised, token_secret))
    return known if known == normalised else None
