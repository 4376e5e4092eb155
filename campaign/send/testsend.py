"""Test sends: a [TEST] copy only to the given addresses, no list member, no ledger record.

They go through the same retry loop as real sends (retry.py), so its limits hold
here too: bounded attempts, bounded total wait, a stop request honoured; whatever
the provider raises becomes an outcome per address.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from ..audience import Recipient
from ..config import Settings
from ..ledger import Outcome
from ..merge import MergeTemplate
from ..personalize import SAMPLE_RECIPIENT, envelope_for
from ..providers import batches
from ..providers.base import Batch, Provider
from ..rendered import RenderedIssue
from .plan import check_merge_fields
from .retry import Retries, RetryPolicy, deliver_with_retries, failed
from .stop import StopSignal

TEST_PREFIX = "[TEST] "
STOPPED = "not sent: the test send was stopped"


@dataclass(frozen=True)
class TestSendReport:
    __test__ = False  # not a pytest test class, despite the name
    sent_to: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]        # (address, why): suppressed addresses
    outcomes: tuple[Outcome, ...] = field(default=())
    personalised_as: str = ""                   # the recipient's address; "": sample values
    stopped_by: str = ""                        # the provider configuration fault that stopped it, if one did
    signal_number: int = 0                      # the signal (SIGINT, SIGTERM) that stopped it, if one did


def with_test_subject(issue: RenderedIssue, subject_prefix: str = TEST_PREFIX) -> RenderedIssue:
    """The same rendered issue with the subject prefixed, e.g. "[TEST] "."""
    return replace(issue, subject=MergeTemplate(subject_prefix + issue.subject.source))


def sample_recipient(issue: RenderedIssue) -> Recipient:
    """A stand-in recipient with the sample values previews use; other fields empty (their fallback shows)."""
    fields = {name: "" for name in issue.field_names()}
    fields.update(SAMPLE_RECIPIENT)
    return Recipient(email=SAMPLE_RECIPIENT["email"], name=SAMPLE_RECIPIENT["name"], lists=(), fields=fields)


def send_test(
    issue: RenderedIssue,
    addresses: Sequence[str],
    provider: Provider,
    settings: Settings,
    *,
    as_recipient: Recipient | None = None,
    suppressed: Mapping[str, tuple[str, ...]] | None = None,
    sandbox: bool = False,
    policy: RetryPolicy = RetryPolicy(),
    stop: StopSignal | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
) -> TestSendReport:
    """Send `issue` only to `addresses`, subject prefixed, personalised as `as_recipient` or sample values.

    No list member receives anything and the ledger is not touched. Suppressed
    addresses are skipped like everywhere else. After a stop request, or once the
    provider refuses the credentials, the addresses not yet tried are reported failed.
    """
    issue = with_test_subject(issue)
    suppressed = suppressed or {}
    skipped = tuple((address, f"suppressed: {suppressed[address][0]}") for address in addresses
                    if address in suppressed)
    wanted = list(dict.fromkeys(address for address in addresses if address not in suppressed))
    template = as_recipient or sample_recipient(issue)
    check_merge_fields(issue, [template])
    envelopes = [envelope_for(replace(template, email=address, lists=()), settings, issue.number)
                 for address in wanted]
    retries = Retries(policy, stop or StopSignal(), sleep, rng or random.Random())
    outcomes: list[Outcome] = []
    halted, fault = "", ""
    for index, chunk in enumerate(batches(envelopes, provider.info.max_batch_size), start=1):
        if halted or retries.stop.requested:
            outcomes += failed([envelope.email for envelope in chunk], halted or STOPPED)
            continue
        batch = Batch(issue=issue, envelopes=chunk, batch_id=f"{issue.number}-test-{index}",
                      test=True, sandbox=sandbox, wait=retries.wait)
        answer = deliver_with_retries(provider, batch, retries)
        outcomes += answer.outcomes
        halted = f"not sent: {answer.halt}" if answer.halt is not None else ""
        fault = str(answer.halt) if answer.halt is not None else fault
    return TestSendReport(sent_to=tuple(wanted), skipped=skipped, outcomes=tuple(outcomes),
                          personalised_as=as_recipient.email if as_recipient else "", stopped_by=fault,
                          signal_number=retries.stop.signal_number)
