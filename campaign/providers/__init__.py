"""Email providers behind one interface (base.py): sendgrid, smtp and the local outbox.

    provider = make_provider("sendgrid", settings, issue=30)
    for envelopes in batches(audience, provider.info.max_batch_size):
        results = provider.send(Batch(issue, envelopes, batch_id=...))
    provider.close()
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..config import PROVIDERS, Settings
from ..errors import UsageError
from . import info
from .base import Batch, DeliveryResult, Provider, ProviderInfo, Status

__all__ = [
    "Batch", "DeliveryResult", "Provider", "ProviderInfo", "Status",
    "PROVIDERS", "batches", "body_builder", "make_provider", "provider_info",
]

T = TypeVar("T")


def provider_info(name: str) -> ProviderInfo:
    """What a provider is (batch limit, rehearsal or not) without connecting or needing credentials."""
    _check_name(name)
    return {"sendgrid": info.SENDGRID, "smtp": info.SMTP}.get(name, info.OUTBOX)


def outbox_mailbox(settings: Settings, issue: int, *, test: bool = False) -> Path:
    """The one place that says where the outbox writes issue `issue`: build_dir/issue-N/outbox.mbox
    (a test send's copies: test-outbox.mbox beside it)."""
    return settings.issue_build_dir(issue) / ("test-outbox.mbox" if test else "outbox.mbox")


def make_provider(name: str, settings: Settings, *, issue: int | None = None,
                  outbox_path: Path | None = None) -> Provider:
    """The provider called `name`, configured from settings.

    outbox: writes to `outbox_path`, by default `outbox_mailbox(settings, issue)`,
    the mailbox `campaign send` writes (one of the two is needed). sendgrid:
    raises ProviderAuthError at once when SENDGRID_API_KEY is not set. smtp:
    connects lazily, on the first send.
    """
    _check_name(name)
    if name == "sendgrid":
        from .sendgrid import SendGridProvider

        return SendGridProvider(settings)
    if name == "smtp":
        from .smtp import SmtpProvider

        return SmtpProvider(settings)
    from .outbox import OutboxProvider

    if outbox_path is None:
        if issue is None:
            raise UsageError("the outbox writes one mailbox per issue: give make_provider an issue or outbox_path")
        outbox_path = outbox_mailbox(settings, issue)
    return OutboxProvider(settings, outbox_path)


def body_builder(name: str, settings: Settings) -> Callable[[Batch, Settings], Any] | None:
    """The `build_body` of a provider whose batches may be built in another process (send/builder.py):
    it posts whole batches, several at once. Known without making the provider (no credentials needed)."""
    _check_name(name)
    if name != "sendgrid" or settings.sendgrid.concurrency < 2:
        return None
    from .sendgrid_payload import build_body

    return build_body


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items, in order (the last may be shorter)."""
    if size < 1:
        raise UsageError(f"batch size must be at least 1, got {size}")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _check_name(name: str) -> None:
    if name not in PROVIDERS:
        raise UsageError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
