"""The embedded default: every message goes into a local mbox file, nothing leaves the machine.

`output/issue-30/outbox.mbox` opens in any mail program (Thunderbird, mutt,
Apple Mail import). An outbox send is a rehearsal (`info.rehearsal`): it never
counts as the issue having been sent to anyone.
"""

from __future__ import annotations

import mailbox
import time
from pathlib import Path

from ..config import Settings
from ..errors import ProviderError
from ..mime import UnusableAddress, build_message
from . import info
from .base import Batch, DeliveryResult, Status

INFO = info.OUTBOX


class OutboxProvider:
    """Appends one message per recipient to an mbox file, locked while a batch is written."""

    info = INFO
    concurrency = 1   # one mailbox file, written in order

    def __init__(self, settings: Settings, path: Path):
        self._settings = settings
        self.path = Path(path)
        self._box: mailbox.mbox | None = None   # kept open: opening scans the whole file

    def send(self, batch: Batch) -> list[DeliveryResult]:
        settings = self._settings
        results: list[DeliveryResult] = []
        messages: list[mailbox.mboxMessage] = []
        for envelope in batch.envelopes:
            try:
                message = build_message(batch.issue, envelope, sender=settings.sender, links=settings.links)
            except UnusableAddress as error:
                results.append(DeliveryResult(envelope.email, Status.REJECTED, error=str(error)))
                continue
            # mbox files use "\n" line ends; the message itself is built for SMTP ("\r\n")
            entry = mailbox.mboxMessage(message.as_bytes(policy=message.policy.clone(linesep="\n")))
            entry.set_from(settings.sender.from_email, time.gmtime())
            messages.append(entry)
            results.append(DeliveryResult(envelope.email, Status.ACCEPTED, message_id=message["Message-ID"]))
        if messages:
            self._append(messages)
        return results

    def prepare(self, batch: Batch, body: object = None) -> None:
        pass   # each message is built as it goes

    def close(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            box.close()

    def _append(self, messages: list[mailbox.mboxMessage]) -> None:
        try:
            if self._box is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._box = mailbox.mbox(self.path, create=True)
            box = self._box
            box.lock()
            try:
                for message in messages:
                    box.add(message)  # appended at the current end of the file
                box.flush()
            finally:
                box.unlock()
        except (OSError, mailbox.Error) as error:
            raise ProviderError(f"cannot write the outbox {self.path}: {error}") from None
