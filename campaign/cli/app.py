"""The `campaign` app and its error edge: a CampaignError becomes one line on stderr and an exit code."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.markup import escape

from ..errors import CampaignError
from .output import err

app = typer.Typer(
    help="Publish the newsletter: preview, check and send an issue to its mailing lists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: flags without "<bool>", ranges without "<int range>"
)

Command = TypeVar("Command", bound=Callable[..., Any])


def fail(error: CampaignError) -> None:
    """Print a library error as one line and exit with its code (never a traceback)."""
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(error.exit_code)


def command(*args: Any, on: typer.Typer | None = None, **kwargs: Any) -> Callable[[Command], Command]:
    """Register a typer command (on `app`, or on the sub-app `on`) whose CampaignErrors become
    one line and an exit code."""

    def register(function: Command) -> Command:
        @functools.wraps(function)
        def guarded(*call_args: Any, **call_kwargs: Any) -> Any:
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
