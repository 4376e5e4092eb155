"""Signing SendGrid Event Webhook posts the way SendGrid does, with a P-256 key made for the test.

SendGrid signs `timestamp + body` with ECDSA P-256 / SHA-256 and sends the DER signature in
base64; the key it shows is the base64 DER SubjectPublicKeyInfo (what EventWebhook expects).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from campaign.freeze import freeze_audience
from campaign import ledger
from campaign.ledger import ACCEPTED, UNKNOWN, Outcome, open_ledger

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


SENT = {"ana@example.org": ACCEPTED, "bo@example.org": UNKNOWN, "carla@example.org": UNKNOWN,
        "dan@example.org": ACCEPTED, "eve@example.org": UNKNOWN, "fay@example.org": ACCEPTED}
LISTS = {"carla@example.org": ("embassies",), "fay@example.org": ("members", "embassies")}


def record_send(database: Path, issue: int = 30, statuses: dict[str, str] = SENT,
                delivery_ids: dict[str, str] | None = None) -> None:
    """A real SendGrid send of `issue` as the send workflow records it: write-ahead (with each
    message's delivery id), then the answers."""
    connection = open_ledger(database)
    try:
        run_id = ledger.start_run(connection, issue, "real", "sendgrid")
        freeze_audience(connection, issue, "real",
                               [(email, "", LISTS.get(email, ("members",))) for email in statuses], run_id)
        ledger.mark_in_flight(connection, issue, "real", list(statuses), "sendgrid", "batch-1", run_id,
                              delivery_ids=delivery_ids)
        ledger.record_outcomes(connection, issue, "real",
                               [Outcome(email, status, "msg-1" if status == ACCEPTED else "")
                                for email, status in statuses.items()])
        ledger.finish_run(connection, run_id, "completed")
    finally:
        connection.close()
