"""Where the tool writes: a build folder or ledger path that cannot be used is one line, never a traceback.

Issue 10, bug 2. The tests run as whatever user runs the suite (often root in CI,
where permissions do not stop anything), so the unusable paths are ones no user
can write: a folder whose place is taken by a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project's content, layouts and recipients, and a file named `blocker` where a folder would go."""
    for folder in ("content", "layouts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "recipients.example.csv", tmp_path / "recipients.example.csv")
    (tmp_path / "blocker").write_text("a file, not a folder\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_TOKEN_SECRET", "test-secret")
    return tmp_path


def configure(project: Path, **paths: str) -> None:
    (project / "campaign.toml").write_text("".join(f'{key} = "{value}"\n' for key, value in paths.items()),
                                           encoding="utf-8")


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output      # a dry run prints the check's findings (indented) first
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_a_build_folder_blocked_by_a_file_is_one_line_for_preview(project):
    configure(project, build_dir="blocker/build")
    assert_one_line_error(run("preview", "--issue", "30"), "blocker", "build_dir")


def test_a_build_folder_blocked_by_a_file_is_one_line_for_a_dry_run(project):
    configure(project, build_dir="blocker/build")
    assert_one_line_error(run("send", "--issue", "30", "--dry-run", "--provider", "outbox"), "blocker", "build_dir")


def test_a_ledger_path_blocked_by_a_file_is_one_line(project):
    configure(project, database="blocker/campaign.db")
    assert_one_line_error(run("suppress", "add", "ana@example.org", "--reason", "unsubscribed"),
                          "blocker", "database")


def test_a_ledger_path_that_is_a_folder_is_one_line(project):
    (project / "ledger-folder").mkdir()
    configure(project, database="ledger-folder")
    assert_one_line_error(run("suppress", "add", "ana@example.org", "--reason", "unsubscribed"),
                          "ledger-folder")


def test_the_output_folder_is_not_setuptools_build_folder(tmp_path, monkeypatch):
    """`pip install .` writes build/lib/campaign/; the issues go elsewhere, by default and in this project."""
    from campaign.config import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_TOKEN_SECRET", "test-secret")
    assert load_settings().build_dir == tmp_path / "output"
    assert load_settings(ROOT / "campaign.toml").build_dir == ROOT / "output"
