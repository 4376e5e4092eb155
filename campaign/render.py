"""Render once: content -> Jinja2 -> MJML -> mjml2html -> premailer -> HTML, plus the text twin.

(Work in progress: the pipeline functions land here; RenderedIssue is the contract.)
"""

from __future__ import annotations

from dataclasses import dataclass

from .personalize import MergeTemplate


@dataclass(frozen=True)
class RenderedIssue:
    """One issue rendered once, merge placeholders intact, ready to fill many times."""

    number: int
    subject: MergeTemplate
    html: MergeTemplate
    text: MergeTemplate
    preheader: str
    mjml: str = ""
    issue: object = None  # the content.Issue it came from

    def field_names(self) -> set[str]:
        return self.subject.field_names() | self.html.field_names() | self.text.field_names()
