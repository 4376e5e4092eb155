"""`campaign check`: the preflight findings for an issue, and the exit code a script can test."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import command
from .options import ConfigOption, IssueOption, RecipientsOption, settings_from
from .output import err, out


@command("check")
def check(
    issue: IssueOption,
    recipients: RecipientsOption = None,
    no_spam: Annotated[bool, typer.Option("--no-spam", help="Skip the SpamAssassin score (a few seconds).")] = False,
    config: ConfigOption = None,
) -> None:
    """Check an issue before sending: links, images, size, compliance, content, CSS, spam score.

    Prints each finding with its severity, where it is and what to do; exits 1 when any error stands.
    """
    from ..checks import ERROR, check_issue

    settings = settings_from(config, recipients)
    report = check_issue(settings, issue, deliverability=not no_spam)
    for finding in report.findings:
        colour = "red" if finding.severity == ERROR else "yellow"
        out.print(f"[bold {colour}]{finding.severity}[/] [dim]{finding.code}[/]", highlight=False)
        out.print(f"  where: {finding.where}", markup=False)
        out.print(f"  what:  {finding.message}", markup=False)
        out.print(f"  fix:   {finding.fix}", markup=False)
    sizes = ", ".join(f"{size / 1024:.1f} KB" for size in report.style_bytes) or "none"
    out.print(f"HTML {report.html_bytes / 1024:.1f} KB for the longest personalisation; "
              f"<style> blocks: {sizes}", markup=False)
    if report.spam is not None:
        out.print(report.spam.summary(), markup=False)
    for note in report.notes:
        err.print(note, markup=False)
    errors = len(report.errors)
    warnings = len(report.findings) - errors
    summary = f"issue {issue}: {errors} error(s), {warnings} warning(s)"
    if errors:
        err.print(f"{summary}; fix the errors before a real send (or pass --force to `campaign send`)",
                  markup=False)
        raise typer.Exit(1)
    err.print(summary, markup=False)
