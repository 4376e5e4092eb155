"""`campaign send` (real sends, dry runs, test sends) and `campaign status`."""

from __future__ import annotations

import shlex
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer

from ..errors import UsageError
from .app import command
from .options import AsOption, ConfigOption, IssueOption, ListOption, RecipientsOption, settings_from
from .output import note, say

if TYPE_CHECKING:   # `campaign --help` and `campaign status` import only what they use (issue 18)
    from ..checks import GateDecision
    from ..dry_run import DryRunReport
    from ..send import Progress, SendPlan, SendReport, TestSendReport
    from ..send.resume_cache import AudienceSummary
    from ..send.status import KindStatus
    from ..send.workflow import SendRequest, SendResult

# Exit codes of `campaign send` (the README lists them all). 1 and 2 come from errors.py:
# 1 an error before anything was sent (content, checks, ledger, not confirmed), 2 a bad option or setting.
EXIT_PAUSED = 3          # the send paused itself: batches in a row with nothing accepted
EXIT_LEFT = 4            # it ran, but someone is left failed, unknown or refused (a rejected bad address is not)
EXIT_STOPPED = 5         # a provider configuration fault stopped it: nothing more was sent
EXIT_INTERRUPTED = 130   # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143    # SIGTERM: systemd, cron, kill (128 + SIGTERM)

ProviderOption = Annotated[Optional[str], typer.Option(
    "--provider", metavar="NAME", help="sendgrid, smtp or outbox (default: campaign.toml's, else outbox).")]
