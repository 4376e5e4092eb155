"""`campaign new`: start issue N from issue M's structure, with a TODO marker in every field to write.

The new issue keeps what does not change from one quarter to the next: the
sections, their kinds, headings and labels, the newsletter's title and
language. Everything an editor writes afresh (subject, preheader, the cover
story, one example item per folder section, every text) holds a visible
`TODO: ...` marker, which `campaign check` reports as an error (`field-todo`) until
it is replaced. Pictures are not copied. The folder is built beside its final
place and renamed into it in one step, so an error never leaves half an issue.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .content import (ISSUE_FILE, SECTION_INDEX, SECTION_KINDS, TODO_MARKER, Issue, Item, Section, yaml_loader,
                      available_issues, issue_folder, load_issue)
from .errors import UsageError

TODO = "TODO:"
EDITION = re.compile(r"Q([1-4])\s+(\d{4})")
PLAIN = re.compile(r"[A-Za-z][\w .,()&'-]*")  # words that YAML reads back unquoted
COVER_KIND = "cover"                    # its heading is the cover story's subject: written afresh
ITEM_NAMES = {"events": "event", "upcoming": "activity", "members": "member", "trends": "story"}
FIELD_ORDER = ("kind", "heading", "label", "title", "when", "date", "place", "image", "alt", "link", "link_text")
HINTS = {
    "heading": "the section's heading",
    "title": "the title of this item",
    "when": "when it happens, as readers see it, e.g. 12 – 14 October",
    "date": "the first day, as YYYY-MM-DD",
    "place": "city and country, or Online",
    "image": "name of a picture file you put in images/",
    "alt": "a few words saying what the picture shows (or decorative: true instead, if it only decorates)",
    "link": "the https:// address of the full story",
    "link_text": "the words on the button, e.g. Read more",
}
COVER_HINTS = {"heading": "the name of the city or story on the cover"}
BODY_HINTS = {
    "cover": "the cover story, in Markdown: a few paragraphs about the featured city",
    "text": "the section's text, in Markdown: paragraphs separated by a blank line",
    "events": "a few sentences on what happened and who took part",
    "upcoming": "a few sentences on the event and how members can take part",
    "members": "a few sentences introducing the new member",
    "trends": "a two-line summary of the news",
}
DEFAULT_BODY_HINT = "the text, in Markdown"


@dataclass(frozen=True)
class NewIssue:
    """What `new_issue` created."""

    folder: Path
    source: int
    edition: str
    published: dt.date
    files: tuple[Path, ...]           # every file written, in the issue's order
    todo_count: int                   # TODO markers waiting for the editor


def next_edition(edition: str) -> str | None:
    """The quarter after `edition`: Q2 2022 -> Q3 2022, Q4 2022 -> Q1 2023; None if not 'Qn YYYY'."""
    match = EDITION.fullmatch(edition.strip())
    if not match:
        return None
    quarter, year = int(match.group(1)), int(match.group(2))
    return f"Q{quarter % 4 + 1} {year + (quarter == 4)}"


def three_months_after(day: dt.date) -> dt.date:
    month = day.month + 3
    year, month = day.year + (month - 1) // 12, (month - 1) % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def source_number(content_dir: Path, number: int, source: int | None) -> int:
    """The issue to start from: `source`, or the latest issue before `number`."""
    if source is not None:
        return source
    earlier = [n for n in available_issues(content_dir) if n < number]
    if not earlier:
        raise UsageError(f"no issue before {number} in {content_dir} to start from; pass --from N")
    return earlier[-1]


def new_issue(content_dir: Path, number: int, source: int | None = None) -> NewIssue:
    """Create content/issue-`number`/ from issue `source`'s structure; refuse to touch an existing issue."""
    folder = issue_folder(content_dir, number)
    if folder.exists():
        raise UsageError(f"{folder} already exists; campaign new never overwrites an issue "
                         "(pick another --issue, or move that folder away first)")
    origin = load_issue(content_dir, source_number(content_dir, number, source))
    edition = next_edition(origin.edition)
    published = three_months_after(origin.published)
    files = {Path(ISSUE_FILE): issue_yaml(origin, number, edition, published)}
    for section in origin.sections:
        files.update(section_files(section, published))
    building = Path(tempfile.mkdtemp(dir=content_dir, prefix=f".{folder.name}.", suffix=".new"))
    try:
        for relative, text in files.items():
            (building / relative).parent.mkdir(parents=True, exist_ok=True)
            (building / relative).write_text(text, encoding="utf-8")
        (building / "images").mkdir()
        os.rename(building, folder)  # fails rather than replace a folder made meanwhile (unless empty)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return NewIssue(folder=folder, source=origin.number, edition=edition or "", published=published,
                    files=tuple(folder / relative for relative in files),
                    todo_count=sum(len(TODO_MARKER.findall(text)) for text in files.values()))


