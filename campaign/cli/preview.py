"""`campaign preview`: the issue as readers will see it, in output/issue-N/, or live while you write it."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlencode

import typer

from ..errors import UsageError
from .app import command
from .options import AsOption, ConfigOption, IssueOption, RecipientsOption, settings_from
from .output import note, out, say

if TYPE_CHECKING:
    from ..config import Settings

DEFAULT_PORT = 8030


@command("preview")
def preview(
    issue: IssueOption,
    as_email: AsOption = None,
    recipients: RecipientsOption = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML in the default browser.")] = False,
    web: Annotated[bool, typer.Option(
        "--web", help="Also write output/issue-N/web/: the copy to upload at the 'view in browser' address.")] = False,
    screenshots: Annotated[bool, typer.Option(
        "--screenshots", help="Also save PNG screenshots at 375 px (phone) and 600 px (desktop) with "
                              "headless Chromium.")] = False,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Serve a live preview on 127.0.0.1 that updates as you edit the issue (Ctrl-C stops).")] = False,
    port: Annotated[int, typer.Option(
        "--port", metavar="PORT", min=0, max=65535, help="Port for --serve (0: any free port).")] = DEFAULT_PORT,
    config: ConfigOption = None,
) -> None:
    """Render an issue to output/issue-N/index.html and index.txt (sample values, or --as a recipient)."""
    from ..preview import recipient_envelope, write_preview, write_web_copy  # noqa: PLC0415  (lazy: quick --help)
    if serve:
        if web or screenshots:
            raise UsageError("--serve shows the issue live; write --web or --screenshots in a run without --serve")
        return serve_live(issue, port, config, recipients, open_browser, as_email)
    settings = settings_from(config, recipients)
    envelope = recipient_envelope(settings, as_email, issue) if as_email else None
    files = write_preview(settings, issue, envelope)
    out.print(f"HTML: {files.html}  ({files.size_bytes / 1024:.1f} KB)")
    out.print(f"Text: {files.text}")
    if web:
        out.print(f"Web copy: {write_web_copy(settings, issue)}  (upload its folder to the view-in-browser address)")
    if screenshots:
        from ..screenshots import take_screenshots  # noqa: PLC0415  (needs Chromium; only when asked)

        for shot in take_screenshots(files.html):
            out.print(f"Screenshot: {shot}")
    _show_check_errors(settings, issue)
    if open_browser and not webbrowser.open(files.html.resolve().as_uri()):
        note(f"no browser found to open it; open {files.html} yourself")


def _show_check_errors(settings: Settings, issue: int) -> None:
    """The preflight errors, shown and gone on from, as a preview promises (the warnings: `campaign check`)."""
    from ..checks import ERROR, run_checks  # noqa: PLC0415  (lazy, like every command's library: a quick --help)

    errors = [finding for finding in run_checks(settings, issue, deliverability=False) if finding.severity == ERROR]
    for finding in errors:
        note(f"  {finding.line()}")
    if errors:
        note(f"Checks: {len(errors)} error(s) a send would stop on; `campaign check --issue {issue}` shows each "
             "with what to do.")


def serve_live(issue: int, port: int, config: Path | None, recipients: Path | None, open_browser: bool,
               as_email: str | None) -> None:
    from ..web.editor import open_editor, render_line  # noqa: PLC0415  (uvicorn and watchfiles: only when asked)

    service = open_editor(lambda: settings_from(config, recipients), issue, port=port, config=config,
                          on_render=lambda snapshot: note(render_line(snapshot)))
    url = service.url + ("?" + urlencode({"as": as_email}) if as_email else "")
    say(f"Live preview of issue {issue}: {url}  (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    service.run()
    note("stopped")
