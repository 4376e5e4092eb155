"""The send loop: record before you send, so a crash never skips anyone and never mails anyone twice.

For one issue and one audience:

1. the audience is frozen into `pending` ledger rows (existing rows are never touched);
2. each batch is marked `in_flight` and committed, then handed to the provider;
3. the provider's answer is committed at once: accepted, rejected, refused, failed or unknown.

A resume sends only to rows that are not accepted, rejected or refused; rows a dead process
left `in_flight` become `unknown` and are resent only when asked (`resend_unknown`).
Nobody accepted is ever sent to again: the ledger refuses to change an accepted row.
Retries live in retry.py (one loop for every send), the ledger's side of a run in record.py.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Callable, Container, Sequence

from ..audience import Recipient
from ..config import Settings
from ..checks.gate import GateDecision
from ..errors import ProviderConfigError, TransientProviderError
from ..ledger import ACCEPTED, CRASH_NOTE, FAILED, PENDING, SKIPPED, UNKNOWN, Outcome, new_delivery_ids
from ..personalize import Envelope, envelope_for, recipient_token
from ..providers import batches
from ..providers.base import Batch, DeliveryResult, Provider
from ..render import RenderedIssue
from .plan import SendOptions, batch_size_for, check_merge_fields, kind_of
from .record import Left, RunRecord, send_lock
from .retry import Answer, Retries, RetryPolicy, deliver_with_retries, outcome_of
from .pipeline import LedgerDesk, Pipeline
from .stop import StopRequested, StopSignal

@dataclass(frozen=True)
class Progress:
    total: int                        # recipients this run tries
    done: int                         # recipients with an answer this run
    accepted: int
    not_accepted: int
    note: str = ""                    # e.g. "rate limited: waiting 12 s"


@dataclass(frozen=True)
class SendReport:
    issue: int
    kind: str
    provider: str
    run_id: int
    outcome: str                      # completed | interrupted | paused | stopped
    message: str
    counts: dict[str, int]            # ledger totals for the issue after this run
    attempted: int                    # recipients tried this run
    accepted: int                     # accepted this run
    unknown: tuple[str, ...]          # every address whose delivery is unknown
    recovered: tuple[str, ...] = ()   # left in flight by an earlier run, now unknown
    left: tuple[Left, ...] = ()       # failed, unknown and rejected rows of the issue, by reason
    signal_number: int = 0            # the signal (SIGINT, SIGTERM) that interrupted the run, if one did


def send_issue(
    connection: sqlite3.Connection,
    issue: RenderedIssue,
    recipients: Sequence[Recipient],
    provider: Provider,
    settings: Settings,
    options: SendOptions = SendOptions(),
    *,
    gate: GateDecision | None = None,
    policy: RetryPolicy = RetryPolicy(),
    stop: StopSignal | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SendReport:
    """Send `issue` to `recipients` (an audience already deduplicated and minus suppressions).

    `gate` is the preflight decision (checks.gate): a refused send raises ChecksFailed
    before anything is recorded; a forced one is recorded as forced, with what it overrode.
    """
    retries = Retries(policy, stop or StopSignal(), sleep, rng or random.Random())
    if gate is not None:
        gate.enforce()
    check_merge_fields(issue, recipients)
    with send_lock(connection), retries.stop.on_interrupt():
        return _run(connection, issue, recipients, provider, settings, options, retries,
                    Tally(on_progress or (lambda progress: None)), gate.forced_over if gate else "")


def _run(connection: sqlite3.Connection, issue: RenderedIssue, recipients: Sequence[Recipient],
         provider: Provider, settings: Settings, options: SendOptions, retries: Retries, tally: "Tally",
         forced_over: str) -> SendReport:
    size = batch_size_for(provider.info, options.batch_size)
    kind = kind_of(provider.info, options)
    start = RunRecord.start(connection, issue.number, kind, provider.info.name, options, recipients, forced_over,
                            token_of=lambda email: recipient_token(email, settings.token_secret))
    record = start.record
    tally.total = len(start.todo)
    tally.report()
    try:
        outcome, message = _BatchLoop(record, issue, provider, settings, retries, tally,
                                      options.rerun).run(start.todo, size)
    except BaseException as error:
        record.crashed(error)
        raise
    record.finish(outcome, message)
    return SendReport(
        issue=issue.number, kind=kind, provider=provider.info.name, run_id=record.run_id,
        outcome=outcome, message=message, counts=record.counts(), attempted=tally.done,
        accepted=tally.accepted, unknown=record.unknown(), recovered=tuple(d.email for d in start.recovered),
        left=record.left(), signal_number=retries.stop.signal_number,
    )


@dataclass
class Tally:
    """This run's counters, and where each change is reported (the progress bar)."""

    on_progress: Callable[[Progress], None]
    total: int = 0
    done: int = 0
    accepted: int = 0
    not_accepted: int = 0

    def add(self, outcomes: Sequence[Outcome]) -> None:
        self.done += len(outcomes)
        accepted = sum(1 for outcome in outcomes if outcome.status == ACCEPTED)
        self.accepted += accepted
        self.not_accepted += len(outcomes) - accepted
        self.report()

    def report(self, note: str = "") -> None:
        self.on_progress(Progress(self.total, self.done, self.accepted, self.not_accepted, note))


