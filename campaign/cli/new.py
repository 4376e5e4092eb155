"""`campaign new`: start the next issue from the last one's structure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import command
from .options import ConfigOption, IssueOption, settings_from
from .output import say


@command("new")
def new(
    issue: IssueOption,
    source: Annotated[Optional[int], typer.Option(
        "--from", metavar="N", min=1, help="Issue to take the structure from (default: the latest one before --issue).")] = None,
    config: ConfigOption = None,
) -> None:
    """Start a new issue: the sections of an earlier one, with a TODO marker in every field to write."""
    from ..scaffold import new_issue  # noqa: PLC0415  (lazy, like every command's library: a quick --help)
    settings = settings_from(config)
    created = new_issue(settings.content_dir, issue, source)
    edition = created.edition or "TODO (the earlier edition is not 'Qn YYYY')"
    say(f"Created {shown(created.folder)}/ from issue {created.source}: edition {edition}, "
        f"published {created.published} (change it in issue.yaml if needed).")
    for path in created.files:
        say(f"  {shown(path)}")
    say(f"  {shown(created.folder / 'images')}/  (empty: put the pictures here; none were copied)")
    say(f"{created.todo_count} TODO markers to replace. Next:")
    say(f"  campaign preview --issue {issue} --serve     # write with the live preview open")
    say(f"  campaign check --issue {issue}               # lists every TODO left (field-todo)")
    say(f"  campaign send --issue {issue} --test-to you@example.org")
    say(f"  campaign send --issue {issue}")


def shown(path: Path) -> str:
    """A path relative to the current folder where it is inside it, else as is."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)
