"""What every command shares: the app, option definitions, settings, error printing."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Settings, load_settings
from ..errors import CampaignError

app = typer.Typer(
    help="Publish the newsletter: preview, check and send an issue to its mailing lists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Data on stdout, printed as is (no rich markup or emoji codes from file contents)."""
    out.print(text, markup=False, emoji=False)


def note(text: str) -> None:
    """Diagnostics on stderr, printed as is."""
    err.print(text, markup=False, emoji=False)


# Option definitions live here once, so every command spells them alike.
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="campaign.toml to use (default: ./campaign.toml, else built-in defaults).",
                 dir_okay=False),
]
IssueOption = Annotated[int, typer.Option("--issue", "-i", help="Issue number, e.g. 30.", min=1)]
ListOption = Annotated[
    Optional[list[str]],
    typer.Option("--list", "-l", help="Mailing list to include (repeatable; default: every list)."),
]
RecipientsOption = Annotated[
    Optional[Path],
    typer.Option("--recipients", help="Recipients CSV (default: the one named in campaign.toml).", dir_okay=False),
]
AsOption = Annotated[
    Optional[str],
    typer.Option("--as", help="Personalise as this recipient (an email address from the recipients file)."),
]


def settings_from(config: Path | None, recipients: Path | None = None) -> Settings:
    settings = load_settings(config)
    if recipients is not None:
        from dataclasses import replace

        settings = replace(settings, recipients=recipients.resolve())
    return settings


def fail(error: CampaignError) -> None:
    """Print a library error as one line and exit with its code (never a traceback)."""
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(error.exit_code)


def command(*args, on: typer.Typer | None = None, **kwargs):
    """Register a typer command (on `app`, or on the sub-app `on`) whose CampaignErrors become
    one line and an exit code."""

    def register(function):
        @functools.wraps(function)
        def guarded(*call_args, **call_kwargs):
            try:
                return function(*call_args, **call_kwargs)
            except CampaignError as error:
                fail(error)

        (on or app).command(*args, **kwargs)(guarded)
        return function

    return register


def run_app() -> None:
    try:
        app()
    except CampaignError as error:  # a command that forgot to catch: still one line
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
