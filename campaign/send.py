"""The send loop: record before you send, so a crash never skips anyone and never mails anyone twice.

For one issue and one audience:

1. the audience is frozen into `pending` ledger rows (existing rows are never touched);
2. each batch is marked `in_flight` and committed, then handed to the provider;
3. the provider's answer is committed at once: accepted, rejected, failed or unknown.

A resume sends only to rows that are not accepted or rejected; rows a dead process
left `in_flight` become `unknown` and are resent only when asked (`resend_unknown`).
Nobody accepted is ever sent to again: the ledger refuses to change an accepted row.

Retries live here, not in the providers: 429 waits as the provider says (plus jitter),
other transient failures back off exponentially with full jitter, within a bounded
number of attempts and a bounded total wait. Every sleep goes through `sleep`, so
tests run the real loop against real local servers without waiting.
"""

from __future__ import annotations

import fcntl
import random
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import ledger
from .audience import Recipient
from .errors import (ChecksFailed, ContentError, LedgerError, ProviderAuthError, ProviderError,
                     TransientProviderError, UsageError)
from .ledger import ACCEPTED, FAILED, PENDING, REJECTED, UNKNOWN, Outcome
from .personalize import SAMPLE_RECIPIENT, Envelope, MergeTemplate, envelope_for
from .providers import batches
from .providers.base import Batch, DeliveryResult, Provider, ProviderInfo
from .render import RenderedIssue

TEST_PREFIX = "[TEST] "

# The preflight gate (issue 6): called with the rendered issue before anything is sent.
# It raises ChecksFailed when the issue has errors; `force=True` records the override.
Gate = Callable[[RenderedIssue], None]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6             # provider calls per batch, first one included
    max_total_wait: float = 300.0     # seconds of backoff per batch, at most
    base_delay: float = 1.0           # first backoff ceiling for 5xx / refused
    max_delay: float = 60.0           # backoff ceiling
    rate_limit_jitter: float = 1.0    # added to a 429's wait, uniformly 0..this
    pause_after: int = 3              # consecutive batches with nothing accepted -> pause

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return max(0.0, retry_after) + rng.uniform(0, self.rate_limit_jitter)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class SendOptions:
    batch_size: int | None = None     # default and maximum: the provider's limit
    resend_unknown: bool = False
    retry_failed: bool = False        # only the failed, nobody pending
    sandbox: bool = False             # provider validates, delivers nothing: a rehearsal
    force: bool = False               # send although the preflight gate found errors
    restart: bool = False             # a rehearsal starts over (never a real send)
    retry_rejected: bool = False      # also those refused (a 400 batch refused whole: nothing of it was sent)

    def describe(self) -> str:
        flags = [("--resend-unknown", self.resend_unknown), ("--retry-failed", self.retry_failed),
                 ("--sandbox", self.sandbox), ("--force", self.force), ("--restart", self.restart),
                 ("--retry-rejected", self.retry_rejected)]
        words = [flag for flag, on in flags if on]
        if self.batch_size:
            words.append(f"--batch-size {self.batch_size}")
        return " ".join(words)

    def eligible(self) -> tuple[str, ...]:
        statuses = [FAILED] if self.retry_failed else [PENDING, FAILED]
        if self.resend_unknown:
            statuses.append(UNKNOWN)
        if self.retry_rejected:
            statuses.append(REJECTED)
        return tuple(statuses)


@dataclass(frozen=True)
class SendPlan:
    """What a send would do now: the numbers the summary shows before confirmation."""

    issue: int
    kind: str                         # real | outbox | sandbox (see ledger.KINDS)
    provider: str
    audience: int
    to_send: int
    accepted: int                     # already accepted earlier: never sent again
    rejected: int
    unknown: int                      # includes rows a dead process left in flight
    failed: int
    pending_elsewhere: int            # frozen earlier, no longer in the audience (removed, suppressed)
    batch_size: int


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

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"


