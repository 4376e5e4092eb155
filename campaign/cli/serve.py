"""`campaign serve`: the readers' service, answering every link in the email."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import command
from .options import ConfigOption, settings_from
from .output import note, say


@command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on (loopback by default: put a TLS "
                                                     "reverse proxy in front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on (0: any free port).",
                                      min=0, max=65535)] = 8000,
    config: ConfigOption = None,
) -> None:
    """Answer the links in the email (one-click unsubscribe, its confirmation page, the web archive) and
    SendGrid's Event Webhook."""
    from ..web.service import serve  # noqa: PLC0415  (lazy, like every command's library: a quick --help)
    from ..web.webhook import WEBHOOK_PATH  # noqa: PLC0415

    settings = settings_from(config)
    webhook = (f"; SendGrid's Event Webhook at {WEBHOOK_PATH}" if settings.sendgrid.webhook_public_key
               else "; no Event Webhook (SENDGRID_WEBHOOK_PUBLIC_KEY is not set)")
    serve(settings, host, port,
          on_listening=lambda url: say(f"campaign serve: listening on {url} (Ctrl-C or SIGTERM stops it)"
                                       f"{webhook}"))
    note("campaign serve: stopped")
