"""Help reads like a manual: options show what to type (N, FILE, EMAIL), not Python type names.

(typer labels a positional argument with its type, `FILE <file>`, whatever its metavar: that stays.)
"""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from campaign.cli import app

TYPE_LABEL = re.compile(r"<(bool|int|int range|str|file|path|list\[str\]|float)>")


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():  # typer ships its own click: duck-type groups
            walk(sub, prefix + [name])

    walk(root, [])
    assert len(paths) > 10, paths  # every command and group was found
    return paths


def test_no_option_in_any_help_page_shows_a_python_type_name():
    runner = CliRunner()
    shown = {}
    for path in _command_paths():
        result = runner.invoke(app, path + ["--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        option_lines = [line for line in result.output.splitlines() if line.strip(" │*").startswith("-")]
        labels = sorted(set(TYPE_LABEL.findall("\n".join(option_lines))))
        if labels:
            shown[" ".join(path) or "campaign"] = labels
    assert shown == {}
