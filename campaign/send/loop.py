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
from dataclasses import dataclass
from typing import Callable, Sequence

from .. import ledger
from ..audience import Recipient
from ..config import Settings
from ..checks.gate import GateDecision
from ..link_tokens import DigestParts
from ..personalize import recipient_token
from ..providers import batches
from ..providers.base import Provider
from ..rendered import RenderedIssue
from .batch_loop import BatchLoop, Progress, Tally
from .builder import SecondProcess, second_process_for, worth_a_second_process
from .concurrent import Concurrent
from .plan import SendOptions, batch_size_for, check_merge_fields, kind_of, spread
from .record import Left, RunRecord, send_lock
from .retry import Retries, RetryPolicy
from .stop import StopSignal

__all__ = ["Progress", "SendReport", "send_issue"]


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


def _first_send_elsewhere(builder: SecondProcess | None, connection: sqlite3.Connection, issue: int, kind: str,
                           recipients: Sequence[Recipient], size: int) -> DigestParts | None:
    """A first send's link-token digests, made by its builder process while the audience is frozen
    (the freeze needs them all before the first request: made here, they took 0.2 s of it); then,
    everyone being new, the first batches of `size`, built there meanwhile (SecondProcess.build_first)."""
    if builder is None or ledger.has_deliveries(connection, issue, kind):   # a resume makes only the new ones
        return None
    digests = builder.token_digests(recipient.email for recipient in recipients)
    builder.build_first(batches(recipients, size))
    return digests


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
    before_sending: Callable[[], str] | None = None,
    builder: SecondProcess | None = None,
) -> SendReport:
    """Send `issue` to `recipients` (an audience already deduplicated and minus suppressions).

    `gate` is the preflight decision (checks.gate): a refused send raises ChecksFailed
    before anything is recorded; a forced one is recorded as forced, with what it overrode.
    `before_sending()`, instead of `gate`: the decision still to come. It is called once the run
    is started and the audience frozen, all uncommitted (record.RunRecord.start), and returns what
    a forced send overrides, or raises, which leaves the ledger as it was.
    `builder`: a process already started to build the batches (send/builder.py); it is closed here.
    """
    retries = Retries(policy, stop or StopSignal(), sleep, rng or random.Random())
    if gate is not None:
        gate.enforce()
    check_merge_fields(issue, recipients)
    with send_lock(connection), retries.stop.on_interrupt():
        return _run(connection, issue, recipients, provider, settings, options, retries,
                    Tally(on_progress or (lambda progress: None)), gate.forced_over if gate else "", before_sending,
                    builder)


def _run(connection: sqlite3.Connection, issue: RenderedIssue, recipients: Sequence[Recipient],
         provider: Provider, settings: Settings, options: SendOptions, retries: Retries, tally: Tally,
         forced_over: str, before_sending: Callable[[], str] | None, builder: SecondProcess | None) -> SendReport:
    size = batch_size_for(provider.info, options.batch_size)
    kind = kind_of(provider.info, options)
    builder = builder or second_process_for(provider, issue, settings, kind == "sandbox", len(recipients))
    try:
        start = RunRecord.start(connection, issue.number, kind, provider.info.name, options, recipients,
                                forced_over, token_of=lambda email: recipient_token(email, settings.token_secret),
                                before_sending=before_sending, token_digests=_first_send_elsewhere(
                                    builder, connection, issue.number, kind, recipients,
                                    spread(size, provider.info, provider.concurrency, len(recipients))))
        if builder is not None and not worth_a_second_process(len(start.todo)):   # a resume with few left
            builder.close()
            builder = None
        record = start.record
        tally.total = len(start.todo)
        tally.report()
        try:
            loop = BatchLoop(record, issue, provider, settings, retries, tally, options.rerun, builder)
            chunks = list(batches(start.todo, spread(size, provider.info, provider.concurrency, len(start.todo))))
            if builder is not None:   # what it built during the freeze, if the send is still those batches
                builder.keep_if_unchanged(chunks)
            outcome, message = Concurrent(loop).run(chunks) if loop.concurrent else loop.run(chunks)
        except BaseException as error:
            record.crashed(error)
            raise
    finally:
        if builder is not None:
            builder.close()
    record.finish(outcome, message)
    return SendReport(
        issue=issue.number, kind=kind, provider=provider.info.name, run_id=record.run_id,
        outcome=outcome, message=message, counts=record.counts(), attempted=tally.done,
        accepted=tally.accepted, unknown=record.unknown(), recovered=tuple(d.email for d in start.recovered),
        left=record.left(), signal_number=retries.stop.signal_number,
    )
