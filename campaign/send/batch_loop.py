"""The batches of one run, one after the other: write ahead, post, record (see loop.py).

`BatchLoop` sends a run's batches in order, and holds what every way of sending them shares:
the envelopes of a batch, what an answer means, the run's counters (`Tally`) and its messages.
concurrent.py sends the same batches with several in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Container, Sequence

from ..audience import Recipient
from ..config import Settings
from ..errors import ProviderConfigError, TransientProviderError
from ..ledger import ACCEPTED, FAILED, PENDING, SKIPPED, UNKNOWN, Outcome
from ..personalize import Envelope
from ..providers.base import Batch, DeliveryResult, Provider
from ..rendered import RenderedIssue
from .builder import SecondProcess, make_batch
from .record import RunRecord
from .retry import Answer, Retries, deliver_with_retries, outcome_of
from .stop import StopRequested


@dataclass(frozen=True)
class Progress:
    total: int                        # recipients this run tries
    done: int                         # recipients with an answer this run
    accepted: int
    not_accepted: int
    note: str = ""                    # e.g. "rate limited: waiting 12 s"


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
class BatchLoop:
    """The batches of one run, in order; the collaborators only (the counters are in `tally`)."""

    record: RunRecord
    issue: RenderedIssue
    provider: Provider
    settings: Settings
    retries: Retries
    tally: Tally
    rerun: str = ""                   # the command that resumes this send, every option repeated
    builder: SecondProcess | None = None   # builds the batches of a large concurrent send (builder.py)

    @property
    def concurrent(self) -> bool:
        """Whether the provider may have several batches in flight (concurrent.py sends them)."""
        return self.provider.concurrency > 1

    def run(self, chunks: Sequence[Sequence[Recipient]]) -> tuple[str, str]:
        """Send every batch, one after the other; returns the run's (outcome, message)."""
        pause_after = self.retries.policy.pause_after
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
                    accepted, error = self.send_batch(chunk, self.batch_id(index))
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
            self.record_one(result)
            answered.add(result.email)

        def record_retrying(envelope: Envelope, reason: str) -> None:
            self.record_retrying(envelope, reason)
            handed_over.discard(envelope.email)   # not with the server while it waits: written ahead again after

        batch = self.batch(recipients, batch_id, on_sending=mark_sending if per_message else None,
                           on_result=record_answer, on_retrying=record_retrying, wait=self.retries.wait)
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

    def record_one(self, result: DeliveryResult) -> None:
        """One message's answer (SMTP), recorded at once; a mailbox that does not exist is suppressed."""
        self._record([outcome_of(result)])
        if result.bounced:
            self.record.suppress_bounced(result.email, result.error)

    def record_retrying(self, envelope: Envelope, reason: str) -> None:
        """A message the server refused for now (SMTP 4xx), to be tried again after a wait: `failed`
        meanwhile, so a stop or a crash during the wait leaves it to a plain resume (not counted yet)."""
        self.record.record([Outcome(envelope.email, FAILED, error=f"retrying: {reason}")])

    def batch_id(self, index: int) -> str:
        """The id of the run's `index`th batch (from 1): issue, run, index."""
        return f"{self.issue.number}-{self.record.run_id}-{index}"

    def batch(self, recipients: Sequence[Recipient], batch_id: str, **callbacks: Any) -> Batch:
        """One provider call's batch; each envelope gets a fresh delivery id, stored with its write-ahead."""
        return make_batch(recipients, self.issue, self.settings, batch_id, self.record.kind == "sandbox", **callbacks)

    def settle(self, answer: Answer, answered: Container[str] = (), whole: str | None = None,
               fold_later: bool = False) -> tuple[int, str]:
        """Record a batch's answer (what on_result did not already); raise its halt after recording.
        `whole`: the batch id of a request written ahead whole, which this answer closes (`fold_later`:
        see RunRecord.record)."""
        unanswered = [outcome for outcome in answer.outcomes if outcome.email not in answered]
        if answer.halt is not None:   # a configuration fault: nothing of these went out, they stay pending
            self.record.record([replace(outcome, status=PENDING, error=f"not sent: {answer.halt}")
                                for outcome in unanswered], whole)
            raise answer.halt
        self._record(unanswered, whole, fold_later)
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

    def _record(self, outcomes: list[Outcome], whole: str | None = None, fold_later: bool = False) -> None:
        self.record.record(outcomes, whole, fold_later)
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
