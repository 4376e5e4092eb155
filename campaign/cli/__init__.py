"""The `campaign` command line: a thin shell over the library.

Each command parses options, calls one library function, prints, and turns a
CampaignError into one line on stderr and a non-zero exit code. `app.py` holds
the app and that error edge, `options.py` the options several commands share,
`output.py` where they print. Commands live in one module per area (preview,
audience, send, check) and register on `app`.
"""

from __future__ import annotations

from .app import app, run_app

# Importing the command modules registers their commands on `app`.
from . import new  # noqa: E402,F401
from . import preview  # noqa: E402,F401
from . import audience  # noqa: E402,F401
from . import check  # noqa: E402,F401
from . import send  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import report  # noqa: E402,F401

__all__ = ["app", "main"]


def main() -> None:
    run_app()
