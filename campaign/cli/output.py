"""Where the command line prints: data on stdout, diagnostics on stderr, file contents never read as markup."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Data on stdout, printed as is (no rich markup or emoji codes from file contents)."""
    out.print(text, markup=False, emoji=False)


def note(text: str) -> None:
    """Diagnostics on stderr, printed as is."""
    err.print(text, markup=False, emoji=False)


def count(number: int, word: str, plural: str = "") -> str:
    """`1 row`, `2 rows`, `1,000 rows`."""
    return f"{number:,} {word if number == 1 else plural or word + 's'}"
