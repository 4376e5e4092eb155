"""`campaign preview`: files in output/, and one clear line for every kind of bad input."""

from __future__ import annotations

import shutil
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's content, layouts and recipients in a temporary folder."""
    for folder in ("content", "layouts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "recipients.example.csv", tmp_path / "recipients.example.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def preview(*args: str):
    return runner.invoke(app, ["preview", *args])


def assert_one_line_error(result, exit_code: int, *fragments: str):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_preview_writes_html_and_text_with_images(project):
    result = preview("--issue", "30")
    assert result.exit_code == 0, result.output
    folder = project / "output" / "issue-30"
    assert str(folder / "index.html") in result.output
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert "Dear Sample Reader," in html and "[[" not in html
    assert "Dear Sample Reader," in (folder / "index.txt").read_text(encoding="utf-8")
    assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(
        p.name for p in (project / "content" / "issue-30" / "images").iterdir())
    assert not list(folder.glob(".*.tmp")), "no half-written files left behind"


def test_web_copy_has_every_section_and_nothing_personal(project):
    result = preview("--issue", "30", "--web")
    assert result.exit_code == 0, result.output
    folder = project / "output" / "issue-30" / "web"
    html = unescape((folder / "index.html").read_text(encoding="utf-8"))
    assert "[[" not in html and "Dear " not in html and "Unsubscribe" not in html
    assert "Sample Reader" not in html and "reader@example.org" not in html
    for heading in ("São Paulo", "Recent events", "Upcoming activities", "New members", "Smart city trends"):
        assert heading in html
    assert "The web copy of WeGO e-Newsletter Q2 2022, Issue 30." in html
    assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(
        p.name for p in (project / "content" / "issue-30" / "images").iterdir())


def test_a_merge_field_left_in_the_web_copy_is_an_error_naming_the_fix(project):
    layout = project / "layouts" / "sections" / "text.mjml.j2"
    layout.write_text(layout.read_text(encoding="utf-8").replace(
        "<mj-text>{{ markdown(section.body) }}</mj-text>", "<mj-text>Hello [[name]] {{ markdown(section.body) }}</mj-text>",
        1), encoding="utf-8")
    result = preview("--issue", "30", "--web")
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error:") and "web copy" in error and "name" in error and "if not web" in error
    assert not (project / "output" / "issue-30" / "web").exists(), "nothing half-written"


def test_preview_as_a_recipient_uses_their_row(project):
    result = preview("--issue", "30", "--as", "Jorge.Munoz@example.org")
    assert result.exit_code == 0, result.output
    html = unescape((project / "output" / "issue-30" / "index.html").read_text(encoding="utf-8"))
    assert "Dear Jorge Muñoz," in html and "jorge.munoz@example.org" in html


def test_preview_as_someone_not_in_the_file_is_a_usage_error(project):
    assert_one_line_error(preview("--issue", "30", "--as", "nobody@example.org"), 2,
                          "nobody@example.org", "recipients.example.csv")


def test_missing_issue_is_a_usage_error(project):
    assert_one_line_error(preview("--issue", "31"), 2, "issue 31 does not exist", "issues found: 30")


def test_malformed_content_file_names_file_and_line(project):
    path = project / "content" / "issue-30" / "issue.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("edition: ", "edition: [", 1), encoding="utf-8")
    assert_one_line_error(preview("--issue", "30"), 1, "issue.yaml:")


def test_missing_field_names_file_and_field(project):
    path = project / "content" / "issue-30" / "04-upcoming-activities" / "01-world-cities-summit.md"
    text = path.read_text(encoding="utf-8")
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("place:")) + "\n",
                    encoding="utf-8")
    assert_one_line_error(preview("--issue", "30"), 1, "01-world-cities-summit.md", "'place'")


def test_layout_field_missing_from_content_names_layout_line_and_content(project):
    layout = project / "layouts" / "sections" / "trends.mjml.j2"
    layout.write_text(layout.read_text(encoding="utf-8") + "{{ section.sponsor }}\n", encoding="utf-8")
    assert_one_line_error(preview("--issue", "30"), 1, "trends.mjml.j2:", "sponsor", "06-smart-city-trends")


def test_mjml_error_names_the_layouts(project):
    layout = project / "layouts" / "sections" / "text.mjml.j2"
    layout.write_text(layout.read_text(encoding="utf-8").replace("<mj-column>", "<mj-column", 1),
                      encoding="utf-8")
    assert_one_line_error(preview("--issue", "30"), 1, "text.mjml.j2", "03-secretariat-activities.md", "MJML error")


def test_unknown_mjml_tag_is_an_error_not_silent_output(project):
    layout = project / "layouts" / "sections" / "text.mjml.j2"
    layout.write_text(layout.read_text(encoding="utf-8").replace("<mj-text>", "<mj-txt>", 1)
                      .replace("</mj-text>", "</mj-txt>", 1), encoding="utf-8")
    assert_one_line_error(preview("--issue", "30"), 1, "text.mjml.j2", "<mj-txt>")


def test_missing_layout_names_the_file_to_create(project):
    (project / "layouts" / "sections" / "members.mjml.j2").unlink()
    assert_one_line_error(preview("--issue", "30"), 1, "members.mjml.j2", "05-new-members")


def test_nothing_is_half_written_when_the_render_fails(project):
    assert preview("--issue", "30").exit_code == 0
    index = project / "output" / "issue-30" / "index.html"
    before = index.read_text(encoding="utf-8")
    (project / "layouts" / "sections" / "members.mjml.j2").unlink()
    assert preview("--issue", "30").exit_code == 1
    assert index.read_text(encoding="utf-8") == before


def test_missing_issue_option_is_a_usage_error(project):
    result = preview()
    assert result.exit_code == 2 and "Traceback" not in result.output
