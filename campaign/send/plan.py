"""What a send would do: its options, the ledger kind it records under, and the plan shown before confirming.

Nothing here changes anything: `plan_send` reads the ledger's statuses and counts.
`kind_of` is the one place that says which ledger kind (real, outbox, sandbox) a send uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .. import ledger
from ..audience import Recipient
from ..errors import ContentError, UsageError
from ..ledger import ACCEPTED, FAILED, PENDING, REFUSED, REJECTED, SKIPPED, UNKNOWN
from ..merge import BUILTIN_FIELDS
from ..providers.base import ProviderInfo

if TYPE_CHECKING:   # annotations only: planning a send needs no renderer (issue 18: instant resume)
    from ..render import RenderedIssue


@dataclass(frozen=True)
class SendOptions:
    batch_size: int | None = None     # default and maximum: the provider's limit
    resend_unknown: bool = False
    retry_failed: bool = False        # only the failed, nobody pending
    sandbox: bool = False             # provider validates, delivers nothing: a rehearsal
    force: bool = False               # send although the preflight gate found errors
    restart: bool = False             # a rehearsal starts over (never a real send)
    retry_rejected: bool = False      # also `refused` requests (nothing was sent); a `rejected` address never
    rerun: str = ""                   # the command that runs this send again (the CLI's), for the resume hint

    def describe(self) -> str:
        flags = [("--resend-unknown", self.resend_unknown), ("--retry-failed", self.retry_failed),
                 ("--sandbox", self.sandbox), ("--force", self.force), ("--restart", self.restart),
                 ("--retry-rejected", self.retry_rejected)]
        words = [flag for flag, on in flags if on]
        if self.batch_size:
            words.append(f"--batch-size {self.batch_size}")
        return " ".join(words)

    def eligible(self) -> tuple[str, ...]:
        # skipped: suppressed during an earlier run; sent only if they are back in the audience (with consent)
        statuses = [FAILED] if self.retry_failed else [PENDING, FAILED, SKIPPED]
        if self.resend_unknown:
            statuses.append(UNKNOWN)
        if self.retry_rejected:
            statuses.append(REFUSED)
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
    refused: int = 0                  # requests the provider refused: resent with --retry-rejected


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


def spread(size: int, info: ProviderInfo, concurrency: int, to_send: int) -> int:
    """The batch size for a provider that sends message by message over `concurrency` connections (SMTP):
    small enough that each connection has a batch, however short the list. Its batch is only where the
    send counts and may pause; every message is written ahead on its own anyway."""
    if not info.one_at_a_time or concurrency < 2 or to_send < 1:
        return size
    return min(size, -(-to_send // concurrency))


def plan_send(statuses: dict[str, str], issue: int, recipients: Sequence[Recipient], info: ProviderInfo,
              options: SendOptions, concurrency: int = 1) -> SendPlan:
    """The numbers for the summary, from the ledger's {email: status} for this kind; changes nothing.
    `concurrency`: the provider's batches in flight at once (SMTP's connections spread small sends)."""
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
        pending_elsewhere=pending_elsewhere,
        batch_size=spread(batch_size_for(info, options.batch_size), info, concurrency, to_send),
        refused=tally[REFUSED],
    )


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
