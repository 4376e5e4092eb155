"""The one small interface every email provider speaks.

The send loop hands a provider one `Batch`: a rendered issue (merge
placeholders still in it) and the recipients of that batch with their
merge values. The provider maps fields onto its own API and answers with one
`DeliveryResult` per recipient, in the vocabulary of `Status`. Providers map
fields; they never decide who gets what.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

if TYPE_CHECKING:   # annotations only: planning a send needs no renderer (issue 18: instant resume)
    from ..personalize import Envelope
    from ..render import RenderedIssue



class Status(str, Enum):
    ACCEPTED = "accepted"   # the provider took responsibility for delivery
    REJECTED = "rejected"   # the provider refused this address: never resent (SendGrid's 400 naming it, RCPT 5xx)
    REFUSED = "refused"     # the provider refused the request, nothing went out: safe to resend once fixed
    FAILED = "failed"       # it did not go out; trying again later may work
    UNKNOWN = "unknown"     # the request may or may not have gone out (timeout after sending)


@dataclass(frozen=True)
class Batch:
    """What one provider call sends: one rendered issue, up to `max_batch_size` envelopes."""

    issue: RenderedIssue
    envelopes: Sequence[Envelope]
    batch_id: str
    lists: tuple[str, ...] = ()
    test: bool = False           # a test send: subject already prefixed, no list headers needed
    sandbox: bool = False        # provider-side validation only (SendGrid sandbox mode)
    # Providers that send message by message (ProviderInfo.one_at_a_time, SMTP) call
    # on_sending just before handing one over and on_result with its answer, so the
    # ledger writes ahead and records per message: a crash mid-batch leaves at most
    # one message unknown, and the rest of the batch still pending. send() still
    # returns every result.
    on_sending: Callable[[Envelope], None] | None = None
    on_result: Callable[[DeliveryResult], None] | None = None
    # Such a provider calls on_retrying when a message did not go out (a 4xx) and will be tried again
    # after a wait: the ledger records it failed meanwhile, then on_sending writes it ahead again.
    # It waits with `wait`, the send's own wait, which a stop request cuts short.
    on_retrying: Callable[[Envelope, str], None] | None = None
    wait: Callable[[float], None] | None = None


@dataclass(slots=True)   # not frozen: a thousand are made per batch, 4x faster without the frozen setter
class DeliveryResult:
    email: str
    status: Status
    message_id: str = ""
    error: str = ""
    bounced: bool = False   # REJECTED because the mailbox does not exist (SMTP 5.1.x): suppress it


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    max_batch_size: int
    rehearsal: bool = False      # True: nothing leaves the machine (outbox)
    one_at_a_time: bool = False  # True: sends message by message and calls Batch.on_sending/on_result


class Provider(Protocol):
    info: ProviderInfo
    concurrency: int             # batches in flight at once ([sendgrid] concurrency, [smtp] connections)

    def send(self, batch: Batch) -> list[DeliveryResult]:
        """Send one batch; one result per envelope, same order.

        Raises ProviderAuthError on 401/403 (stop everything),
        TransientProviderError when the batch certainly did not go out and may
        be tried again (429, 503, connection refused), ProviderError for any
        other failure of the whole batch; never raises once part of the batch
        may have gone out. A request that may have gone out (timeout after
        sending, 500/502/504) answers UNKNOWN for each envelope; an address the
        provider refused answers REJECTED, a request it refused (nothing sent)
        REFUSED, each with the provider's message.
        The send loop owns retries and backoff (campaign/send/retry.py).
        """
        ...

    def prepare(self, batch: Batch, body: object = None) -> None:
        """Build what `send(batch)` will post, before the batch is written ahead: an error here
        (raised as is) leaves its recipients pending, not unknown. Nothing to build: do nothing.

        A provider may also have `build_body(batch, settings)`, a plain function whose result
        `prepare` takes as `body`: a large send builds it in another process (send/builder.py)."""
        ...

    def close(self) -> None:
        ...
