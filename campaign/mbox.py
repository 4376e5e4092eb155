"""Reading an mbox file that a mail program exported (the unsubscribe inbox, the bounce mailbox)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import cast

from .errors import UsageError


def read_mbox(path: Path, what: str) -> list[EmailMessage]:
    """Every message of the mbox at `path`, parsed; `what` names the mailbox in errors ("the bounce mailbox")."""
    try:
        with path.open("rb") as stream:
            start = stream.read(5)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; export {what} as an mbox file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror})") from None
    if start and start != b"From ":
        raise UsageError(f"{path}: not an mbox file (it must start with a 'From ' line); "
                         "export the inbox in mbox format")
    box = mailbox.mbox(path, create=False)
    try:
        return [cast(EmailMessage, email.message_from_bytes(box.get_bytes(key), policy=email.policy.default))
                for key in box.iterkeys()]
    finally:
        box.close()


def sent_at(message: EmailMessage) -> datetime | None:
    """When a message was sent (its Date), unless missing, unreadable or in the future."""
    try:
        sent = email.utils.parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    if sent.tzinfo is None or sent > datetime.now(timezone.utc):
        return None
    return sent