BatchSizeOption = Annotated[Optional[int], typer.Option(
    "--batch-size", metavar="N", min=1, help="Recipients per provider call (default and maximum: the provider's limit).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Send without asking (needed without a terminal).")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Personalise every message, send none: write output/issue-N/dry-run/.")]
TestToOption = Annotated[Optional[list[str]], typer.Option(
    "--test-to", metavar="EMAIL", help="Send a [TEST] copy only to this address (repeatable); no list member gets anything.")]
ResendUnknownOption = Annotated[bool, typer.Option(
    "--resend-unknown", help="Also send to recipients whose delivery is unknown (may mail them twice).")]
RetryFailedOption = Annotated[bool, typer.Option("--retry-failed", help="Send only to recipients that failed.")]
RetryRejectedOption = Annotated[bool, typer.Option(
    "--retry-rejected", help="Also send to recipients whose request the provider refused (status refused: "
                             "a batch refused with 400, nothing sent), after fixing the cause. "
                             "A rejected address is never resent.")]
SandboxOption = Annotated[bool, typer.Option(
    "--sandbox", help="SendGrid sandbox mode: validated, nothing delivered (a rehearsal).")]
ForceOption = Annotated[bool, typer.Option(
    "--force", help="Send although preflight checks found errors (recorded in the ledger).")]
RestartOption = Annotated[bool, typer.Option(
    "--restart", help="Start a rehearsal (outbox or --sandbox) over; real sends only resume.")]


@command("send")
def send(issue: IssueOption, list_names: ListOption = None, provider: ProviderOption = None,
         recipients: RecipientsOption = None, batch_size: BatchSizeOption = None, yes: YesOption = False,
         dry: DryRunOption = False, test_to: TestToOption = None, as_email: AsOption = None,
         resend_unknown: ResendUnknownOption = False, retry_failed: RetryFailedOption = False,
         retry_rejected: RetryRejectedOption = False, sandbox: SandboxOption = False, force: ForceOption = False,
         restart: RestartOption = False, config: ConfigOption = None) -> None:
    """Send an issue to its mailing lists, resumably: nobody is sent a second copy unless you ask.

    Prints a summary and asks before sending. Run it again after a crash or an
    interrupt to resume where it stopped.
    """
    from ..send import SendOptions  # noqa: PLC0415  (lazy: see the imports above)
    from ..send.workflow import SendHooks, SendRequest, run_dry_run, run_send, run_test_send  # noqa: PLC0415

    settings = settings_from(config, recipients)
    options = SendOptions(batch_size=batch_size, resend_unknown=resend_unknown, retry_failed=retry_failed,
                          sandbox=sandbox, force=force, restart=restart, retry_rejected=retry_rejected)
    request = SendRequest(issue, provider or settings.provider, tuple(list_names or ()), options)
    request = replace(request, options=replace(options, rerun=_rerun_command(request, recipients, config)))
    if as_email and not test_to:
        raise UsageError("--as personalises a test send: use it with --test-to ADDR")
    if dry and test_to:
        raise UsageError("--dry-run contacts no provider, --test-to sends a [TEST] copy: use one or the other")
    hooks = SendHooks(on_findings=_print_findings, on_plan=_print_summary, confirm=lambda plan: _confirm(plan, yes),
                      progress=_progress_bar, confirmed_ahead=yes)
    if test_to:
        _print_test_send(run_test_send(settings, request, test_to, as_email, hooks), request)
    elif dry:
        _print_dry_run(run_dry_run(settings, request, hooks), request)
    else:
        _print_result(run_send(settings, request, hooks), settings.database, request.options.rerun)


def _rerun_command(request: SendRequest, recipients: Path | None, config: Path | None) -> str:
    """`campaign send` with every option that shaped this run, so running it resumes this very send."""
    options = request.options
    words = ["campaign", "send", "--issue", str(request.issue), "--provider", request.provider]
    for name in request.lists:
        words += ["--list", name]
    for flag, path in (("--recipients", recipients), ("--config", config)):
        if path is not None:
            words += [flag, str(path.resolve())]
    if options.batch_size:
        words += ["--batch-size", str(options.batch_size)]
    words += [flag for flag, on in (("--sandbox", options.sandbox), ("--force", options.force),
                                    ("--resend-unknown", options.resend_unknown),
                                    ("--retry-failed", options.retry_failed),
                                    ("--retry-rejected", options.retry_rejected)) if on]
    return shlex.join(words)


def _print_dry_run(report: DryRunReport, request: SendRequest) -> None:
    say(f"Dry run of issue {request.issue}: what a real send would do now (rehearsals' rows not counted); "
        "nothing was sent, no record changed.")
    say(f"  would send: {report.would_send:,}   skipped (ledger): {report.skipped:,}   "
        f"excluded: {report.excluded:,}   largest HTML: {report.largest_html / 1024:.1f} KB")
    say(f"  manifest: {report.manifest}")
    for sample in report.samples:
        say(f"  sample:   {sample}")


def _print_test_send(report: TestSendReport, request: SendRequest) -> None:
    who = f"as {report.personalised_as}" if report.personalised_as else "with sample values"
    say(f"Test send of issue {request.issue} via {request.provider}, personalised {who}; "
        "no list member was sent anything and no send record changed.")
    for outcome in report.outcomes:
        detail = f" ({outcome.error})" if outcome.error else ""
        say(f"  {outcome.email}: {outcome.status}{detail}")
    for address, why in report.skipped:
        say(f"  {address}: not sent, {why}")
    if report.stopped_by:
        raise typer.Exit(EXIT_STOPPED)
    if report.signal_number:
        raise typer.Exit(EXIT_TERMINATED if report.signal_number == signal.SIGTERM else EXIT_INTERRUPTED)
    if any(outcome.status != "accepted" for outcome in report.outcomes):   # a test copy that did not go
        raise typer.Exit(EXIT_LEFT)


def _print_result(result: SendResult, database: Path, rerun: str) -> None:
    """The send's report and its exit code (see EXIT_*)."""
    plan, report = result.plan, result.report
    if report is None:
        if plan.to_send:
            note("Not sent.")
            raise typer.Exit(1)
        say("Nothing to send: everyone in the audience is already accounted for "
            f"(see `campaign status --issue {plan.issue}`).")
        if plan.failed or plan.unknown or plan.refused:
            note(f"Left: {plan.failed:,} failed, {plan.unknown:,} unknown, {plan.refused:,} refused; `campaign status "
                 f"--issue {plan.issue}` shows why (--retry-failed, --resend-unknown, --retry-rejected).")
            raise typer.Exit(EXIT_LEFT)
        return
    if report.outcome == "stopped":   # a configuration fault: one line says what and where
        note(report.message)
        raise typer.Exit(EXIT_STOPPED)
    _print_report(report, result.outbox, database, rerun)
    if report.outcome == "interrupted":
        raise typer.Exit(EXIT_TERMINATED if report.signal_number == signal.SIGTERM else EXIT_INTERRUPTED)
    if report.outcome == "paused":
        raise typer.Exit(EXIT_PAUSED)
    if report.counts["failed"] or report.counts["unknown"] or report.counts["refused"]:
        raise typer.Exit(EXIT_LEFT)


def _print_findings(decision: GateDecision) -> None:
    """What the preflight checks found, when a send goes on anyway (rehearsals, tests, --force)."""
    if not decision.going_on_over_errors:
        return
    for finding in decision.errors:
        note(f"  {finding.line()}")
    warnings = len(decision.findings) - len(decision.errors)
    note(f"Checks: {len(decision.errors)} error(s), {warnings} warning(s); going on because this is a rehearsal, "
         f"a test or --force. `campaign check --issue {decision.issue}` shows each with what to do.")


def _print_summary(plan: SendPlan, subject: str, audience: AudienceSummary) -> None:
    label = {"real": "", "outbox": "  (rehearsal: local mailbox, nobody is mailed)",
             "sandbox": "  (rehearsal: SendGrid sandbox, nobody is mailed)"}[plan.kind]
    say(f"Issue {plan.issue}: {subject}")
    say(f"  provider:   {plan.provider}{label}")
    say(f"  lists:      {', '.join(audience.lists)}")
    say(f"  recipients: {plan.audience:,} after deduplication and suppressions "
        f"({audience.excluded:,} rows excluded: `campaign audience` shows why)")
    if plan.accepted or plan.rejected or plan.refused or plan.unknown or plan.failed:
        say(f"  earlier runs: {plan.accepted:,} accepted, {plan.rejected:,} rejected, {plan.refused:,} refused, "
            f"{plan.failed:,} failed, {plan.unknown:,} unknown")
    if plan.unknown:
        say(f"  {plan.unknown:,} deliveries are unknown: they are NOT resent unless you add --resend-unknown")
    if plan.pending_elsewhere:
        say(f"  {plan.pending_elsewhere:,} recipients frozen earlier are no longer in the audience: not sent")
    say(f"  to send now: {plan.to_send:,} in batches of {plan.batch_size:,}")


def _confirm(plan: SendPlan, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("no terminal to confirm the send on: add --yes to send without asking")
    return typer.confirm(f"Send issue {plan.issue} to {plan.to_send:,} recipients via {plan.provider}?")


@contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[Progress], None]]:
    """A rich progress bar on stderr: sent, rate, time left; the retry notes below it."""
    from .progress import progress_bar  # noqa: PLC0415  (rich.progress only when sending)

    with progress_bar(total) as update:
        yield update


