"""The batches of one run with up to `provider.concurrency` in flight: see pipeline.py.

The send loop (loop.py) hands a run here when its provider may have several batches in flight:
SendGrid's requests (`[sendgrid] concurrency`), or SMTP's connections (`[smtp] connections`), each
of which sends its batch message by message, every message written ahead and answered through the desk.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from ..audience import Recipient
from ..errors import ProviderConfigError
from ..ledger import CRASH_NOTE, UNKNOWN, Outcome
from ..personalize import Envelope
from ..providers.base import Batch, DeliveryResult
from .batch_loop import BatchLoop
from .builder import AHEAD
from .pipeline import LedgerDesk, Pipeline
from .retry import Answer, deliver_with_retries
from .stop import StopRequested


class Concurrent:
    """The batches of one run with up to `provider.concurrency` in flight; see pipeline.py.

    Each batch is built on this thread (or, for a large send, taken from the builder process:
    builder.py); a worker takes it, looks up its people in the suppressions again, writes it
    ahead (committed), posts it and records the answer, all through the one LedgerDesk, so this
    thread builds the next batch meanwhile. A provider that sends message by message (SMTP) is
    written ahead and answered per message instead. What an answer means for the send (a pause,
    a halt) is decided by its worker under the desk's lock, in the order the answers come.
    """

    def __init__(self, loop: BatchLoop):
        self.loop = loop
        self.failed_in_a_row, self.last_error, self.paused = 0, "", False
        self.halt: ProviderConfigError | None = None
        self.replaced = False              # the ledger file was deleted or replaced: stop, then rescue
        self.total = 0
        # batch id -> its addresses written ahead and not yet answered (under the desk's lock)
        self.with_provider: dict[str, list[str]] = {}
        self.held_back = 0                     # the first batch built but not sent, the send having stopped
        self.cut_short: set[str] = set()       # batches a stop cut between two messages (SMTP)
        self.reader: sqlite3.Connection | None = None   # reads suppressions beside the writers (WAL)
        self._reading = threading.Lock()                  # one thread at a time on it
        self.builder = loop.builder
        self.chunks: list[list[Recipient]] = []
        self.pipeline: Pipeline[Batch, Answer] = Pipeline(
            loop.provider.concurrency, self.start, self.recheck, self.deliver, self.finish, self.keep_going,
            self.abandon, meanwhile=loop.record.fold)

    def run(self, chunks: list[list[Recipient]]) -> tuple[str, str]:
        loop, self.total, self.chunks = self.loop, len(chunks), chunks
        try:
            with loop.record.reader() as self.reader:
                stopped_at = self.pipeline.run(chunks)
        except KeyboardInterrupt:
            return "interrupted", ("interrupted at once (second Ctrl-C or SIGTERM): the batches with the provider "
                                   "are recorded as unknown. " + loop._resume_hint())
        if self.replaced:   # the batches in flight are recorded first, so the rescued copy holds them
            return "stopped", loop.record.ledger_gone()
        if self.halt is not None:
            return "stopped", loop._stopped(self.halt)
        if self.paused and stopped_at:
            return "paused", (f"paused: {self.failed_in_a_row} batches in a row had nothing accepted "
                              f"(last error: {self.last_error or 'see campaign status'}). "
                              + loop._where(stopped_at, self.total))
        if stopped_at or self.held_back:
            return "interrupted", loop._where(min(at for at in (stopped_at, self.held_back) if at), self.total,
                                              during=bool(self.cut_short))
        return "completed", ""

    def keep_going(self) -> bool:
        ledger_file = self.loop.record.ledger_file
        self.replaced = self.replaced or bool(ledger_file and ledger_file.change())
        return not (self.loop.retries.stop.requested or self.halt is not None or self.paused or self.replaced)

    def start(self, index: int, chunk: object) -> Batch | None:
        """Build the batch on this thread: a build error leaves its recipients pending.

        Suppressions are read through a second connection, so this thread never waits for a worker's
        writes to read them; marking the few found skipped is a write, made through the desk.
        """
        recipients = list(chunk)   # type: ignore[call-overload]
        skipped = self._skip_suppressed([recipient.email for recipient in recipients])
        if skipped and self.builder is not None:
            self.builder.discard(index)   # built here instead, without them
        kept = [recipient for recipient in recipients if recipient.email not in skipped]
        if not kept:
            return None
        built = self._built_elsewhere(index) if self.builder is not None and not skipped else None
        return built if built is not None else self._built_here(kept, index)

    def recheck(self, index: int, chunk: object, batch: Batch) -> Batch | None:
        """In the worker that took it, the batch as it goes now: it was built while all were busy, so anyone
        suppressed since (an unsubscribe meanwhile) is skipped and the batch built again without them."""
        emails = {envelope.email for envelope in batch.envelopes}
        skipped = self._skip_suppressed(list(emails))
        if not skipped:
            return batch
        recipients: list[Recipient] = list(chunk)   # type: ignore[call-overload]
        kept = [recipient for recipient in recipients if recipient.email in emails and recipient.email not in skipped]
        return self._built_here(kept, index) if kept else None

    def _skip_suppressed(self, emails: list[str]) -> dict[str, str]:
        """{email: why} of these now suppressed, marked skipped."""
        loop, skipped = self.loop, {}
        if self.reader is None:   # an in-memory ledger has no second connection: read through the desk
            self.pipeline.desk.call(lambda: skipped.update(loop.record.suppressed_since(emails)))
        else:
            with self._reading:
                skipped = loop.record.suppressed_since(emails, self.reader)
        if skipped:
            self.pipeline.desk.call(lambda: loop.skip(skipped))
        return skipped

    def _built_here(self, kept: list[Recipient], index: int) -> Batch:
        batch = self.loop.batch(kept, self.loop.batch_id(index))
        self.loop.provider.prepare(batch)
        return batch

    def _built_elsewhere(self, index: int) -> Batch | None:
        """Batch `index` from the builder process, which meanwhile builds the next few; None once that
        process is gone (killed, out of memory): this thread builds the rest itself."""
        builder = self.builder
        assert builder is not None
        try:
            for ahead in range(index, min(index + AHEAD, len(self.chunks)) + 1):
                builder.submit(ahead, self.chunks[ahead - 1])
            batch, body = builder.batch(index, self.loop.batch_id(index))
        except BrokenProcessPool:
            builder.close()
            self.builder = None
            return None
        self.loop.provider.prepare(batch, body)
        return batch

    def deliver(self, batch: Batch, desk: LedgerDesk) -> Answer:
        """In a worker thread: write ahead, the provider call and its retries, record the answer."""
        if self.loop.provider.info.one_at_a_time:
            return self._message_by_message(batch, desk)
        loop, emails = self.loop, [envelope.email for envelope in batch.envelopes]
        written: list[bool] = []
        desk.call(lambda: written.append(self._write_ahead(batch)))
        if not written[0]:
            return Answer((), attempts=0)
        waiting = loop._waiting(emails, batch.batch_id)
        answer = deliver_with_retries(
            loop.provider, batch, loop.retries,
            on_wait=lambda error, delay, attempt: desk.call(lambda: waiting(error, delay, attempt)),
            before_retry=lambda: desk.call(lambda: loop.record.write_batch_ahead(batch.envelopes, batch.batch_id)))
        desk.call(lambda: self._record(batch, answer))
        desk.more_to_do()   # its answer, kept on the batch's row, written on its people's rows
        return answer

    def _message_by_message(self, batch: Batch, desk: LedgerDesk) -> Answer:
        """In a worker thread, on its own connection (SMTP): each message written ahead just before it
        goes and its answer recorded at once, as BatchLoop.send_batch does, through the desk."""
        loop, batch_id = self.loop, batch.batch_id
        answered: set[str] = set()

        def sending(envelope: Envelope) -> None:
            if self._stopping():   # asked since this worker's last message: the rest stay pending
                raise StopRequested
            desk.call(lambda: self._hand_over(envelope, batch_id))

        def answering(result: DeliveryResult) -> None:
            desk.call(lambda: self._answered(result, batch_id))
            answered.add(result.email)

        def retrying(envelope: Envelope, reason: str) -> None:
            desk.call(lambda: self._retrying(envelope, reason, batch_id))

        each = replace(batch, on_sending=sending, on_result=answering, on_retrying=retrying, wait=loop.retries.wait)
        emails = [envelope.email for envelope in batch.envelopes]
        waiting = loop._waiting(emails, None)
        try:
            answer = deliver_with_retries(loop.provider, each, loop.retries, on_wait=lambda error, delay, attempt:
                                          desk.call(lambda: waiting(error, delay, attempt)))
        except StopRequested:
            self.cut_short.add(batch_id)
            return Answer((), attempts=0)
        desk.call(lambda: self._record(batch, answer, answered))
        return answer

    def _stopping(self) -> bool:
        return self.loop.retries.stop.requested or self.halt is not None

    def _hand_over(self, envelope: Envelope, batch_id: str) -> None:
        self.loop.record.mark_in_flight([envelope], batch_id)
        self.with_provider.setdefault(batch_id, []).append(envelope.email)

    def _answered(self, result: DeliveryResult, batch_id: str) -> None:
        self.loop.record_one(result)
        self._back_from_provider(result.email, batch_id)

    def _retrying(self, envelope: Envelope, reason: str, batch_id: str) -> None:
        self.loop.record_retrying(envelope, reason)
        self._back_from_provider(envelope.email, batch_id)   # waiting: a second Ctrl-C leaves it failed

    def _back_from_provider(self, email: str, batch_id: str) -> None:
        handed_over = self.with_provider.get(batch_id, [])
        if email in handed_over:
            handed_over.remove(email)

    def _write_ahead(self, batch: Batch) -> bool:
        """Mark the batch in flight, unless the send was stopped since it was built (it stays pending)."""
        if self._stopping():
            return False
        self.loop.record.write_batch_ahead(batch.envelopes, batch.batch_id)
        self.with_provider[batch.batch_id] = [envelope.email for envelope in batch.envelopes]
        return True

    def _record(self, batch: Batch, answer: Answer, answered: set[str] | None = None) -> None:
        """The batch's answer; `answered`: its messages already recorded one by one (SMTP)."""
        self.with_provider.pop(batch.batch_id, None)
        if answer.halt is not None:   # the other workers stop before their next message
            self.halt = answer.halt
        try:
            self.loop.settle(answer, answered or (), whole=None if answered is not None else batch.batch_id,
                             fold_later=True)
        except ProviderConfigError:   # recorded pending; `finish` stops the send
            pass

    def finish(self, index: int, batch: Batch, answer: Answer) -> None:
        """In the batch's worker, under the desk's lock (one at a time, in the order answered)."""
        if not answer.attempts:   # stopped before it was written ahead, or between two of its messages
            self.held_back = min(self.held_back or index, index)
            return
        if answer.halt is not None:   # the batches still in flight are recorded by their workers
            self.halt = answer.halt
            return
        self.failed_in_a_row = 0 if answer.accepted else self.failed_in_a_row + 1
        self.last_error = answer.last_error or self.last_error
        self.paused = self.failed_in_a_row >= self.loop.retries.policy.pause_after

    def abandon(self, batches: list[Batch]) -> None:
        """Under the desk's lock, after which no worker writes: what was written ahead may have gone out."""
        per_message = self.loop.provider.info.one_at_a_time
        for batch in batches:
            emails = self.with_provider.get(batch.batch_id)
            if emails:
                self.loop._record([Outcome(email, UNKNOWN, error=CRASH_NOTE) for email in emails],
                                  None if per_message else batch.batch_id)
