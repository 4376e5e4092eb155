"""The content itself: template text left behind, unknown merge fields, repeats, past events, empty sections."""

from __future__ import annotations

import re
from collections import defaultdict

from ..content import Issue, Item
from ..merge import PLACEHOLDER
from ..render import RenderedIssue
from .findings import ERROR, LAYOUTS, WARNING, Finding, parts, place, squash

REPEAT_MIN_CHARS = 60            # shorter paragraphs ("Read more.") may repeat


def check_fields(rendered: RenderedIssue, known: set[str]) -> list[Finding]:
    """Template syntax left in the content, or merge fields nobody has a value for."""
    findings = []
    issue = rendered.content()
    texts = [(where, f"{part.body} {getattr(part, 'title', '')} {section.heading if part is section else ''}")
             for where, section, part in parts(issue)]
    texts.append((place(issue.folder / "issue.yaml", issue), f"{issue.subject} {issue.preheader}"))
    for where, text in texts:
        for leftover in re.findall(r"\{\{.*?\}\}|\{%.*?%\}|\{\{|\{%", text):
            findings.append(Finding(ERROR, "field-unfilled", where, f"unfilled template text {leftover!r}",
                                    "write the final words; content files are not templates"))
    for where, text in [("the rendered HTML", rendered.html.source), ("the rendered text", rendered.text.source)]:
        if "{{" in text or "{%" in text:
            findings.append(Finding(ERROR, "field-unfilled", LAYOUTS, f"{where} still contains '{{{{' or '{{%'",
                                    "fix the layout or the content that leaves template syntax behind"))
    for name in sorted(rendered.field_names() - known):
        findings.append(Finding(ERROR, "field-unknown", LAYOUTS if name not in content_fields(issue) else
                                "the issue's content", f"merge field [[{name}]] has no value for recipients",
                                f"add a '{name}' column to the recipients file, or remove [[{name}]]"))
    return findings


def content_fields(issue: Issue) -> set[str]:
    return {match.group(1) for _, _, part in parts(issue) for match in PLACEHOLDER.finditer(part.body)}


def paragraphs(text: str) -> list[str]:
    return [squash(block) for block in re.split(r"\n\s*\n", text) if len(squash(block)) >= REPEAT_MIN_CHARS]


def check_repeated_paragraphs(issue: Issue) -> list[Finding]:
    seen: dict[str, list[str]] = defaultdict(list)
    for where, _, part in parts(issue):
        for paragraph in paragraphs(part.body):
            seen[paragraph].append(where)
    return [Finding(WARNING, "paragraph-repeated", "; ".join(dict.fromkeys(places)),
                    f'paragraph appears {len(places)} times: "{paragraph[:70]}..."',
                    "keep it once, or say something specific in each place")
            for paragraph, places in seen.items() if len(places) > 1]


def check_event_dates(issue: Issue) -> list[Finding]:
    return [Finding(ERROR, "event-in-past", where,
                    f'upcoming "{part.title}" is dated {part.date}, before the issue\'s publication '
                    f"date {issue.published}", "correct 'date:', or move it to the recent events")
            for where, section, part in parts(issue)
            if section.kind == "upcoming" and isinstance(part, Item) and part.date and part.date < issue.published]


def check_empty_sections(issue: Issue) -> list[Finding]:
    findings = []
    for where, section, part in parts(issue):
        if part is section and not section.body.strip() and not section.items:
            findings.append(Finding(ERROR, "section-empty", where, f'section "{section.heading}" has no text',
                                    "write its body, add items, or remove the section"))
        elif isinstance(part, Item) and not part.body.strip():
            findings.append(Finding(WARNING, "item-empty", where, f'"{part.title}" has no text',
                                    "write a few sentences after the front matter"))
    return findings