def _print_report(report: SendReport, outbox: Path | None, database: Path, rerun: str) -> None:
    from ..ledger import STATUSES  # noqa: PLC0415  (lazy: `campaign --help` imports no ledger)

    counts = report.counts
    say(f"Issue {report.issue} via {report.provider}: {report.outcome}. This run: {report.attempted:,} tried, "
        f"{report.accepted:,} accepted.")
    say("  ledger: " + ", ".join(f"{counts[status]:,} {status}" for status in STATUSES if counts[status])
        + ("" if report.kind == "real" else f"  ({report.kind} rehearsal)"))
    if report.recovered:
        say(f"  {len(report.recovered):,} deliveries left in flight by an earlier run are now unknown.")
    _print_left(report)
    if report.unknown:
        again = rerun if "--resend-unknown" in rerun.split() else f"{rerun} --resend-unknown"
        say(f"  resend the {len(report.unknown):,} unknown with `{again}` if you accept that some may get two "
            "copies")
    if outbox:
        say(f"  outbox: {outbox}")
    if report.message:
        (say if report.outcome == "completed" else note)(report.message)
    say(f"  details: `campaign status --issue {report.issue}` (--csv FILE: one row per recipient); "
        f"ledger: {database}")


def _print_left(report: SendReport) -> None:
    """Who is left failed, unknown, refused or rejected, and why, in the send's own output."""
    titles = {"failed": "failed (not sent; --retry-failed tries them again):",
              "unknown": "unknown (may or may not have been delivered):",
              "refused": "refused (the request was refused, nothing sent; --retry-rejected once the cause is fixed):",
              "rejected": "rejected (the address was refused; one that does not exist is suppressed as bounced):"}
    for status, title in titles.items():
        groups = [left for left in report.left if left.status == status]
        if groups:
            say(f"  {title}")
        for left in groups[:5]:
            shown = ", ".join(left.emails[:3]) + (f" and {len(left.emails) - 3:,} more" if len(left.emails) > 3 else "")
            say(f"    {len(left.emails):,} x {left.reason}: {shown}")
        if len(groups) > 5:
            say(f"    ... {len(groups) - 5:,} more reasons: `campaign status --issue {report.issue}`")


