"""The report on one issue: every family of checks run on one render.

`run_checks(settings, number)` renders the issue once and returns findings;
each check is a pure function of the rendered issue, its content or the
settings, returning a list of `Finding` (one module per family: links, images,
size, compliance, signing, content, todo, css, contrast, spam). gate.py turns the findings into a send's decision.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from ..config import Settings
from ..page import read_page
from ..personalize import personalize
from ..render import RenderedIssue, read_theme, render_issue
from ..spam import SpamReport, SpamRun
from . import spam
from .compliance import check_compliance, placeholder_settings
from .signing import check_signing
from .contrast import check_contrast
from .content import check_empty_sections, check_event_dates, check_fields, check_repeated_paragraphs
from .css import check_css
from .findings import ERROR, WARNING, Finding
from .images import check_content_images, check_layout_images
from .links import check_content_links, check_layout_links
from .size import check_size, known_fields, long_envelope
from .todo import check_todo_markers


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]
    html_bytes: int                  # final HTML of the longest personalisation
    style_bytes: tuple[int, ...]     # each <style> block
    spam: SpamReport | None = None   # when SpamAssassin ran
    notes: tuple[str, ...] = ()      # e.g. "SpamAssassin is not installed"

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == ERROR]


def run_checks(settings: Settings, number: int, *, deliverability: bool = True) -> list[Finding]:
    """Every finding for issue `number`, errors first."""
    return list(check_issue(settings, number, deliverability=deliverability).findings)


def check_issue(settings: Settings, number: int, *, rendered: RenderedIssue | None = None,
                deliverability: bool = True, spam_run: SpamRun | None = None) -> CheckReport:
    """Render (once) and check issue `number`; `rendered` reuses a render made by the caller.

    SpamAssassin takes a second or two in a process of its own: started first (or by the caller,
    `spam_run`, on `rendered`), it runs while the rest is checked.
    """
    rendered = rendered or render_issue(settings, number)
    if spam_run is None and deliverability:
        spam_run = spam.start_scoring(settings, rendered)
    with spam_run or nullcontext():
        issue = rendered.content()
        known = known_fields(settings)
        longest = personalize(rendered, long_envelope(settings, number, known)).html
        page = read_page(rendered.html.source)
        findings = [
            *check_content_links(issue),
            *check_layout_links(page, issue),
            *check_content_images(issue),
            *check_layout_images(page),
            *check_size(longest, page, issue),
            *check_compliance(rendered, page, settings),
            *placeholder_settings(settings),
            *check_signing(settings),
            *check_fields(rendered, known),
            *check_repeated_paragraphs(issue),
            *check_event_dates(issue),
            *check_empty_sections(issue),
            *check_todo_markers(issue),
            *check_css(page),
            *check_contrast(rendered.html.source, read_theme(settings.layouts_dir)),
        ]
        spam_report = spam_run.report() if spam_run else None
    notes: tuple[str, ...] = ()
    if spam_report is not None:
        findings += spam.findings_for(spam_report)
    elif deliverability:
        notes = (f"SpamAssassin is not installed, so no spam score: {spam.INSTALL_HINT}",)
    order = {ERROR: 0, WARNING: 1}
    findings.sort(key=lambda finding: order[finding.severity])
    return CheckReport(findings=tuple(findings), html_bytes=len(longest.encode("utf-8")),
                       style_bytes=tuple(len(block.encode("utf-8")) for block in page.style_blocks),
                       spam=spam_report, notes=notes)
