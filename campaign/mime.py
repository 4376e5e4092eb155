"""One complete email message for one recipient of one rendered issue.

SMTP and the outbox send these; the dry run writes a few of them as `.eml`.
SendGrid builds its own message from the same pieces (see
providers/sendgrid.py), so the headers that matter are named here once:
`list_unsubscribe()`, `list_id()` and `feedback_id()`.

Every header goes through the `email` package: names are encoded by
`email.headerregistry.Address`, long headers are folded by `email.policy.SMTP`,
and no value can carry a CR or LF into the header block.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import quote

from .config import Sender, WebLinks
from .merge import CONTROL_CHARACTERS, escape_header
from .personalize import Envelope, personalize
from .rendered import RenderedIssue

ONE_CLICK = "List-Unsubscribe=One-Click"
# SMTP folding (CRLF, 78 columns) for every header built from a value; a raw
# header we fold ourselves (List-Unsubscribe) is written exactly as given, so a
# long URL is never turned into an RFC 2047 encoded word that clients ignore.
# cte_type 7bit: bodies go out quoted-printable or base64, never raw 8-bit.
# (typeshed types clone() as the base Policy's, without EmailPolicy's refold_source.)
POLICY = email.policy.SMTP.clone(refold_source="none", cte_type="7bit")  # type: ignore[call-arg]


class UnusableAddress(ValueError):
    """An address that cannot be put in a header (control characters, no domain)."""


def build_message(
    issue: RenderedIssue,
    envelope: Envelope,
    *,
    sender: Sender,
    links: WebLinks,
    subject_prefix: str = "",
    date: datetime | None = None,
) -> EmailMessage:
    """The finished message for `envelope`: headers, then text/plain and text/html.

    Raises UnusableAddress when the recipient's address cannot be written
    into a To header; the caller records that recipient as rejected.
    """
    filled = personalize(issue, envelope, subject_prefix)
    domain = sender_domain(sender)
    message = EmailMessage(policy=POLICY)
    message["From"] = address(sender.from_name, sender.from_email)
    message["To"] = address(envelope.name, envelope.email)
    if sender.reply_to:
        message["Reply-To"] = address("", sender.reply_to)
    message["Subject"] = escape_header(filled.subject)
    message["Date"] = email.utils.format_datetime(date or datetime.now(timezone.utc))
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message["List-Id"] = list_id(sender)
    message["Feedback-ID"] = feedback_id(issue.number, sender)
    targets = list_unsubscribe_targets(envelope.unsubscribe_url, links, envelope.token)
    if targets:
        message.set_raw("List-Unsubscribe", "\n ".join(targets))
    if envelope.unsubscribe_url:
        message["List-Unsubscribe-Post"] = ONE_CLICK
    message.set_content(filled.text, subtype="plain", charset="utf-8")
    message.add_alternative(filled.html, subtype="html", charset="utf-8")
    return message


def address(name: str, addr: str) -> Address:
    """A header address; the display name is cleaned of control characters."""
    if not addr or CONTROL_CHARACTERS.search(addr) or addr.count("@") != 1:
        raise UnusableAddress(f"{addr!r} is not a usable email address")
    username, domain = addr.rsplit("@", 1)
    try:
        return Address(display_name=escape_header(name), username=username, domain=domain)
    except (ValueError, TypeError) as error:
        raise UnusableAddress(f"{addr!r} is not a usable email address ({error})") from None


def sender_domain(sender: Sender) -> str:
    return sender.from_email.rsplit("@", 1)[-1].lower()


def list_id(sender: Sender) -> str:
    """RFC 2919 List-Id, the same for every issue: `"WeGO e-Newsletter" <newsletter.wego.example.org>`.

    From `[sender] list_id` (by default "newsletter." + the From domain) and
    `list_name` (config fills it with newsletter_name).
    """
    identifier = sender.list_id or f"newsletter.{sender_domain(sender)}"
    name = escape_header(sender.list_name or sender.from_name).replace("\\", "").replace('"', "")
    return f'"{name}" <{identifier}>' if name else f"<{identifier}>"


def feedback_id(issue_number: int, sender: Sender) -> str:
    """Gmail's feedback loop groups complaints by this: `issue-30:<list id>:<From domain>`.

    Fields are issue, list and sender (Gmail's last field, the same for every mail).
    """
    identifier = sender.list_id or f"newsletter.{sender_domain(sender)}"
    return f"issue-{issue_number}:{identifier}:{sender_domain(sender)}"


def list_unsubscribe(unsubscribe_url: str, links: WebLinks, token: str = "") -> str:
    """RFC 2369 List-Unsubscribe: the recipient's one-click URL first, then the mailto.

    Both carry the recipient's opaque token (never the address): the URL in its
    query, the mailto in its subject (`unsubscribe TOKEN`), which
    `campaign suppress import-mbox` reads back from the unsubscribe inbox.
    """
    return ListUnsubscribe(links).header(unsubscribe_url, token)


def list_unsubscribe_targets(unsubscribe_url: str, links: WebLinks, token: str = "") -> list[str]:
    """`<https://...>,` and `<mailto:...>`: the pieces of List-Unsubscribe, one per folded line."""
    return ListUnsubscribe(links).targets(unsubscribe_url, token)


_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]*")   # a recipient_token: nothing to clean or percent-encode


class ListUnsubscribe:
    """List-Unsubscribe for many recipients of one send: the mailto's constant part is cleaned once."""

    __slots__ = ("_mailto",)

    def __init__(self, links: WebLinks):
        mailto = links.unsubscribe_mailto.removeprefix("mailto:")
        self._mailto = f"<mailto:{escape_header(mailto)}?subject=unsubscribe" if links.unsubscribe_mailto else ""

    def targets(self, unsubscribe_url: str, token: str = "") -> list[str]:
        targets = [f"<{escape_header(unsubscribe_url)}>"] if unsubscribe_url else []
        if self._mailto:
            targets.append(self._mailto_for(token))
        return [target + "," for target in targets[:-1]] + targets[-1:]

    def header(self, unsubscribe_url: str, token: str = "") -> str:
        """" ".join(self.targets(...)) without the lists: it is written once per recipient of a send."""
        url = f"<{escape_header(unsubscribe_url)}>" if unsubscribe_url else ""
        if not self._mailto:
            return url
        return f"{url}, {self._mailto_for(token)}" if url else self._mailto_for(token)

    def _mailto_for(self, token: str) -> str:
        if token and not _PLAIN_TOKEN.fullmatch(token):
            token = quote(escape_header(token), safe="")
        return f"{self._mailto}%20{token}>" if token else f"{self._mailto}>"
