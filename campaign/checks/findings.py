"""What every family of checks shares: the Finding, its severities, and where things are.

A finding says where (the content file and section, or "layouts" for what the
layouts produce, or campaign.toml), what is wrong, and what to do. Codes are
stable: scripts and the README name them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..content import Issue, Item, Section

ERROR, WARNING = "error", "warning"
LAYOUTS = "layouts"
CONFIG = "campaign.toml"


@dataclass(frozen=True)
class Finding:
    severity: str   # "error" | "warning"
    code: str       # stable, e.g. "link-placeholder"
    where: str      # content file and section, "layouts" or "campaign.toml"
    message: str    # what is wrong
    fix: str        # what to do

    def line(self) -> str:
        return f"{self.severity}: {self.where}: {self.message} [{self.code}]"


def place(path: Path, issue: Issue) -> str:
    """A content file relative to the issue folder's parent: `issue-30/02-recent-events/01-x.md`."""
    try:
        return str(path.relative_to(issue.folder.parent))
    except ValueError:
        return str(path)


def section_file(section: Section) -> Path:
    return section.source / "index.md" if section.source.is_dir() else section.source


def parts(issue: Issue) -> Iterator[tuple[str, Section, Section | Item]]:
    """Every section and item with where it comes from: `issue-30/x.md (section "Heading")`."""
    for section in issue.sections:
        yield f'{place(section_file(section), issue)} (section "{section.heading}")', section, section
        for item in section.items:
            yield f'{place(item.source, issue)} (section "{section.heading}")', section, item


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()
