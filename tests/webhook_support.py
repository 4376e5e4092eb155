"""Signing SendGrid Event Webhook posts the way SendGrid does, with a P-256 key made for the test.

SendGrid signs `timestamp + body` with ECDSA P-256 / SHA-256 and sends the DER signature in
base64; the key it shows is the base64 DER SubjectPublicKeyInfo (what EventWebhook expects).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass
class Signer:
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        """The value for SENDGRID_WEBHOOK_PUBLIC_KEY."""
        der = self.private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SIGNATURE: base64.b64encode(signature).decode("ascii"), TIMESTAMP: timestamp,
                "Content-Type": "application/json"}


_serial = iter(range(1, 10**9))


def event(kind: str, email: str, issue: int | None = 30, **extra: object) -> dict:
    """One event as SendGrid posts it: custom_args copied in as top-level fields."""
    number = next(_serial)
    item: dict = {"email": email, "timestamp": 1764000000 + number, "event": kind,
                  "sg_event_id": f"ev-{number:08d}-{kind}", "sg_message_id": f"msg-{number}.filter0001",
                  "smtp-id": f"<msg-{number}@sendgrid.net>", "category": ["issue-30"]}
    if issue is not None:
        item.update({"campaign_issue": str(issue), "campaign_lists": "members"})
    item.update(extra)
    return item


def body_of(events: list[dict]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()
