"""What the law and the big mailbox providers require: unsubscribe links, postal address, List-Unsubscribe,
and the subject and preheader lengths phones show whole."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..config import Settings
from ..page import Page
from ..personalize import SAMPLE_RECIPIENT
from ..render import RenderedIssue
from .findings import CONFIG, ERROR, LAYOUTS, WARNING, Finding, place, squash

SUBJECT_RANGE = (15, 70)         # characters; longer subjects are cut on phones
PREHEADER_RANGE = (30, 150)


def check_compliance(rendered: RenderedIssue, page: Page, settings: Settings) -> list[Finding]:
    findings = []
    visible = [link for link in page.links if link.href == "[[unsubscribe_url]]" and link.text.strip()
               and not link.hidden]
    if not visible:
        findings.append(Finding(ERROR, "unsubscribe-missing-html", LAYOUTS,
                                "the HTML part has no visible unsubscribe link",
                                'add <a href="[[unsubscribe_url]]">Unsubscribe</a> to the footer of base.mjml.j2'))
    if "[[unsubscribe_url]]" not in rendered.text.source:
        findings.append(Finding(ERROR, "unsubscribe-missing-text", LAYOUTS,
                                "the text part has no unsubscribe link",
                                "add 'Unsubscribe: [[unsubscribe_url]]' to issue.txt.j2"))
    address = squash(settings.sender.postal_address)
    for part, text, layout in (("HTML", page.text, "base.mjml.j2"), ("text", rendered.text.source, "issue.txt.j2")):
        if not address or address not in squash(text):
            findings.append(Finding(ERROR, "postal-address-missing", LAYOUTS if address else CONFIG,
                                    f"the {part} part does not show the sender's postal address",
                                    "set sender.postal_address in campaign.toml" if not address
                                    else f"show sender.postal_address in the footer of {layout}"))
    links = settings.links
    if not links.unsubscribe_url.startswith("https://") or "{token}" not in links.unsubscribe_url:
        findings.append(Finding(ERROR, "list-unsubscribe-url", CONFIG,
                                f"links.unsubscribe_url {links.unsubscribe_url!r} is not an https:// URL "
                                "with {token}; Gmail and Yahoo require one-click List-Unsubscribe",
                                "set links.unsubscribe_url = \"https://.../unsubscribe?t={token}\""))
    if not re.fullmatch(r"(mailto:)?[^@\s]+@[^@\s]+\.[^@\s]+", links.unsubscribe_mailto):
        findings.append(Finding(WARNING, "list-unsubscribe-mailto", CONFIG,
                                f"links.unsubscribe_mailto {links.unsubscribe_mailto!r} is not an address",
                                "set links.unsubscribe_mailto to an address that handles unsubscribes"))
    issue = rendered.content()
    meta = place(issue.folder / "issue.yaml", issue)
    preheader = squash(issue.preheader)
    if not preheader or preheader not in squash(page.text):
        findings.append(Finding(WARNING, "preheader-missing", meta, "the email has no preheader",
                                "write 'preheader:' in issue.yaml, one sentence after the subject"))
    elif not PREHEADER_RANGE[0] <= len(preheader) <= PREHEADER_RANGE[1]:
        findings.append(Finding(WARNING, "preheader-length", meta,
                                f"the preheader is {len(preheader)} characters",
                                f"keep it between {PREHEADER_RANGE[0]} and {PREHEADER_RANGE[1]} characters"))
    subject = rendered.subject.fill({name: SAMPLE_RECIPIENT.get(name, "") for name in
                                     rendered.subject.field_names()}, str)
    if not SUBJECT_RANGE[0] <= len(subject) <= SUBJECT_RANGE[1]:
        findings.append(Finding(WARNING, "subject-length", meta, f"the subject is {len(subject)} characters",
                                f"keep it between {SUBJECT_RANGE[0]} and {SUBJECT_RANGE[1]} characters "
                                "so phones show it whole"))
    return findings


# RFC 2606 names that never reach anyone: fine for a rehearsal, never for a real send.
PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net", "example", "test", "invalid")


def placeholder_settings(settings: Settings) -> list[Finding]:
    """[sender] and [links] values still at an example.org placeholder (the built-in defaults are)."""
    values = {f"[sender] {name}": getattr(settings.sender, name) for name in ("from_email", "reply_to")}
    values.update({f"[links] {name}": getattr(settings.links, name)
                   for name in ("unsubscribe_url", "unsubscribe_mailto", "view_url", "images_url")})
    findings = []
    for setting, value in values.items():
        host = urlsplit(value).hostname if "://" in value else value.rpartition("@")[2]
        host = (host or "").lower().rstrip(".")
        if value and any(host == domain or host.endswith("." + domain) for domain in PLACEHOLDER_DOMAINS):
            findings.append(Finding(WARNING, "config-placeholder", CONFIG,
                                    f"{setting} {value!r} is a placeholder ({host} reaches nobody)",
                                    f"set {setting.split()[1]} in the {setting.split()[0]} table of campaign.toml "
                                    "to your real address before a real send"))
    return findings
