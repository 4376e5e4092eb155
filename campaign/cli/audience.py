"""`campaign lists`, `campaign audience`, `campaign recipients check`, `campaign suppress ...`."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..ledger_schema import SUPPRESSION_REASONS as REASONS
from .app import app, command
from .options import ConfigOption, ListOption, RecipientsOption, settings_from
from .output import count, note, say

if TYPE_CHECKING:
    from ..config import Settings

# The library each command calls is imported in its body, so `campaign --help` imports none of it (issue 18).

recipients_app = typer.Typer(help="Check the recipients file.", no_args_is_help=True)
suppress_app = typer.Typer(help="Manage the suppression list: people who never get mail.", no_args_is_help=True)
app.add_typer(recipients_app, name="recipients")
app.add_typer(suppress_app, name="suppress")

CsvOption = Annotated[
    Optional[Path],
    typer.Option("--csv", metavar="FILE", help="Also write the result to this CSV file (spreadsheet-safe).", dir_okay=False),
]


@command("lists")
def lists_command(config: ConfigOption = None, recipients: RecipientsOption = None) -> None:
    """Print each mailing list with how many people a send to it reaches."""
    from ..audience import load_recipients, select_audience  # noqa: PLC0415  (lazy: a quick --help)
    from ..suppressions import suppressed_emails_at  # noqa: PLC0415
    settings = settings_from(config, recipients)
    recipient_file = load_recipients(settings.recipients, settings)
    suppressions = suppressed_emails_at(settings.database)
    say(f"{'list':<16} {'recipients':>10} {'suppressed':>10}  description")
    for mailing_list in settings.lists:
        audience = select_audience(recipient_file, (mailing_list.name,), suppressions)
        say(f"{mailing_list.name:<16} {len(audience.recipients):>10,} "
            f"{len(audience.excluded('suppressed')):>10,}  {mailing_list.description}")
    if recipient_file.problems:
        note(f"{count(len(recipient_file.problems), 'row')} of {recipient_file.path} cannot be used; "
             "see `campaign recipients check`")


@command("audience")
def audience_command(
    config: ConfigOption = None,
    recipients: RecipientsOption = None,
    list_names: ListOption = None,
    issue: Annotated[Optional[int], typer.Option("--issue", "-i", metavar="N", help="Issue number, e.g. 30.", min=1)] = None,
    csv_path: CsvOption = None,
) -> None:
    """Print who a send reaches: the final count and every row left out, with its reason."""
    from ..audience import load_recipients, resolve_lists, select_audience, write_manifest  # noqa: PLC0415
    from ..content import require_issue  # noqa: PLC0415
    from ..suppressions import suppressed_emails_at  # noqa: PLC0415
    settings = settings_from(config, recipients)
    if issue is not None:
        require_issue(settings.content_dir, issue)
    selected = resolve_lists(settings, list_names)
    recipient_file = load_recipients(settings.recipients, settings)
    audience = select_audience(recipient_file, selected, suppressed_emails_at(settings.database))
    title = f"Issue {issue} to" if issue else "Sending to"
    say(f"{title} {', '.join(selected)}: {len(audience.recipients):,} recipients "
        f"({', '.join(f'{name} {audience.count_on(name):,}' for name in selected)})")
    if audience.exclusions:
        say(f"{count(len(audience.exclusions), 'row')} of {recipient_file.path} left out:")
        for exclusion in audience.exclusions:
            say(f"  line {exclusion.line}: {exclusion.email or '(empty)'}: {exclusion.reason}")
    if csv_path is not None:
        written = write_manifest(audience, csv_path)
        note(f"wrote {count(written, 'row')} to {csv_path}")


@command("check", on=recipients_app)
def recipients_check(
    file: Annotated[Optional[Path], typer.Argument(metavar="FILE", help="Recipients CSV (default: the one in campaign.toml).",
                                                   dir_okay=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Check a recipients file without sending: every bad row by line number; exit 1 if any."""
    from ..audience import load_recipients
    settings = settings_from(config, file)
    recipient_file = load_recipients(settings.recipients, settings)
    name = str(file if file is not None else recipient_file.path)
    findings = sorted([(problem, "error") for problem in recipient_file.problems]
                      + [(warning, "warning") for warning in recipient_file.warnings],
                      key=lambda finding: finding[0].line)
    for problem, severity in findings:
        email = f" {problem.email}:" if problem.email else ""
        say(f"{name}:{problem.line}: {severity}:{email} {problem.reason}")
    say(f"{count(recipient_file.row_count, 'row')}: {len(recipient_file.rows):,} valid "
        f"({count(recipient_file.unique_count(), 'unique address', 'unique addresses')}), "
        f"{len(recipient_file.problems):,} with errors, {count(len(recipient_file.warnings), 'warning')}")
    if recipient_file.problems:
        raise typer.Exit(1)


@command("add", on=suppress_app)
def suppress_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address to suppress.")],
    reason: Annotated[str, typer.Option("--reason", metavar="REASON", help=f"One of: {', '.join(REASONS)}.")] = "manual",
    date: Annotated[Optional[str], typer.Option("--date", metavar="DATE", help="When (YYYY-MM-DD; default today).")] = None,
    note: Annotated[str, typer.Option("--note", metavar="TEXT", help="Free text kept with the suppression.")] = "",
    config: ConfigOption = None,
) -> None:
    """Suppress one address: it never gets another issue, whatever the recipients file says."""
    from ..suppressions import add_suppression
    settings = settings_from(config)
    with _ledger(settings) as connection:
        suppression, added = add_suppression(connection, email, reason.strip().lower(), date, note)
    state = "suppressed" if added else "already suppressed"
    say(f"{state}: {suppression.email} ({suppression.reason} on {suppression.date})")