class StopSignal:
    """Ctrl-C asks the loop to stop after recording the batch in flight; a second Ctrl-C stops now."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def sleep(self, seconds: float) -> None:
        """A backoff wait that a stop request cuts short."""
        self._event.wait(seconds)

    @contextmanager
    def on_interrupt(self) -> Iterator["StopSignal"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.request()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def kind_of(info: ProviderInfo, options: SendOptions) -> str:
    """The ledger kind a send records under: real deliveries, or one of the rehearsals."""
    if info.rehearsal:
        return "outbox"
    return "sandbox" if options.sandbox else ledger.REAL


def batch_size_for(info: ProviderInfo, requested: int | None) -> int:
    limit = info.max_batch_size
    if requested is None:
        return limit
    if requested < 1 or requested > limit:
        raise UsageError(f"--batch-size must be between 1 and {limit:,} for {info.name}")
    return requested


def plan_send(statuses: dict[str, str], issue: int, recipients: Sequence[Recipient], info: ProviderInfo,
              options: SendOptions) -> SendPlan:
    """The numbers for the summary, from the ledger's {email: status} for this kind; changes nothing."""
    kind = kind_of(info, options)
    if options.restart:
        if kind == ledger.REAL:
            raise UsageError("--restart starts a rehearsal over (outbox or --sandbox); "
                             "a real send resumes, it never restarts")
        statuses = {}
    eligible = set(options.eligible())
    in_audience = {recipient.email for recipient in recipients}
    to_send = sum(1 for r in recipients if statuses.get(r.email, PENDING) in eligible
                  or (options.resend_unknown and statuses.get(r.email) == ledger.IN_FLIGHT))
    tally = {status: 0 for status in ledger.STATUSES}
    for status in statuses.values():
        tally[status] += 1
    pending_elsewhere = sum(1 for email, status in statuses.items()
                            if status in (PENDING, FAILED) and email not in in_audience)
    return SendPlan(
        issue=issue, kind=kind, provider=info.name, audience=len(recipients),
        to_send=to_send, accepted=tally[ACCEPTED], rejected=tally[REJECTED],
        unknown=tally[UNKNOWN] + tally[ledger.IN_FLIGHT], failed=tally[FAILED],
        pending_elsewhere=pending_elsewhere, batch_size=batch_size_for(info, options.batch_size),
    )


BUILTIN_FIELDS = frozenset({"email", "name", "token", "unsubscribe_url", "view_url"})  # see merge_values


def check_merge_fields(issue: RenderedIssue, recipients: Sequence[Recipient]) -> None:
    """Every merge field the issue uses has a value for everyone, before anyone is sent anything."""
    needed = issue.field_names() - BUILTIN_FIELDS
    if not needed:
        return
    for recipient in recipients:
        missing = needed - recipient.fields.keys()
        if missing:
            name = sorted(missing)[0]
            raise ContentError(
                f"merge field [[{name}]] has no value for {recipient.email} (recipients line {recipient.line}): "
                f"add a '{name}' column to the recipients file or remove the field from the layout")