@dataclass(frozen=True)
class _BatchLoop:
    """The batches of one run, in order; the collaborators only (the counters are in `tally`)."""

    record: RunRecord
    issue: RenderedIssue
    provider: Provider
    settings: Settings
    retries: Retries
    tally: Tally
    rerun: str = ""                   # the command that resumes this send, every option repeated

    def run(self, todo: Sequence[Recipient], size: int) -> tuple[str, str]:
        """Send every batch; returns the run's (outcome, message)."""
        number, pause_after = self.issue.number, self.retries.policy.pause_after
        chunks = list(batches(todo, size))
        if not self.provider.info.one_at_a_time and self.provider.concurrency > 1:
            return _Concurrent(self).run(chunks)
        failed_in_a_row, last_error = 0, ""
        try:
            for index, chunk in enumerate(chunks, start=1):
                if self.retries.stop.requested:
                    return "interrupted", self._where(index, len(chunks))
                gone = self.record.ledger_gone()
                if gone:
                    return "stopped", gone
                chunk = self._without_new_suppressions(chunk)
                if not chunk:
                    continue
                try:
                    accepted, error = self.send_batch(chunk, f"{number}-{self.record.run_id}-{index}")
                except StopRequested:   # asked between two messages of a batch (SMTP)
                    return "interrupted", self._where(index, len(chunks), during=True)
                failed_in_a_row = 0 if accepted else failed_in_a_row + 1
                last_error = error or last_error
                if failed_in_a_row >= pause_after and index < len(chunks):
                    return "paused", (f"paused: {failed_in_a_row} batches in a row had nothing accepted "
                                      f"(last error: {last_error or 'see campaign status'}). "
                                      + self._where(index + 1, len(chunks)))
        except ProviderConfigError as error:
            return "stopped", self._stopped(error)
        except KeyboardInterrupt:
            return "interrupted", ("interrupted at once (second Ctrl-C or SIGTERM): the batch with the provider "
                                   "is recorded as unknown. " + self._resume_hint())
        return "completed", ""

    def send_batch(self, recipients: Sequence[Recipient], batch_id: str) -> tuple[int, str]:
        """Write ahead, call the provider (with retries), record; returns (accepted count, last error).

        The write-ahead follows the provider's own step: the whole batch for SendGrid (one request,
        one row), each message for SMTP (ProviderInfo.one_at_a_time). Each envelope carries a fresh
        delivery id, in the write-ahead; a retry after a transient error (not sent) keeps it.
        """
        per_message = self.provider.info.one_at_a_time
        handed_over: set[str] = set() if per_message else {r.email for r in recipients}   # may have gone out
        answered: set[str] = set()                                        # already recorded

        def mark_sending(envelope: Envelope) -> None:
            if self.retries.stop.requested:   # the message before this one was the one in flight
                raise StopRequested
            self.record.mark_in_flight([envelope], batch_id)
            handed_over.add(envelope.email)

        def record_answer(result: DeliveryResult) -> None:
            self._record([outcome_of(result)])
            answered.add(result.email)
            if result.bounced:
                self.record.suppress_bounced(result.email, result.error)

        batch = self.batch(recipients, batch_id, on_sending=mark_sending if per_message else None,
                           on_result=record_answer)
        envelopes, emails = batch.envelopes, [envelope.email for envelope in batch.envelopes]
        whole = None if per_message else batch_id   # a request written ahead whole: its answers close it
        if not per_message:
            self.provider.prepare(batch)   # built before the write-ahead: a build error leaves them pending
            self.record.write_batch_ahead(envelopes, batch_id)
        try:
            answer = deliver_with_retries(self.provider, batch, self.retries, on_wait=self._waiting(emails, whole),
                                          before_retry=None if per_message else
                                          lambda: self.record.write_batch_ahead(envelopes, batch_id))
        except BaseException as error:  # Ctrl-C twice or a bug mid-request: it may have gone out
            note = f"the send stopped during the provider call ({type(error).__name__}); it may or may not " \
                   "have been delivered; resend only with --resend-unknown"
            self._record([Outcome(email, UNKNOWN, error=note) for email in emails
                          if email in handed_over and email not in answered], whole)
            raise
        return self.settle(answer, answered, whole)

    def batch(self, recipients: Sequence[Recipient], batch_id: str, **callbacks: Any) -> Batch:
        """One provider call's batch; each envelope gets a fresh delivery id, stored with its write-ahead."""
        settings, number = self.settings, self.issue.number
        envelopes = [envelope_for(recipient, settings, number, delivery_id) for recipient, delivery_id
                     in zip(recipients, new_delivery_ids(len(recipients)))]
        return Batch(issue=self.issue, envelopes=envelopes, batch_id=batch_id,
                     lists=tuple(sorted({name for envelope in envelopes for name in envelope.lists})),
                     sandbox=self.record.kind == "sandbox", **callbacks)

    def settle(self, answer: Answer, answered: Container[str] = (), whole: str | None = None) -> tuple[int, str]:
        """Record a batch's answer (what on_result did not already); raise its halt after recording.
        `whole`: the batch id of a request written ahead whole, which this answer closes."""
        unanswered = [outcome for outcome in answer.outcomes if outcome.email not in answered]
        if answer.halt is not None:   # a configuration fault: nothing of these went out, they stay pending
            self.record.record([replace(outcome, status=PENDING, error=f"not sent: {answer.halt}")
                                for outcome in unanswered], whole)
            raise answer.halt
        self._record(unanswered, whole)
        return answer.accepted, answer.last_error

    def _without_new_suppressions(self, chunk: Sequence[Recipient]) -> list[Recipient]:
        """The batch minus whoever was suppressed since the send began (their rows end `skipped`)."""
        skipped = self.record.suppressed_since([recipient.email for recipient in chunk])
        if skipped:
            self.skip(skipped)
        return [recipient for recipient in chunk if recipient.email not in skipped]

    def skip(self, reasons: dict[str, str]) -> None:
        """These rows end `skipped` ({email: why}), and count as handled this run."""
        self.record.mark_skipped(reasons)
        self.tally.add([Outcome(email, SKIPPED, error=why) for email, why in reasons.items()])

    def _waiting(self, emails: list[str], whole: str | None) -> Callable[[TransientProviderError, float, int], None]:
        def waiting(error: TransientProviderError, delay: float, attempt: int) -> None:
            # It certainly did not go out: say so during the wait, so a crash now loses nothing.
            self.record.record([Outcome(email, FAILED, error=f"retrying: {error}") for email in emails], whole)
            self.tally.report(f"{error}: retrying in {delay:.0f} s (attempt {attempt + 1})")
        return waiting

    def _record(self, outcomes: list[Outcome], whole: str | None = None) -> None:
        self.record.record(outcomes, whole)
        self.tally.add(outcomes)

    def _where(self, next_batch: int, total_batches: int, during: bool = False) -> str:
        done, total = self.tally.done, self.tally.total
        where = "during" if during else "before"
        return (f"The send stopped {where} batch {next_batch} of {total_batches}: {done:,} of {total:,} "
                f"recipients handled this run, {total - done:,} still to send. " + self._resume_hint())

    def _stopped(self, error: ProviderConfigError) -> str:
        """One line: the fault (host, setting, reply), what this run did, and what to do."""
        pending = self.record.counts()[PENDING]
        return (f"{error}. Nothing more was sent: {self.tally.accepted:,} accepted this run, {pending:,} "
                f"still pending; fix it and run the same command again")

    def _resume_hint(self) -> str:
        if self.rerun:
            return f"Resume with `{self.rerun}`."
        kind = self.record.kind
        flags = " --provider outbox" if kind == "outbox" else " --sandbox" if kind == "sandbox" else ""
        return f"Resume with `campaign send --issue {self.issue.number}{flags}`."


