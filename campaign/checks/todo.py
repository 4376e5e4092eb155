"""TODO markers left in the content: `campaign new` puts one in every field to write (`field-todo`)."""

from __future__ import annotations

import re
from pathlib import Path

from ..content import ISSUE_FILE, TODO_MARKER, Issue
from .findings import ERROR, Finding, place, section_file

YAML_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")
SHOWN = 60                       # characters of the marker's line quoted in the message


def check_todo_markers(issue: Issue) -> list[Finding]:
    """One error per line that still holds a TODO marker, naming the file, line and field."""
    files: list[tuple[Path, str]] = [(issue.folder / ISSUE_FILE, "")]
    for section in issue.sections:
        label = f' (section "{section.heading}")'
        files.append((section_file(section), label))
        files += [(item.source, label) for item in section.items]
    findings = []
    for path, label in files:
        for number, field, line in todo_lines(path):
            what = {"body": "the text", "comment": "a comment"}.get(field, f"field '{field}'")
            quoted = line if len(line) <= SHOWN else line[:SHOWN - 3] + "..."
            findings.append(Finding(ERROR, "field-todo", f"{place(path, issue)}:{number}{label}",
                                    f'{what} still holds a TODO marker: "{quoted}"',
                                    "replace the marker with the real words (or value), "
                                    "then run the check again"))
    return findings


def todo_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, field, the line) for each line of a content file holding a TODO marker.

    The field is the YAML key the line belongs to, "comment" for a YAML comment line, or
    "body" after a Markdown file's front matter.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):  # the content loader already reported an unreadable file
        return []
    in_yaml = path.suffix != ".md"
    fences = 0
    field = "body"
    found = []
    for number, line in enumerate(lines, start=1):
        if path.suffix == ".md" and fences < 2 and re.fullmatch(r"---[ \t]*", line):
            fences += 1
            in_yaml = fences == 1
            field = "body" if fences == 2 else field
            continue
        key = YAML_KEY.match(line) if in_yaml else None
        if key:
            field = key.group(1)
        if TODO_MARKER.search(line):
            comment = in_yaml and line.lstrip().startswith("#")
            found.append((number, "comment" if comment else field if in_yaml else "body", line.strip()))
    return found
