"""`campaign report`: how an issue did, from the ledger and SendGrid's events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import command
from .options import ConfigOption, IssueOption, settings_from
from .output import note, say


@command("report")
def report_command(
    issue: IssueOption,
    csv: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", help="Also write the table to this CSV file "
                                                              "(spreadsheet-safe).", dir_okay=False)] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write a self-contained HTML page with "
                                                                "charts (no script, no network).", dir_okay=False)] = None,
    config: ConfigOption = None,
) -> None:
    """How an issue did, per list and in total: the ledger's deliveries and SendGrid's events."""
    from ..report import issue_report, report_table, write_report_csv  # noqa: PLC0415  (lazy: a quick --help)
    from ..report_page import write_report_page  # noqa: PLC0415
    settings = settings_from(config)
    tracking = settings.sendgrid.track_opens or settings.sendgrid.track_clicks
    report = issue_report(settings.database, issue, settings.list_names(), tracking)
    say(report_table(report))
    if csv:
        write_report_csv(report, csv)
        note(f"wrote {csv}")
    if html:
        write_report_page(report, html)
        note(f"wrote {html}")
