"""DKIM signatures (RFC 6376) with dkimpy, for mail the tool hands to an SMTP server itself.

Gmail and Yahoo expect bulk mail signed, and RFC 8058 counts one-click
unsubscribe only when the signature covers both List-Unsubscribe headers.
dkimpy's default header list leaves out List-Unsubscribe-Post, so the list is
given here, once: `SIGNED_HEADERS`.

    signer = signer_from(settings.smtp, settings.root)   # None when [smtp] dkim_domain is empty
    data = signer.sign(message_bytes)                     # DKIM-Signature prepended

The key comes from SMTP_DKIM_PRIVATE_KEY (PEM text) or `[smtp] dkim_key_file`;
it is never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dkim  # type: ignore[import-untyped]

from .config import SmtpSettings
from .errors import ConfigError

# h=: what a receiver checks was not changed on the way. Reply-To is signed when present.
SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "Feedback-ID", "List-Unsubscribe",
    "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Reply-To",
)
CANONICALIZATION = (b"relaxed", b"relaxed")   # survives relays that refold headers or trim spaces
_PROBE = b"From: probe@example.org\r\nTo: probe@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    private_key: bytes = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        """The message (CRLF line ends) with its DKIM-Signature header in front."""
        present = {line.split(b":", 1)[0].strip().lower()
                   for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if line[:1] not in (b" ", b"\t")}
        headers = [name.encode("ascii") for name in SIGNED_HEADERS if name.lower().encode("ascii") in present]
        signature = dkim.sign(message, self.selector.encode("ascii"), self.domain.encode("ascii"),
                              self.private_key, canonicalize=CANONICALIZATION, include_headers=headers)
        return signature + message


def signer_from(smtp: SmtpSettings, root: Path) -> DkimSigner | None:
    """The signer [smtp] describes, or None when DKIM is not configured; ConfigError when half-configured."""
    if not smtp.dkim_domain and not smtp.dkim_selector:
        if smtp.dkim_key_file or smtp.dkim_private_key:
            raise ConfigError("a DKIM key is given but [smtp] dkim_domain and dkim_selector are empty: "
                              "set both (the key's DNS record is SELECTOR._domainkey.DOMAIN)")
        return None
    if not smtp.dkim_domain or not smtp.dkim_selector:
        missing = "dkim_domain" if not smtp.dkim_domain else "dkim_selector"
        raise ConfigError(f"[smtp] {missing} is empty: DKIM needs both dkim_domain and dkim_selector")
    key, source = _private_key(smtp, root)
    signer = DkimSigner(domain=smtp.dkim_domain.strip().lower(), selector=smtp.dkim_selector.strip(),
                        private_key=key)
    try:
        signer.sign(_PROBE)
    except (dkim.DKIMException, ValueError, TypeError) as error:
        raise ConfigError(f"{source} is not a usable DKIM private key ({type(error).__name__}): "
                          "give an RSA key in PEM form (-----BEGIN PRIVATE KEY----- or "
                          "-----BEGIN RSA PRIVATE KEY-----), e.g. made with `dknewkey`") from None
    return signer


def _private_key(smtp: SmtpSettings, root: Path) -> tuple[bytes, str]:
    if smtp.dkim_private_key.strip():
        return smtp.dkim_private_key.strip().encode("ascii", "replace") + b"\n", "SMTP_DKIM_PRIVATE_KEY"
    if not smtp.dkim_key_file:
        raise ConfigError("DKIM is configured ([smtp] dkim_domain) but there is no key: set "
                          "SMTP_DKIM_PRIVATE_KEY to the PEM text or [smtp] dkim_key_file to a PEM file")
    path = root / smtp.dkim_key_file
    try:
        return path.read_bytes(), f"[smtp] dkim_key_file {path}"
    except OSError as error:
        raise ConfigError(f"[smtp] dkim_key_file {path}: cannot read it ({error.strerror}); "
                          "check the path (relative to campaign.toml) and its permissions") from None