@command("remove", on=suppress_app)
def suppress_remove(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address to mail again.")],
    consent: Annotated[bool, typer.Option(
        "--consent", help="They asked to be mailed again (needed after an unsubscribe or a complaint).")] = False,
    config: ConfigOption = None,
) -> None:
    """Lift a suppression, e.g. after a bounce was fixed or a person subscribed again."""
    from ..suppressions import remove_suppression
    settings = settings_from(config)
    with _ledger(settings) as connection:
        lifted = remove_suppression(connection, email, consent=consent)
    say(f"no longer suppressed: {lifted.email} (was {lifted.reason} on {lifted.date})")


@command("import", on=suppress_app)
def suppress_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV with columns email, reason and optionally date, note; or "
                                              "SendGrid's export (created,email,reason,status) with --reason.",
                                         dir_okay=False)],
    reason: Annotated[Optional[str], typer.Option(
        "--reason", metavar="REASON", help=f"The reason of every row ({', '.join(REASONS)}); needed for SendGrid's export.")] = None,
    config: ConfigOption = None,
) -> None:
    """Import suppressions from a CSV; rows that cannot be read are reported by line (exit 1)."""
    from ..suppressions import import_suppressions
    settings = settings_from(config)
    with _ledger(settings) as connection:
        result = import_suppressions(connection, file, reason.strip().lower() if reason else None)
    for problem in result.problems:
        note(f"{file}:{problem.line}: {problem.email or '(empty)'}: {problem.reason}")
    say(f"imported {result.added:,} suppressions, {result.already:,} already suppressed, "
        f"{count(len(result.problems), 'row')} not imported")
    if result.problems:
        raise typer.Exit(1)


@command("import-mbox", on=suppress_app)
def suppress_import_mbox(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An mbox file exported from the unsubscribe inbox.", dir_okay=False)],
    config: ConfigOption = None,
) -> None:
    """Record an unsubscribe for each message whose subject token or From address is a known recipient."""
    from ..unsubscribe_inbox import import_unsubscribe_mbox
    settings = settings_from(config)
    with _ledger(settings) as connection:
        result = import_unsubscribe_mbox(connection, file, settings.token_secret)
    for item in result.unmatched:
        note(f"{file}: message {item.number}: from {item.sender or '(no From)'}, "
             f"subject {item.subject!r}: not matched: {item.reason}")
    say(f"recorded {len(result.recorded):,} unsubscribes, {len(result.already):,} already suppressed, "
        f"{len(result.unmatched):,} messages not matched")
    if result.unmatched:
        raise typer.Exit(1)


@command("import-bounces", on=suppress_app)
def suppress_import_bounces(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An mbox file exported from the bounce mailbox.", dir_okay=False)],
    config: ConfigOption = None,
) -> None:
    """Suppress hard bounces (as bounced, with the server's diagnostic); soft bounces are left alone."""
    from ..bounces import import_bounces
    settings = settings_from(config)
    with _ledger(settings) as connection:
        result = import_bounces(connection, file)
    for address, diagnostic in result.suppressed:
        say(f"bounced: {address} ({diagnostic})")
    for address, diagnostic in result.soft:
        say(f"soft, left alone: {address} ({diagnostic})")
    for item in result.unrecognised:
        note(f"{file}: message {item.number} from {item.sender or '(no From)'}, subject {item.subject!r}: "
             "no bounce found in it")
    say(f"suppressed {len(result.suppressed):,} hard bounces, {len(result.already):,} already suppressed, "
        f"{len(result.soft):,} soft bounces left alone, {len(result.unrecognised):,} messages not bounces")


@command("sync", on=suppress_app)
def suppress_sync(config: ConfigOption = None) -> None:
    """Read SendGrid's bounce, spam-report, invalid-address and unsubscribe lists (and [sendgrid]
    unsubscribe_group) into the suppressions; only what is new since the last sync is asked for."""
    from ..suppression_sync import sync_suppressions
    settings = settings_from(config)
    with _ledger(settings) as connection:
        result = sync_suppressions(connection, settings)
    say(f"{'SendGrid list':<16} {'read':>7} {'new':>7} {'known':>7} {'unusable':>9}")
    for kind in result.kinds:
        say(f"{kind.kind:<16} {kind.read:>7,} {kind.new:>7,} {kind.known:>7,} {kind.unusable:>9,}")
    for blocked in result.blocked:
        say(f"blocked (temporary, not suppressed): {blocked.email}  {blocked.reason}")


@command("list", on=suppress_app)
def suppress_list(config: ConfigOption = None) -> None:
    """Print every suppressed address with its reason and date."""
    from ..suppressions import list_suppressions
    settings = settings_from(config)
    suppressions = []
    if settings.database.exists():
        with _ledger(settings) as connection:
            suppressions = list_suppressions(connection)
    for suppression in suppressions:
        remark = f"  ({suppression.source})" if suppression.source else ""
        remark += f"  {suppression.note}" if suppression.note else ""
        say(f"{suppression.date}  {suppression.reason:<12}  {suppression.email}{remark}")
    note(f"{len(suppressions):,} suppressed addresses")


def _ledger(settings: Settings) -> closing[sqlite3.Connection]:
    """The ledger, opened for one command and always closed."""
    from ..ledger import open_ledger  # noqa: PLC0415  (lazy: a quick --help)

    return closing(open_ledger(settings.database))
