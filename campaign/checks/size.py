"""Size: the final HTML of the longest personalisation, and each <style> block, against Gmail's limits."""

from __future__ import annotations

from ..config import Settings
from ..audience import recipient_columns
from ..content import Issue
from ..page import Page
from ..merge import BUILTIN_FIELDS
from ..personalize import Envelope, merge_values
from .findings import ERROR, LAYOUTS, Finding, parts, place

HTML_LIMIT = 100 * 1024          # Gmail clips messages near 102 KB; keep a margin
STYLE_LIMIT = 16 * 1024          # Gmail drops a <style> block over 16 KB (caniemail html-style)
LONG = 120                       # characters in each long sample value for the size check


def check_size(longest_html: str, page: Page, issue: Issue) -> list[Finding]:
    findings = []
    size = len(longest_html.encode("utf-8"))
    if size > HTML_LIMIT:
        where, _, longest = max(parts(issue), key=lambda part: len(part[2].body.encode("utf-8")))
        findings.append(Finding(ERROR, "html-too-large", f"{place(issue.folder, issue)}/, longest text in {where} "
                                f"({len(longest.body.encode('utf-8')) / 1024:.0f} KB)",
                                f"final HTML is {size / 1024:.0f} KB for the longest personalisation; "
                                f"Gmail clips messages over about 102 KB (limit here {HTML_LIMIT // 1024} KB)",
                                "shorten the stories and link to the full text on the website"))
    for block in page.style_blocks:
        if len(block.encode("utf-8")) > STYLE_LIMIT:
            findings.append(Finding(ERROR, "style-too-large", LAYOUTS,
                                    f"a <style> block is {len(block.encode()) / 1024:.0f} KB; Gmail ignores "
                                    "style blocks over 16 KB", "trim the CSS in the layouts' mj-style"))
    return findings


def known_fields(settings: Settings) -> set[str]:
    """Merge fields a layout or content may use: the built-in ones plus the CSV columns (as a send checks)."""
    return (set(BUILTIN_FIELDS) | set(recipient_columns(settings.recipients))) - {"lists"}


def long_envelope(settings: Settings, number: int, fields: set[str]) -> Envelope:
    """A recipient whose every value is long: the biggest message anyone can get."""
    columns = {name: "W" * LONG for name in fields}
    email = "x" * 64 + "@" + "long-organisation-domain." + "example.org"
    values = merge_values(email, "W" * LONG, columns, issue_number=number, links=settings.links,
                          token_secret=settings.token_secret)
    return Envelope(email=email, name="W" * LONG, fields=values)
