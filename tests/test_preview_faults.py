"""`campaign preview` and bad input (issue 11 items 11 and 20): check errors shown, files a web server can read."""

from __future__ import annotations

import stat

from test_preview_cli import preview, project  # noqa: F401  (project is a fixture)


def test_preview_shows_the_check_errors_and_goes_on(project):  # noqa: F811
    result = preview("--issue", "30")
    assert result.exit_code == 0, result.output
    assert "error: " in result.output and "[link-placeholder]" in result.output
    assert "campaign check --issue 30" in result.output
    assert (project / "output" / "issue-30" / "index.html").exists()


def test_preview_files_and_the_web_copy_can_be_read_by_a_web_server(project):  # noqa: F811
    result = preview("--issue", "30", "--web")
    assert result.exit_code == 0, result.output
    folder = project / "output" / "issue-30"
    for path in (folder / "index.html", folder / "index.txt", folder / "web" / "index.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_preview_open_without_a_browser_says_so(project, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BROWSER", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    import webbrowser

    monkeypatch.setattr(webbrowser, "_tryorder", None, raising=False)
    monkeypatch.setattr(webbrowser, "_browsers", {}, raising=False)
    result = preview("--issue", "30", "--open")
    assert result.exit_code == 0, result.output
    assert "no browser" in result.output and "index.html" in result.output


def test_counts_of_one_are_singular(tmp_path):
    from typer.testing import CliRunner

    from campaign.cli import app

    (tmp_path / "campaign.toml").write_text('recipients = "r.csv"\n[lists.members]\ndescription = "m"\n',
                                            encoding="utf-8")
    (tmp_path / "r.csv").write_text("email,lists\nana@example.org,members\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["recipients", "check", "--config", str(tmp_path / "campaign.toml")])
    assert result.exit_code == 0, result.output
    assert "1 row: 1 valid (1 unique address), 0 with errors, 0 warnings" in result.output
