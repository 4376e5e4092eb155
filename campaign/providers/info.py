"""What each provider is (its batch limit, a rehearsal or not, message by message or not), apart from its code.

Kept here so that planning a send (`provider_info`) reads these without importing the
provider's client: a resume with nothing to send imports no SendGrid client (issue 18).
Each provider module takes its own as `INFO`.
"""

from __future__ import annotations

from .base import ProviderInfo

SENDGRID = ProviderInfo(name="sendgrid", max_batch_size=1000)
SMTP = ProviderInfo(name="smtp", max_batch_size=100, one_at_a_time=True)
OUTBOX = ProviderInfo(name="outbox", max_batch_size=1000, rehearsal=True)
