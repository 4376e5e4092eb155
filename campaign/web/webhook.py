"""`POST /webhooks/sendgrid`: SendGrid's signed Event Webhook, into the ledger.

The route exists only when SENDGRID_WEBHOOK_PUBLIC_KEY is set (otherwise: 404). Each request's raw
body is read once, up to BODY_LIMIT, and verified with the `sendgrid` package's own EventWebhook
helper (ECDSA P-256 over the X-Twilio-Email-Event-Webhook-Timestamp value followed by the body)
before anything is parsed. A missing or wrong signature: 403, nothing stored. A signed body that
is not an array of events: 400 (one unreadable event in an array is
left out and counted, so it spoils no batch). Otherwise the events go through events.record_events (the same
ledger and suppression functions as the CLI) and the answer is 200 with counts, no addresses.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import asdict, replace

from sendgrid.helpers.eventwebhook import EventWebhook  # type: ignore[import-untyped]
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..config import Settings
from ..errors import ConfigError, UsageError
from ..events import IngestResult, parse_events, record_events
from .body import capped_body

WEBHOOK_PATH = "/webhooks/sendgrid"
# SendGrid batches events into one POST of up to a few MB (a few thousand events); room to spare.
BODY_LIMIT = 8 * 1024 * 1024
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP


def webhook_routes(settings: Settings) -> list[BaseRoute]:
    """The webhook's route, or none at all when no verification key is configured."""
    key = settings.sendgrid.webhook_public_key
    if not key:
        return []
    verifier = event_verifier(key)

    async def sendgrid_events(request: Request) -> Response:
        return await receive_events(request, verifier)

    return [Route(WEBHOOK_PATH, sendgrid_events, methods=["POST"])]


def event_verifier(public_key: str) -> EventWebhook:
    """EventWebhook for the base64 key SendGrid shows; a key that is not one is a ConfigError."""
    try:
        return EventWebhook("".join(public_key.split()))
    except (ValueError, TypeError):
        raise ConfigError("environment variable SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key; paste the "
                          "Verification Key from SendGrid's Event Webhook settings (base64, no PEM lines)") from None


async def receive_events(request: Request, verifier: EventWebhook) -> Response:
    body = await capped_body(request, BODY_LIMIT)
    if body is None:
        return PlainTextResponse(f"a webhook POST is at most {BODY_LIMIT:,} bytes\n", status_code=413)
    text = signed_text(verifier, body, request.headers.get(SIGNATURE_HEADER, ""),
                       request.headers.get(TIMESTAMP_HEADER, ""))
    if text is None:
        return PlainTextResponse("signature missing or wrong: nothing stored\n", status_code=403)
    try:
        events, unreadable = parse_events(text)
    except UsageError as error:
        return PlainTextResponse(f"not SendGrid events: {error}\n", status_code=400)
    result: IngestResult = await request.app.state.ledger.call(record_events, events)
    answer = asdict(replace(result, unreadable=unreadable))
    return PlainTextResponse(json.dumps(answer) + "\n", media_type="application/json")


def signed_text(verifier: EventWebhook, body: bytes, signature: str, timestamp: str) -> str | None:
    """The body as text when its signature verifies, else None."""
    if not signature or not timestamp or len(timestamp) > 20:
        return None
    try:
        text = body.decode("utf-8")
        return text if verifier.verify_signature(text, signature, timestamp) else None
    except (UnicodeError, binascii.Error, ValueError):
        return None
