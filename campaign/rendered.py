"""`RenderedIssue`, the render's result (campaign/render.py), in a module of its own.

It crosses to the sending process from a builder process that rendered the issue (send/builder.py),
and every stage after the render takes it; none of them then imports Jinja2, MJML, Markdown or YAML,
which only the render needs (about 40 ms of a large send's start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ContentError
from .merge import MergeTemplate

if TYPE_CHECKING:
    from .content import Issue


@dataclass(frozen=True)
class RenderedIssue:
    """One issue rendered once, merge placeholders intact, ready to fill many times."""

    number: int
    subject: MergeTemplate
    html: MergeTemplate
    text: MergeTemplate
    preheader: str
    mjml: str = ""
    issue: Issue | None = None

    def field_names(self) -> set[str]:
        return self.subject.field_names() | self.html.field_names() | self.text.field_names()

    def content(self) -> Issue:
        """The Issue this was rendered from: every render_issue result has it (one built by hand may not)."""
        if self.issue is None:
            raise ContentError(f"issue {self.number} was rendered without its content files")
        return self.issue
