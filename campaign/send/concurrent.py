"""The batches of one run with up to `provider.concurrency` in flight (SendGrid): see pipeline.py.

The send loop (loop.py) hands a run here when its provider may have several batches in flight.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures.process import BrokenProcessPool

from ..audience import Recipient
from ..errors import ProviderConfigError
from ..ledger import CRASH_NOTE, UNKNOWN, Outcome
from ..providers.base import Batch
from .batch_loop import BatchLoop
from .builder import AHEAD
from .pipeline import LedgerDesk, Pipeline
from .retry import Answer, deliver_with_retries


class Concurrent:
    """The batches of one run with up to `provider.concurrency` in flight (SendGrid); see pipeline.py.

    Each batch is built on this thread (or, for a large send, taken from the builder process:
    builder.py); a worker writes it ahead (committed), posts it and records the answer, all
    through the one LedgerDesk, so this thread builds the next batch meanwhile. What an answer
    means for the send (a pause, a halt) is decided here, in order.
    """

    def __init__(self, loop: BatchLoop):
        self.loop = loop
        self.failed_in_a_row, self.last_error, self.paused = 0, "", False
        self.halt: ProviderConfigError | None = None
        self.replaced = False              # the ledger file was deleted or replaced: stop, then rescue
        self.total = 0
        self.with_provider: set[str] = set()   # batch ids written ahead and not yet recorded (desk's lock)
        self.held_back = 0                     # the first batch built but not sent, the send having stopped
        self.reader: sqlite3.Connection | None = None   # reads suppressions beside the writers (WAL)
        self.builder = loop.builder
        self.chunks: list[list[Recipient]] = []
        self.pipeline: Pipeline[Batch, Answer] = Pipeline(
            loop.provider.concurrency, self.start, self.deliver, self.finish, self.keep_going, self.abandon)

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
            return "interrupted", loop._where(min(at for at in (stopped_at, self.held_back) if at), self.total)
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
        loop, recipients = self.loop, list(chunk)   # type: ignore[call-overload]
        emails, skipped = [r.email for r in recipients], {}
        if self.reader is None:   # an in-memory ledger has no second connection: read through the desk
            self.pipeline.desk.call(lambda: skipped.update(loop.record.suppressed_since(emails)))
        else:
            skipped = loop.record.suppressed_since(emails, self.reader)
        if skipped:
            self.pipeline.desk.call(lambda: loop.skip(skipped))
            if self.builder is not None:
                self.builder.discard(index)   # built here instead, without them
        kept = [recipient for recipient in recipients if recipient.email not in skipped]
        if not kept:
            return None
        built = self._built_elsewhere(index) if self.builder is not None and not skipped else None
        if built is not None:
            return built
        batch = loop.batch(kept, loop.batch_id(index))
        loop.provider.prepare(batch)
        return batch

    def _built_elsewhere(self, index: int) -> Batch | None:
        """Batch `index` from the builder process, which meanwhile builds the next few; None once that
        process is gone (killed, out of memory): this thread builds the rest itself."""
        builder = self.builder
        assert builder is not None
        try:
            for ahead in range(index, min(index + AHEAD, len(self.chunks)) + 1):
                builder.submit(ahead, self.chunks[ahead - 1], self.loop.batch_id(ahead))
            batch, body = builder.batch(index)
        except BrokenProcessPool:
            builder.close()
            self.builder = None
            return None
        self.loop.provider.prepare(batch, body)
        return batch

    def deliver(self, batch: Batch, desk: LedgerDesk) -> Answer:
        """In a worker thread: write ahead, the provider call and its retries, record the answer."""
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
        return answer

    def _write_ahead(self, batch: Batch) -> bool:
        """Mark the batch in flight, unless the send was stopped since it was built (it stays pending)."""
        if self.loop.retries.stop.requested or self.halt is not None:
            return False
        self.loop.record.write_batch_ahead(batch.envelopes, batch.batch_id)
        self.with_provider.add(batch.batch_id)
        return True

    def _record(self, batch: Batch, answer: Answer) -> None:
        self.with_provider.discard(batch.batch_id)
        try:
            self.loop.settle(answer, whole=batch.batch_id)
        except ProviderConfigError:   # recorded pending; `finish` stops the send
            pass

    def finish(self, index: int, batch: Batch, answer: Answer) -> None:
        if not answer.attempts:   # stopped before it was written ahead: it stays pending, nothing to count
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
        for batch in batches:
            if batch.batch_id in self.with_provider:
                self.loop._record([Outcome(e.email, UNKNOWN, error=CRASH_NOTE) for e in batch.envelopes], batch.batch_id)
