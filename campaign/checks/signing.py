"""Whether mail sent over SMTP will be DKIM-signed: Gmail and Yahoo expect bulk mail signed, and
RFC 8058 counts one-click unsubscribe only when the signature covers both List-Unsubscribe headers.
SendGrid signs for the account's authenticated domain; the outbox sends nothing."""

from __future__ import annotations

from ..config import Settings
from ..errors import ConfigError
from .findings import CONFIG, ERROR, WARNING, Finding


def check_signing(settings: Settings) -> list[Finding]:
    smtp = settings.smtp
    if settings.provider != "smtp":
        return []
    from ..dkim_signing import signer_from  # noqa: PLC0415  (dkimpy and dnspython, ~40 ms: for SMTP only)

    try:
        signer = signer_from(smtp, settings.root)
    except ConfigError as error:
        return [Finding(ERROR, "dkim-key", CONFIG, str(error),
                        "fix the [smtp] dkim_* settings or SMTP_DKIM_PRIVATE_KEY; a send would stop here")]
    if signer is None and not smtp.relay_signs:
        return [Finding(WARNING, "dkim-missing", CONFIG,
                        "SMTP is the provider and nothing DKIM-signs the mail: Gmail and Yahoo expect bulk mail "
                        "signed, and one-click unsubscribe counts only when the signature covers List-Unsubscribe",
                        "set [smtp] dkim_domain and dkim_selector and the key (SMTP_DKIM_PRIVATE_KEY or "
                        "[smtp] dkim_key_file), or [smtp] relay_signs = true when your relay signs for you")]
    return []
