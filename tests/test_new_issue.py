"""`campaign new`: issue 31 started from issue 30's structure, with no word of its text and a TODO in every field."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.checks import check_todo_markers
from campaign.cli import app
from campaign.config import load_settings
from campaign.content import load_issue
from campaign.scaffold import new_issue, next_edition, three_months_after

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

ISSUE_31_FILES = {
    "issue.yaml",
    "01-cover.md",
    "02-recent-events/index.md", "02-recent-events/01-event.md",
    "03-secretariat-activities.md",
    "04-upcoming-activities/index.md", "04-upcoming-activities/01-activity.md",
    "05-new-members/index.md", "05-new-members/01-member.md",
    "06-smart-city-trends/index.md", "06-smart-city-trends/01-story.md",
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project (configuration, content, layouts, recipients) in a temporary folder."""
    for folder in ("content", "layouts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for name in ("campaign.toml", "recipients.example.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def new(*args: str):
    return runner.invoke(app, ["new", *args])


def files_of(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text(encoding="utf-8")
            for path in sorted(folder.rglob("*")) if path.is_file()}


def sentences(text: str) -> list[str]:
    """Every sentence (or line) of four words or more, without Markdown and YAML punctuation."""
    pieces = re.split(r"(?<=[.!?])\s+|\n+", text)
    cleaned = (re.sub(r"[\[\]()*#>\"]|^\s*[\w-]+:\s", " ", piece) for piece in pieces)
    return [" ".join(piece.split()) for piece in cleaned if len(piece.split()) >= 4]


def test_new_issue_keeps_the_structure_and_writes_a_todo_in_every_field(project):
    result = new("--issue", "31", "--from", "30")
    assert result.exit_code == 0, result.output
    folder = project / "content" / "issue-31"
    assert set(files_of(folder)) == ISSUE_31_FILES
    assert (folder / "images").is_dir() and not list((folder / "images").iterdir()), "pictures are not copied"
    for relative in ISSUE_31_FILES:
        assert f"content/issue-31/{relative}" in result.output
    assert "campaign preview --issue 31 --serve" in result.output and "campaign check --issue 31" in result.output

    issue = load_issue(project / "content", 31)
    assert (issue.number, issue.edition, issue.title) == (31, "Q3 2022", "WeGO e-Newsletter")
    assert issue.subject.startswith("TODO:") and issue.preheader.startswith("TODO:")
    assert [(s.kind, s.label) for s in issue.sections] == [
        (s.kind, s.label) for s in load_issue(project / "content", 30).sections]
    assert [s.heading for s in issue.sections[1:]] == [
        "Recent events", "WeGO Secretariat activities", "Upcoming activities", "New members", "Smart city trends"]
    assert issue.sections[0].heading.startswith("TODO:"), "the cover story is new each quarter"
    for section in issue.sections:
        assert len(section.items) == (1 if section.source.is_dir() else 0)
        for part in (section, *section.items):
            assert not part.body or part.body.startswith("TODO:")
            assert not part.image or part.alt.startswith("TODO:"), f"{part.source}: a new picture needs alt text"
            for name in ("title", "when", "place", "image", "alt", "link", "link_text"):
                value = getattr(part, name, "")
                assert not value or value.startswith("TODO:"), f"{part.source}: {name} = {value!r}"


def test_new_issue_copies_no_sentence_of_the_earlier_issue(project):
    assert new("--issue", "31", "--from", "30").exit_code == 0
    source = project / "content" / "issue-30"
    earlier = sentences("\n".join(path.read_text(encoding="utf-8") for path in source.rglob("*")
                                  if path.suffix in (".md", ".yaml")))
    assert len(earlier) > 80, "the split found issue 30's sentences"
    written = " ".join(" ".join(text.split()) for text in files_of(project / "content" / "issue-31").values())
    written = " ".join(re.sub(r"[\[\]()*#>\"]", " ", written).split())
    copied = [sentence for sentence in earlier if sentence in written]
    assert not copied, copied


def test_check_fails_listing_every_todo_marker_with_file_line_and_field(project):
    assert new("--issue", "31", "--from", "30").exit_code == 0
    folder = project / "content" / "issue-31"
    markers = {(relative, number) for relative, text in files_of(folder).items()
               for number, line in enumerate(text.splitlines(), start=1) if "TODO" in line}
    result = runner.invoke(app, ["check", "--issue", "31", "--no-spam"])
    assert result.exit_code == 1, result.output
    reported = re.findall(r"error field-todo\n  where: issue-31/(\S+):(\d+)", result.output)
    assert {(relative, int(number)) for relative, number in reported} == markers
    assert len(reported) == len(markers) > 25
    assert "field 'subject' still holds a TODO marker" in result.output
    assert "field 'date' still holds a TODO marker" in result.output, "a date's marker is its comment"
    assert "the text still holds a TODO marker" in result.output


def test_a_second_new_refuses_and_leaves_the_issue_as_it_was(project):
    assert new("--issue", "31", "--from", "30").exit_code == 0
    folder = project / "content" / "issue-31"
    (folder / "01-cover.md").write_text("---\nkind: cover\n---\nMy own words.\n", encoding="utf-8")
    before = files_of(folder)
    result = new("--issue", "31", "--from", "30")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "never overwrites" in lines[0], result.output
    assert files_of(folder) == before


def test_new_starts_from_the_latest_earlier_issue_by_default(project):
    result = new("--issue", "32")
    assert result.exit_code == 0, result.output
    assert "from issue 30" in result.output
    assert load_issue(project / "content", 32).edition == "Q3 2022"


def test_a_failure_while_writing_leaves_no_half_written_issue(project, monkeypatch):
    written = []
    real_write = Path.write_text

    def fail_on_fifth(path, *args, **kwargs):  # a full disk, say, in the middle of the issue
        written.append(path)
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_fifth)
    with pytest.raises(OSError):
        new_issue(project / "content", 31, 30)
    monkeypatch.undo()
    assert len(written) == 5
    assert sorted(p.name for p in (project / "content").iterdir()) == ["issue-30"], "no folder, no leftovers"


def test_new_from_a_missing_issue_is_one_line(project):
    result = new("--issue", "31", "--from", "29")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "issue 29 does not exist" in result.output
    assert not (project / "content" / "issue-31").exists()


@pytest.mark.parametrize("edition, following", [
    ("Q1 2022", "Q2 2022"), ("Q2 2022", "Q3 2022"), ("Q3 2022", "Q4 2022"), ("Q4 2022", "Q1 2023"),
    ("Summer 2022", None),
])
def test_the_next_edition_is_the_next_quarter(edition, following):
    assert next_edition(edition) == following


def test_an_edition_not_written_as_a_quarter_becomes_a_todo(project):
    yaml_file = project / "content" / "issue-30" / "issue.yaml"
    yaml_file.write_text(yaml_file.read_text(encoding="utf-8").replace("edition: Q2 2022", "edition: Summer 2022"),
                         encoding="utf-8")
    assert new("--issue", "31").exit_code == 0
    assert load_issue(project / "content", 31).edition.startswith("TODO:")


def test_publication_date_moves_three_months_on():
    assert three_months_after(dt.date(2022, 7, 15)) == dt.date(2022, 10, 15)
    assert three_months_after(dt.date(2022, 11, 30)) == dt.date(2023, 2, 28)


def test_issue_30_has_no_todo_marker():
    settings = load_settings(ROOT / "campaign.toml")
    assert check_todo_markers(load_issue(settings.content_dir, 30)) == []
