"""Options several commands share, defined once so every command spells them alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ..config import Settings

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", metavar="FILE", help="campaign.toml to use (default: ./campaign.toml, else built-in defaults).",
                 dir_okay=False),
]
IssueOption = Annotated[int, typer.Option("--issue", "-i", metavar="N", help="Issue number, e.g. 30.", min=1)]
ListOption = Annotated[
    Optional[list[str]],
    typer.Option("--list", "-l", metavar="NAME", help="Mailing list to include (repeatable; default: every list)."),
]
RecipientsOption = Annotated[
    Optional[Path],
    typer.Option("--recipients", metavar="FILE", help="Recipients CSV (default: the one named in campaign.toml).", dir_okay=False),
]
AsOption = Annotated[
    Optional[str],
    typer.Option("--as", metavar="EMAIL", help="Personalise as this recipient (an email address from the recipients file)."),
]


def settings_from(config: Path | None, recipients: Path | None = None) -> Settings:
    """The settings that --config and --recipients name."""
    from ..config import load_settings  # noqa: PLC0415  (lazy: `campaign --help` reads no settings)

    return load_settings(config, recipients=recipients)