def send_issue(
    connection,
    issue: RenderedIssue,
    recipients: Sequence[Recipient],
    provider: Provider,
    settings,
    options: SendOptions = SendOptions(),
    *,
    gate: Gate | None = None,
    policy: RetryPolicy = RetryPolicy(),
    stop: StopSignal | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SendReport:
    """Send `issue` to `recipients` (an audience already deduplicated and minus suppressions)."""
    stop = stop or StopSignal()
    loop = _SendLoop(connection, issue, provider, options, policy, stop, sleep if sleep is not None else stop.sleep,
                     rng or random.Random(), on_progress or (lambda progress: None))
    findings = _run_gate(gate, issue, options.force)
    check_merge_fields(issue, recipients)
    with _send_lock(connection), stop.on_interrupt():
        return loop.run(recipients, settings, findings)


def _run_gate(gate: Gate | None, issue: RenderedIssue, force: bool) -> str:
    if gate is None:
        return ""
    try:
        gate(issue)
    except ChecksFailed as error:
        if not force:
            raise
        return str(error)
    return ""


@contextmanager
def _send_lock(connection) -> Iterator[None]:
    """One send at a time per ledger file; the OS drops the lock when a process dies."""
    path = next((Path(row[2]) for row in connection.execute("PRAGMA database_list") if row[1] == "main"), None)
    if path is None or not str(path):
        yield
        return
    with open(f"{path}.send-lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerError(f"another send is running on {path}; wait for it to finish") from None
        yield


@dataclass
class _SendLoop:
    connection: object
    issue: RenderedIssue
    provider: Provider
    options: SendOptions
    policy: RetryPolicy
    stop: StopSignal
    sleep: Callable[[float], None]
    rng: random.Random
    on_progress: Callable[[Progress], None]
    kind: str = ""
    run_id: int = 0
    done: int = 0
    total: int = 0
    accepted: int = 0
    not_accepted: int = 0

    def _prepare(self, recipients: Sequence[Recipient], findings: str) -> tuple[list[Recipient], list]:
        """Start the run: crashed runs and in-flight rows settled, audience frozen; returns (todo, recovered)."""
        number, connection = self.issue.number, self.connection
        self.kind = kind_of(self.provider.info, self.options)
        ledger.mark_crashed_runs(connection, number, self.kind)
        if self.options.restart:
            ledger.forget_rehearsal(connection, number, self.kind)
        self.run_id = ledger.start_run(connection, number, self.kind, self.provider.info.name,
                                       self.options.describe(), bool(findings), findings)
        recovered = ledger.recover_in_flight(connection, number, self.kind)
        ledger.freeze_audience(connection, number, self.kind,
                               ((r.email, r.name, tuple(r.lists)) for r in recipients), self.run_id)
        statuses = ledger.status_by_email(connection, number, self.kind)
        eligible = set(self.options.eligible())
        return [r for r in recipients if statuses.get(r.email) in eligible], recovered

    def run(self, recipients: Sequence[Recipient], settings, findings: str) -> SendReport:
        number, connection = self.issue.number, self.connection
        size = batch_size_for(self.provider.info, self.options.batch_size)
        todo, recovered = self._prepare(recipients, findings)
        chunks = list(batches(todo, size))
        self.total = len(todo)
        self._progress()
        outcome, message = "completed", ""
        failed_in_a_row, last_error = 0, ""
        try:
            for index, chunk in enumerate(chunks, start=1):
                if self.stop.requested:
                    outcome = "interrupted"
                    message = self._where(index, len(chunks))
                    break
                envelopes = [envelope_for(recipient, settings, number) for recipient in chunk]
                accepted, error = self._send_batch(envelopes, f"{number}-{self.run_id}-{index}")
                failed_in_a_row = 0 if accepted else failed_in_a_row + 1
                last_error = error or last_error
                if failed_in_a_row >= self.policy.pause_after and index < len(chunks):
                    outcome = "paused"
                    message = (f"paused: {failed_in_a_row} batches in a row had nothing accepted "
                               f"(last error: {last_error or 'see campaign status'}). "
                               + self._where(index + 1, len(chunks)))
                    break
        except ProviderAuthError as error:
            outcome, message = "stopped", f"{error}; nothing more was sent. Fix the credentials and run the send again"
        except KeyboardInterrupt:
            outcome = "interrupted"
            message = "interrupted at once (second Ctrl-C): the batch with the provider is recorded as unknown. " \
                      + self._resume_hint()
        except BaseException as error:
            ledger.finish_run(connection, self.run_id, "crashed", f"{type(error).__name__}: {error}")
            raise
        ledger.finish_run(connection, self.run_id, outcome, message)
        unknown = ledger.deliveries(connection, number, self.kind, [UNKNOWN])
        return SendReport(
            issue=number, kind=self.kind, provider=self.provider.info.name, run_id=self.run_id,
            outcome=outcome, message=message, counts=ledger.counts(connection, number, self.kind),
            attempted=self.done, accepted=self.accepted, unknown=tuple(d.email for d in unknown),
            recovered=tuple(d.email for d in recovered),
        )

    def _send_batch(self, envelopes: Sequence[Envelope], batch_id: str) -> tuple[int, str]:
        """Write ahead, call the provider (with retries), record; returns (accepted count, last error).

        The write-ahead follows the provider's own step: the whole batch for SendGrid
        (one request), each message for SMTP (ProviderInfo.one_at_a_time).
        """
        emails = [envelope.email for envelope in envelopes]
        lists = tuple(sorted({name for envelope in envelopes for name in envelope.lists}))
        per_message = self.provider.info.one_at_a_time
        handed_over: set[str] = set() if per_message else set(emails)   # may have gone out
        answered: set[str] = set()                                        # already recorded

        def mark_sending(envelope: Envelope) -> None:
            self._mark_in_flight([envelope.email], batch_id)
            handed_over.add(envelope.email)

        def record_answer(result: DeliveryResult) -> None:
            self._record([_outcome_of(result)])
            answered.add(result.email)

        batch = Batch(issue=self.issue, envelopes=envelopes, batch_id=batch_id, lists=lists,
                      sandbox=self.kind == "sandbox", on_sending=mark_sending if per_message else None,
                      on_result=record_answer)
        if not per_message:
            self._mark_in_flight(emails, batch_id)
        try:
            outcomes = self._deliver(batch, emails, rewrite_ahead=not per_message)
        except ProviderAuthError as error:
            self._record([Outcome(email, FAILED, error=str(error)) for email in emails if email not in answered])
            raise
        except BaseException as error:  # Ctrl-C twice or a bug mid-request: it may have gone out
            note = f"the send stopped during the provider call ({type(error).__name__}); it may or may not " \
                   "have been delivered; resend only with --resend-unknown"
            self._record([Outcome(email, UNKNOWN, error=note) for email in emails
                          if email in handed_over and email not in answered])
            raise
        self._record([outcome for outcome in outcomes if outcome.email not in answered])
        errors = [outcome.error for outcome in outcomes if outcome.error]
        return sum(1 for outcome in outcomes if outcome.status == ACCEPTED), (errors[-1] if errors else "")

    def _mark_in_flight(self, emails: list[str], batch_id: str) -> None:
        ledger.mark_in_flight(self.connection, self.issue.number, self.kind, emails,
                              self.provider.info.name, batch_id, self.run_id)

    def _deliver(self, batch: Batch, emails: list[str], rewrite_ahead: bool) -> list[Outcome]:
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                results = self.provider.send(batch)
            except ProviderAuthError:
                raise
            except TransientProviderError as error:
                delay = self.policy.delay(attempt, error.retry_after, self.rng)
                if (attempt >= self.policy.max_attempts or waited + delay > self.policy.max_total_wait
                        or self.stop.requested):
                    return [Outcome(email, FAILED, error=f"{error} (gave up after {attempt} attempts)")
                            for email in emails]
                # It certainly did not go out: say so during the wait, so a crash now loses nothing.
                ledger.record_outcomes(self.connection, self.issue.number, self.kind,
                                       [Outcome(email, FAILED, error=f"retrying: {error}") for email in emails])
                self._progress(f"{error}: retrying in {delay:.0f} s (attempt {attempt + 1})")
                self.sleep(delay)
                waited += delay
                if self.stop.requested:
                    return [Outcome(email, FAILED, error=f"{error} (interrupted before retrying)")
                            for email in emails]
                if rewrite_ahead:  # per-message providers mark each message as they send it
                    self._mark_in_flight(emails, batch.batch_id)
                continue
            except ProviderError as error:
                return [Outcome(email, FAILED, error=str(error)) for email in emails]
            by_email = {result.email.lower(): result for result in results}
            outcomes = []
            for email in emails:
                result = by_email.get(email.lower())
                if result is None:  # the provider did not say: never guess
                    outcomes.append(Outcome(email, UNKNOWN, error="the provider gave no result for this address"))
                else:
                    outcomes.append(replace(_outcome_of(result), email=email))
            return outcomes

    def _record(self, outcomes: list[Outcome]) -> None:
        ledger.record_outcomes(self.connection, self.issue.number, self.kind, outcomes)
        self.done += len(outcomes)
        accepted = sum(1 for outcome in outcomes if outcome.status == ACCEPTED)
        self.accepted += accepted
        self.not_accepted += len(outcomes) - accepted
        self._progress()

    def _progress(self, note: str = "") -> None:
        self.on_progress(Progress(self.total, self.done, self.accepted, self.not_accepted, note))

    def _where(self, next_batch: int, total_batches: int) -> str:
        left = self.total - self.done
        return (f"The send stopped before batch {next_batch} of {total_batches}: {self.done:,} of {self.total:,} "
                f"recipients handled this run, {left:,} still to send. " + self._resume_hint())

    def _resume_hint(self) -> str:
        flags = " --provider outbox" if self.kind == "outbox" else " --sandbox" if self.kind == "sandbox" else ""
        return f"Resume with `campaign send --issue {self.issue.number}{flags}`."


def _outcome_of(result: DeliveryResult) -> Outcome:
    return Outcome(result.email, result.status.value, result.message_id, result.error)


# --- Test sends: only to the given addresses, no ledger record ------------------------------------

@dataclass(frozen=True)
class TestSendReport:
    __test__ = False  # not a pytest test class, despite the name
    sent_to: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]        # (address, why): suppressed addresses
    outcomes: tuple[Outcome, ...] = field(default=())


def with_test_subject(issue: RenderedIssue, subject_prefix: str = TEST_PREFIX) -> RenderedIssue:
    """The same rendered issue with the subject prefixed, e.g. "[TEST] "."""
    return replace(issue, subject=MergeTemplate(subject_prefix + issue.subject.source))


def send_test(
    issue: RenderedIssue,
    addresses: Sequence[str],
    provider: Provider,
    settings,
    *,
    as_recipient: Recipient | None = None,
    suppressed: dict | None = None,
    sandbox: bool = False,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
) -> TestSendReport:
    """Send `issue` only to `addresses`, subject prefixed, personalised as `as_recipient` or sample values.

    No list member receives anything and the ledger is not touched. Suppressed
    addresses are skipped like everywhere else.
    """
    issue = with_test_subject(issue)
    suppressed = suppressed or {}
    skipped = tuple((address, f"suppressed: {suppressed[address][0]}") for address in addresses
                    if address in suppressed)
    wanted = list(dict.fromkeys(address for address in addresses if address not in suppressed))
    template = as_recipient or sample_recipient(issue)
    envelopes = [envelope_for(replace(template, email=address, lists=()), settings, issue.number)
                 for address in wanted]
    check_merge_fields(issue, [template])
    stop = StopSignal()
    loop = _TestLoop(provider, issue, policy, sleep if sleep is not None else stop.sleep, rng or random.Random())
    outcomes: list[Outcome] = []
    for index, chunk in enumerate(batches(envelopes, provider.info.max_batch_size), start=1):
        batch = Batch(issue=issue, envelopes=chunk, batch_id=f"{issue.number}-test-{index}",
                      test=True, sandbox=sandbox)
        outcomes += loop.deliver(batch)
    return TestSendReport(sent_to=tuple(wanted), skipped=skipped, outcomes=tuple(outcomes))


def sample_recipient(issue: RenderedIssue) -> Recipient:
    """A stand-in recipient with the sample values previews use; other fields empty (their fallback shows)."""
    fields = {name: "" for name in issue.field_names()}
    fields.update(SAMPLE_RECIPIENT)
    return Recipient(email=SAMPLE_RECIPIENT["email"], name=SAMPLE_RECIPIENT["name"], lists=(), fields=fields)


@dataclass
class _TestLoop:
    provider: Provider
    issue: RenderedIssue
    policy: RetryPolicy
    sleep: Callable[[float], None]
    rng: random.Random

    def deliver(self, batch: Batch) -> list[Outcome]:
        emails = [envelope.email for envelope in batch.envelopes]
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                results = self.provider.send(batch)
                return [_outcome_of(result) for result in results]
            except TransientProviderError as error:
                if attempt == self.policy.max_attempts:
                    return [Outcome(email, FAILED, error=str(error)) for email in emails]
                self.sleep(self.policy.delay(attempt, error.retry_after, self.rng))
        return []


