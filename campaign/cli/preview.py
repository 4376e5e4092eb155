"""`campaign preview`: the issue as readers will see it, in output/issue-N/."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from ..preview import recipient_envelope, write_preview, write_web_copy
from .app import command
from .options import AsOption, ConfigOption, IssueOption, RecipientsOption, settings_from
from .output import out


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
    config: ConfigOption = None,
) -> None:
    """Render an issue to output/issue-N/index.html and index.txt (sample values, or --as a recipient)."""
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
    if open_browser:
        webbrowser.open(files.html.resolve().as_uri())