@command("status")
def status(
    issue: IssueOption,
    csv_path: Annotated[Optional[Path], typer.Option(
        "--csv", metavar="FILE", dir_okay=False, help="Also write one row per recipient to this CSV file (spreadsheet-safe).")] = None,
    config: ConfigOption = None,
) -> None:
    """Show an issue's send: counts by status, list and provider; failures and unknowns with reasons; runs."""
    from ..send.status import issue_status  # noqa: PLC0415  (lazy: see the imports above)

    settings = settings_from(config)
    found = issue_status(settings.database, issue, csv_path)
    if not found.exists:
        say(f"Issue {issue} has not been sent: there is no ledger at {settings.database} yet.")
        return
    if not found.kinds:
        say(f"Issue {issue} has not been sent (ledger: {settings.database}).")
    for kind in found.kinds:
        _print_status(issue, kind)
    if found.csv_rows is not None:
        say(f"Wrote {found.csv_rows:,} rows to {csv_path}")


def _print_status(issue: int, found: KindStatus) -> None:
    from ..ledger import STATUSES  # noqa: PLC0415  (lazy: `campaign --help` imports no ledger)

    title = {"real": "deliveries", "outbox": "outbox rehearsal (nobody mailed)",
             "sandbox": "SendGrid sandbox rehearsal (nobody mailed)"}[found.kind]
    counts = found.counts
    say(f"Issue {issue}, {title}: {sum(counts.values()):,} recipients")
    say("  by status:   " + (", ".join(f"{status} {counts[status]:,}" for status in STATUSES
                                       if counts[status]) or "none"))
    for label, tables in (("by list:     ", found.by_list), ("by provider: ", found.by_provider)):
        for key, table in sorted(tables.items()):
            say(f"  {label}{key}: " + ", ".join(f"{s} {table[s]:,}" for s in STATUSES if table.get(s)))
            label = " " * len(label)
    for run in found.runs:
        ended = run.finished_at or "-"
        flags = f" [{run.options}]" if run.options else ""
        say(f"  run {run.id}: {run.provider}{flags}, {run.started_at} -> {ended}: {run.outcome}"
            + (f": {run.message}" if run.message and run.outcome != "completed" else ""))
        if run.forced:
            say(f"    sent with --force over preflight findings: {run.findings}")
    for status, reasons in found.problems.items():
        say(f"  {status}:")
        for reason, emails in reasons.items():
            shown = ", ".join(emails[:3]) + (f" and {len(emails) - 3:,} more" if len(emails) > 3 else "")
            say(f"    {len(emails):,} x {reason}: {shown}")