class _Concurrent:
    """The batches of one run with up to `provider.concurrency` in flight (SendGrid); see pipeline.py.

    Each batch is built on this thread; a worker writes it ahead (committed), posts it and
    records the answer, all through the one LedgerDesk, so this thread builds the next batch
    meanwhile. What an answer means for the send (a pause, a halt) is decided here, in order.
    """

    def __init__(self, loop: _BatchLoop):
        self.loop = loop
        self.failed_in_a_row, self.last_error, self.paused = 0, "", False
        self.halt: ProviderConfigError | None = None
        self.replaced = False              # the ledger file was deleted or replaced: stop, then rescue
        self.total = 0
        self.with_provider: set[str] = set()   # batch ids written ahead and not yet recorded (desk's lock)
        self.held_back = 0                     # the first batch built but not sent, the send having stopped
        self.reader: sqlite3.Connection | None = None   # reads suppressions beside the writers (WAL)
        self.pipeline: Pipeline[Batch, Answer] = Pipeline(
            loop.provider.concurrency, self.start, self.deliver, self.finish, self.keep_going, self.abandon)

    def run(self, chunks: list[list[Recipient]]) -> tuple[str, str]:
        loop, self.total = self.loop, len(chunks)
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
        kept = [recipient for recipient in recipients if recipient.email not in skipped]
        if not kept:
            return None
        batch = loop.batch(kept, f"{loop.issue.number}-{loop.record.run_id}-{index}")
        loop.provider.prepare(batch)
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
