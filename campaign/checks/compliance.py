"""What the law and the big mailbox providers require: unsubscribe links, postal address, List-Unsubscribe,
and the subject and preheader lengths phones show whole."""

from __future__ import annotations

import re

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
