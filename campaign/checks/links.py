"""Links in the content and in what the layouts write: placeholders, malformed or http addresses, vague text."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..content import Issue, Item, Section
from ..page import Page, read_page
from ..merge import PLACEHOLDER
from ..prose import to_html
from .findings import ERROR, LAYOUTS, WARNING, Finding, parts

VAGUE_LINK_TEXT = {"click here", "here", "click", "this", "this link", "link", "more", "go", "this page"}
READ_MORE = {"read more", "more", "learn more", "continue reading"}


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    button: bool = False


def links_of(part: Section | Item) -> list[Link]:
    found = [Link(link.href, link.text) for link in read_page(to_html(part.body)).links] if part.body else []
    if part.link or part.link_text:
        found.append(Link(part.link, part.link_text or "Read more", button=True))
    return found


def link_problem(href: str) -> tuple[str, str, str, str] | None:
    """(severity, code, message, fix) for one href, or None when it is fine."""
    if href.strip() in ("", "#") or href.startswith("#"):
        return (ERROR, "link-placeholder", f"link target is a placeholder ({href!r})",
                "put the real address (https://...) in place of the placeholder")
    if PLACEHOLDER.fullmatch(href):
        return None
    if href.startswith("mailto:"):
        ok = re.fullmatch(r"mailto:[^@\s]+@[^@\s]+\.[^@\s]+", href.split("?")[0])
        return None if ok else (ERROR, "link-malformed", f"malformed mailto link {href!r}",
                                "write it as mailto:name@example.org")
    parts_ = urlsplit(href)
    if parts_.scheme not in ("http", "https") or not parts_.netloc or " " in href or "." not in parts_.netloc:
        return (ERROR, "link-malformed", f"malformed link {href!r}",
                "write a full address such as https://www.example.org/page")
    if parts_.scheme == "http":
        return (WARNING, "link-not-https", f"link is not https: {href}",
                "use the https:// address (check that the site answers on https)")
    return None


def check_content_links(issue: Issue) -> list[Finding]:
    findings = []
    read_more: dict[str, list[str]] = defaultdict(list)
    for where, _, part in parts(issue):
        for link in links_of(part):
            problem = link_problem(link.href)
            if problem:
                severity, code, message, fix = problem
                findings.append(Finding(severity, code, where, f'{message}, text "{link.text}"', fix))
            words = re.sub(r"[^\w\s]", "", link.text).strip().lower()
            if words in VAGUE_LINK_TEXT:
                findings.append(Finding(WARNING, "link-vague-text", where,
                                        f'link text "{link.text}" says nothing about where it goes',
                                        "make the linked words name the target, e.g. "
                                        "\"the list of participants\""))
            if words in READ_MORE and not problem:
                read_more[link.href].append(where)
    for href, places in read_more.items():
        if len(places) > 1:
            findings.append(Finding(WARNING, "link-duplicate-read-more", "; ".join(places),
                                    f'{len(places)} "Read more" links go to the same address {href}',
                                    "point each \"Read more\" at its own story"))
    return findings


def check_layout_links(page: Page, issue: Issue) -> list[Finding]:
    """Links the layouts write (view in browser, unsubscribe...): every one must be usable.

    A content link is recognised also as premailer rewrote it (a space becomes %20):
    the content check has already reported it at its file.
    """
    from_content = {link.href for _, _, part in parts(issue) for link in links_of(part)}
    findings = []
    for link in page.links:
        if link.href in from_content or unquote(link.href) in from_content:
            continue
        problem = link_problem(link.href)
        if problem:
            severity, code, message, fix = problem
            findings.append(Finding(severity, code, LAYOUTS, message, fix))
    return findings
