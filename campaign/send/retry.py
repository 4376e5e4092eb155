"""The one retry loop every send uses, real sends and test sends alike.

429 waits as the provider says (plus jitter); other transient failures back off
exponentially with full jitter, within a bounded number of attempts and a bounded
total wait. A stop request cuts a wait short and ends the retrying. Every wait goes
through `Retries.wait`, so tests run the real loop against real local servers
without waiting. Whatever the provider raises becomes an outcome per address: a
batch answer never lets a ProviderError through, and a configuration fault
(ProviderConfigError: credentials refused, no STARTTLS, no connection after the
retries...) is handed back as `halt`, so the caller stops sending anything more.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import ProviderConfigError, ProviderError, TransientProviderError
from ..ledger import ACCEPTED, FAILED, UNKNOWN, Outcome
from ..providers.base import Batch, DeliveryResult, Provider
from .stop import StopSignal


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
class Retries:
    """How one send retries: the policy, the stop request, the clock (`sleep`) and the dice (`rng`)."""

    policy: RetryPolicy = RetryPolicy()
    stop: StopSignal = field(default_factory=StopSignal)
    sleep: Callable[[float], None] | None = None       # default: a wait the stop request cuts short
    rng: random.Random = field(default_factory=random.Random)

    def wait(self, seconds: float) -> None:
        (self.sleep if self.sleep is not None else self.stop.sleep)(seconds)


@dataclass(frozen=True)
class Answer:
    """What became of one batch: one outcome per address, in the batch's order."""

    outcomes: tuple[Outcome, ...]
    attempts: int
    halt: ProviderConfigError | None = None   # a configuration fault: nothing more can go out

    @property
    def accepted(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == ACCEPTED)

    @property
    def last_error(self) -> str:
        errors = [outcome.error for outcome in self.outcomes if outcome.error]
        return errors[-1] if errors else ""


# Called before each backoff wait with the error, the wait and the attempt that failed.
OnWait = Callable[[TransientProviderError, float, int], None]


def deliver_with_retries(provider: Provider, batch: Batch, retries: Retries, *, on_wait: OnWait | None = None,
                         before_retry: Callable[[], None] | None = None) -> Answer:
    """Hand `batch` to `provider`, retrying what certainly did not go out, within `retries`' limits.

    `on_wait` runs before each wait (the real send records "retrying" in the ledger),
    `before_retry` after it, unless a stop was requested meanwhile (the real send writes
    ahead again).
    """
    emails = [envelope.email for envelope in batch.envelopes]
    policy, waited = retries.policy, 0.0
    for attempt in itertools.count(1):
        try:
            results = provider.send(batch)
        except ProviderConfigError as error:
            return Answer(failed(emails, str(error)), attempt, halt=error)
        except TransientProviderError as error:
            delay = policy.delay(attempt, error.retry_after, retries.rng)
            if (attempt >= policy.max_attempts or waited + delay > policy.max_total_wait
                    or retries.stop.requested):
                return Answer(failed(emails, f"{error} (gave up after {attempt} attempts)"), attempt)
            if on_wait is not None:
                on_wait(error, delay, attempt)
            retries.wait(delay)
            waited += delay
            if retries.stop.requested:
                return Answer(failed(emails, f"{error} (interrupted before retrying)"), attempt)
            if before_retry is not None:
                before_retry()
            continue
        except ProviderError as error:
            return Answer(failed(emails, str(error)), attempt)
        return Answer(outcomes_for(emails, results), attempt)
    raise AssertionError("unreachable")  # itertools.count never ends


def failed(emails: Sequence[str], error: str) -> tuple[Outcome, ...]:
    return tuple(Outcome(email, FAILED, error=error) for email in emails)


def outcome_of(result: DeliveryResult) -> Outcome:
    return Outcome(result.email, result.status.value, result.message_id, result.error)


def outcomes_for(emails: Sequence[str], results: Sequence[DeliveryResult]) -> tuple[Outcome, ...]:
    """The provider's answer for each address in order; an address it said nothing about is unknown."""
    if len(results) == len(emails) and all(result.email == email for result, email in zip(results, emails)):
        # the usual answer, each address in order: half the time of matching them by address
        return tuple([Outcome(email, result.status.value, result.message_id, result.error)
                      for email, result in zip(emails, results)])
    by_email = {result.email.lower(): result for result in results}
    outcomes = []
    for email in emails:
        result = by_email.get(email.lower())
        if result is None:  # the provider did not say: never guess
            outcomes.append(Outcome(email, UNKNOWN, error="the provider gave no result for this address"))
        else:   # made directly (no dataclass copy): a thousand per batch, in the worker that holds the GIL
            outcomes.append(Outcome(email, result.status.value, result.message_id, result.error))
    return tuple(outcomes)