def issue_yaml(origin: Issue, number: int, edition: str | None, published: dt.date) -> str:
    lines = [
        f"# Issue {number} of {origin.title}, started from issue {origin.number} by `campaign new`.",
        f"# Write each field marked below; `campaign check --issue {number}` lists those left (field-todo).",
        "# What each field means: README.md, \"Content files\".",
        "",
        f"number: {number}",
        f"edition: {scalar(edition or todo('the quarter this issue covers, as Qn YYYY'))}",
        f"title: {scalar(origin.title)}",
        f"subject: {scalar(todo('the subject line, at most about 70 characters'))}",
        f"preheader: {scalar(todo('one sentence that inboxes show after the subject'))}",
        f"published: {published.isoformat()}  # {todo('the day it goes out, as YYYY-MM-DD')}",
        f"language: {scalar(origin.language)}",
    ]
    return "\n".join(lines) + "\n"


def section_files(section: Section, published: dt.date) -> dict[Path, str]:
    """The section's file (or folder with index.md and one example item), relative to the issue."""
    kept = {"kind": section.kind, "label": section.label}
    if section.kind != COVER_KIND:
        kept["heading"] = section.heading
    fields = present_fields(section, SECTION_KINDS.get(section.kind, {}).get("section", ("heading",)))
    front = front_matter(fields, kept, published, COVER_HINTS if section.kind == COVER_KIND else None)
    prefix = section.source.name[:2]
    if not section.source.is_dir():
        name = f"{prefix}-{COVER_KIND}.md" if section.kind == COVER_KIND else section.source.name
        return {Path(name): markdown_file(front, body_hint(section.kind))}
    folder = Path(section.source.name)
    introduction = todo("a short introduction to the section, in Markdown") if section.body else ""
    files = {folder / SECTION_INDEX: markdown_file(front, introduction)}
    if section.items:
        example = section.items[0]
        required = SECTION_KINDS.get(section.kind, {}).get("item", ("title",))
        item_front = front_matter(present_fields(example, required), {}, published)
        name = f"01-{ITEM_NAMES.get(section.kind, 'item')}.md"
        files[folder / name] = markdown_file(item_front, body_hint(section.kind))
    return files


def present_fields(part: Section | Item, required: tuple[str, ...]) -> list[str]:
    """The fields the source part fills, plus those its kind requires, in the usual order."""
    filled = {name for name in FIELD_ORDER if getattr(part, name, None) not in (None, "")}
    if "image" in filled or "image" in required:
        filled.add("alt")  # a new picture needs its own words, even where last quarter's only decorated
    return [name for name in FIELD_ORDER if name in filled or name in required]


def front_matter(fields: list[str], kept: dict[str, str], published: dt.date,
                 hints: dict[str, str] | None = None) -> list[str]:
    hints = hints or {}
    lines = []
    for name in fields:
        if name in kept:
            if kept[name]:
                lines.append(f"{name}: {scalar(kept[name])}")
        elif name == "date":  # a date must stay a date for the issue to load: the marker is a comment
            lines.append(f"date: {published.isoformat()}  # {todo(HINTS['date'])}")
        elif name in HINTS:
            lines.append(f"{name}: {scalar(todo(hints.get(name, HINTS[name])))}")
    return lines


def markdown_file(front: list[str], body: str) -> str:
    text = "---\n" + "".join(line + "\n" for line in front) + "---\n"
    return text + (f"\n{body}\n" if body else "")


def body_hint(kind: str) -> str:
    return todo(BODY_HINTS.get(kind, DEFAULT_BODY_HINT))


def todo(hint: str) -> str:
    return f"{TODO} {hint}"


def scalar(value: str) -> str:
    """A YAML string that reads back as the same string: plain when safe, else in JSON's quotes (valid YAML)."""
    if PLAIN.fullmatch(value) and yaml.load(value, Loader=yaml_loader()) == value:
        return value
    return json.dumps(value, ensure_ascii=False)
