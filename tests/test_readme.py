"""The README is the manual: every command and option it shows must exist, and every command is shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from campaign.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def readme_commands() -> list[list[str]]:
    """Every `campaign ...` invocation inside the README's ```sh code blocks, as words."""
    commands = []
    language = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
            continue
        if language != "sh":
            continue
        for part in re.split(r"&&|\|", line.split(" #")[0]):
            words = shlex.split(part.strip()) if part.strip() else []
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words and words[0].endswith("campaign"):
                commands.append(words[1:])
    return commands


def command_tree() -> dict:
    root = typer.main.get_command(app)
    tree: dict = {}

    def walk(command, path: tuple[str, ...]) -> None:
        tree[path] = command
        if is_group(command):
            for name, child in command.commands.items():
                walk(child, path + (name,))

    walk(root, ())
    return tree


def is_group(command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def split_invocation(words: list[str], tree) -> tuple[tuple[str, ...], list[str]]:
    path: tuple[str, ...] = ()
    for word in words:
        if path + (word,) in tree:
            path += (word,)
        else:
            break
    return path, [word.split("=")[0] for word in words if word.startswith("--")]


def test_readme_shows_commands():
    assert len(readme_commands()) >= 10


@pytest.mark.parametrize("words", readme_commands(), ids=lambda words: " ".join(words)[:60])
def test_every_readme_command_and_option_exists(words):
    tree = command_tree()
    path, options = split_invocation(words, tree)
    assert path, f"README shows an unknown command: campaign {' '.join(words)}"
    command = tree[path]
    known = {opt for param in command.params for opt in getattr(param, "opts", [])} | {"--help"}
    for option in options:
        assert option in known, f"README: `campaign {' '.join(path)}` has no option {option}"


def test_every_command_is_in_the_readme():
    tree = command_tree()
    shown = {split_invocation(words, tree)[0] for words in readme_commands()}
    leaves = {path for path, command in tree.items() if path and not is_group(command)}
    missing = sorted(" ".join(path) for path in leaves - shown)
    assert not missing, f"commands with no example in the README: {missing}"


def test_every_command_has_help():
    for path, command in command_tree().items():
        if path:
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, result.output
            assert (command.help or "").strip(), f"`campaign {' '.join(path)}` has no help text"
