"""Fill many: one recipient's envelope and merge values, and a rendered issue filled for them.

The placeholder engine and the escapes live in campaign/merge.py; this module
says what values a recipient has (`merge_values`, built-in fields plus the
recipients file's columns) and fills a RenderedIssue with them (`personalize`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

from .errors import ConfigError
from .merge import CONTROL_CHARACTERS, escape_header, escape_html, escape_text
from .token_secret import MISSING as NO_SECRET


@dataclass(slots=True)   # not frozen: a thousand are made per batch, 4x faster without the frozen setter
class Envelope:
    """One recipient of one message, with every merge value as plain text."""

    email: str
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)
    lists: tuple[str, ...] = ()
    line: int = 0            # the recipient's line in the recipients file (0: not from the file)
    delivery_id: str = ""    # opaque id of this ledger row's attempt, carried to the provider ("" for test sends)

    @property
    def unsubscribe_url(self) -> str:
        return self.fields.get("unsubscribe_url", "")

    @property
    def token(self) -> str:
        """The opaque per-recipient token in its links ('' when not personalised)."""
        return self.fields.get("token", "")


@dataclass(frozen=True)
class Personalized:
    """One recipient's finished subject, HTML and text."""

    envelope: Envelope
    subject: str
    html: str
    text: str


def personalize(issue, envelope: Envelope, subject_prefix: str = "") -> Personalized:
    """Fill a RenderedIssue for one recipient: each value escaped for where it lands."""
    values = envelope.fields
    return Personalized(
        envelope=envelope,
        subject=subject_prefix + issue.subject.fill(values, escape_header),
        html=issue.html.fill(values, escape_html),
        text=issue.text.fill(values, escape_text),
    )


def recipient_token(email: str, secret: str) -> str:
    """An opaque, stable per-recipient token for unsubscribe and view links (never the bare address).

    Refuses an empty secret: anyone could compute every token from it.
    """
    if not secret:
        raise ConfigError(NO_SECRET)
    mac = _keyed(secret).copy()
    mac.update(email.lower().encode("utf-8"))
    return binascii.b2a_base64(mac.digest()[:18], newline=False).translate(_URLSAFE).decode("ascii")


_URLSAFE = bytes.maketrans(b"+/", b"-_")   # base64.urlsafe_b64encode's alphabet, without its Python wrappers


@lru_cache(maxsize=4)
def _keyed(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 with the secret hashed in once per send; each token copies it (a third faster than
    hmac.digest, which hashes the key again for each of a hundred thousand recipients)."""
    return hmac.new(secret.encode("utf-8"), digestmod="sha256")


def bounce_token(email: str, secret: str) -> str:
    """The recipient's tag in a VERP bounce address (bounces+TAG@domain): the link token's bytes in
    lower-case base32, because mail servers may change the case of an address's local part.
    `link_token_of_bounce_tag` turns it back into the link token the ledger can look up."""
    raw = base64.urlsafe_b64decode(recipient_token(email, secret))
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def link_token_of_bounce_tag(tag: str) -> str | None:
    """The link token a VERP tag was made from, or None when `tag` is not one."""
    try:
        raw = base64.b32decode(tag.upper() + "=" * (-len(tag) % 8))
    except (ValueError, TypeError):
        return None
    return base64.urlsafe_b64encode(raw).decode("ascii") if len(raw) == 18 else None


def merge_values(
    email: str,
    name: str,
    columns: Mapping[str, str],
    *,
    issue_number: int,
    links,
    token_secret: str,
) -> dict[str, str]:
    """Every merge field a layout may use for one recipient: the CSV columns plus links."""
    token = recipient_token(email, token_secret)
    values = dict(columns)
    joined = "".join(values.values())   # one check for the whole row, which is as a rule clean
    if not joined.isprintable() and CONTROL_CHARACTERS.search(joined):
        values = {key: CONTROL_CHARACTERS.sub(" ", value) for key, value in values.items()}
    values.update(
        email=email,
        name=name,
        token=token,
        unsubscribe_url=_link(links.unsubscribe_url, issue_number, token),
        view_url=_link(links.view_url, issue_number, token),
    )
    return values


def _link(template: str, issue_number: int, token: str) -> str:
    """template.format(issue=issue_number, token=token), from pieces split once per send."""
    pieces = _link_pieces(template, issue_number)
    return template.format(issue=issue_number, token=token) if pieces is None else token.join(pieces)


@lru_cache(maxsize=16)
def _link_pieces(template: str, issue_number: int) -> tuple[str, ...] | None:
    """The formatted link cut at each {token} (one piece when it has none), or None when only
    format() can say what it is ({token!r}, {token:>30}, a NUL: the mark used to cut it)."""
    if template.count("{token") != template.count("{token}") or "\x00" in template:
        return None
    pieces = tuple(template.format(issue=issue_number, token="\x00").split("\x00"))
    return pieces if len(pieces) == template.count("{token}") + 1 else None


SAMPLE_RECIPIENT = {
    "email": "reader@example.org",
    "name": "Sample Reader",
    "organisation": "Sample City Government",
    "city": "Sample City",
    "country": "Sample Country",
}


def envelope_for(recipient, settings, issue_number: int, delivery_id: str = "") -> Envelope:
    """The envelope of one audience Recipient for one issue (`delivery_id`: its ledger row's attempt)."""
    values = merge_values(
        recipient.email, recipient.name, recipient.fields,
        issue_number=issue_number, links=settings.links, token_secret=settings.token_secret,
    )
    return Envelope(email=recipient.email, name=recipient.name, fields=values, lists=recipient.lists,
                    line=recipient.line, delivery_id=delivery_id)


def sample_envelope(settings, issue_number: int, columns: Mapping[str, str] | None = None) -> Envelope:
    """Sample values for previews and test sends that are not personalised as anyone."""
    sample = {**SAMPLE_RECIPIENT, **(columns or {})}
    values = merge_values(
        sample["email"], sample["name"], sample,
        issue_number=issue_number, links=settings.links, token_secret=settings.token_secret,
    )
    return Envelope(email=sample["email"], name=sample["name"], fields=values)
