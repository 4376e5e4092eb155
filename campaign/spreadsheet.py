"""CSV files a person opens in a spreadsheet: read them safely, write them safely.

Reading: `reading_csv` opens a UTF-8 CSV (with or without Excel's BOM) and turns
every way it cannot be read into one RecipientsError; `clean_text` takes control
characters and runs of whitespace out of a cell. Writing: `write_csv` writes
UTF-8 with a BOM (so Excel reads the accents) and neutralises every cell a
spreadsheet would run as a formula (`=`, `+`, `-`, `@`...). The audience
manifest, the dry run's manifest and the ledger's export all write through it.
"""

from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from .errors import CampaignError, OutputError, RecipientsError
from .merge import CONTROL_CHARACTERS

SPACES = re.compile(r"\s+")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Something wrong with one row of a CSV file (recipients or suppressions)."""

    line: int
    email: str                       # as written in the file (cleaned of control characters)
    reason: str


def clean_text(value: str) -> str:
    """No CR, LF or other control character survives; runs of whitespace become one space."""
    if not value.isprintable():
        value = CONTROL_CHARACTERS.sub(" ", value)
    if "  " in value or value[:1].isspace() or value[-1:].isspace():
        value = SPACES.sub(" ", value).strip()
    return value


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet will show as text, never run as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


@contextmanager
def reading_csv(path: Path, what: str) -> Iterator[TextIO]:
    """Open a UTF-8 CSV (BOM or not); every way it cannot be read becomes one RecipientsError."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            yield stream
    except FileNotFoundError:
        raise RecipientsError(f"{path}: no such {what} file; check the path"
                              + (" (--recipients or campaign.toml)" if what == "recipients" else "")) from None
    except IsADirectoryError:
        raise RecipientsError(f"{path}: is a folder, not a {what} CSV file") from None
    except UnicodeDecodeError:
        raise RecipientsError(f"{path}: not UTF-8 text; save it as CSV UTF-8 (Excel: Save As, CSV UTF-8)") from None
    except csv.Error as error:
        raise RecipientsError(f"{path}: not a readable CSV file ({error})") from None
    except OSError as error:
        raise RecipientsError(f"{path}: cannot read the {what} file ({error.strerror})") from None


def header_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The first line that is not blank, or None for an empty file."""
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    return header


def lines_after(path: Path, skip: int, what: str) -> io.StringIO:
    """The file's text after its first `skip` physical lines (read again after a stray quote)."""
    with reading_csv(path, what) as stream:
        rest = io.StringIO(stream.read(), newline="")
    for _ in range(skip):
        rest.readline()
    return rest


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], *, what: str,
              error: type[CampaignError] = OutputError) -> int:
    """Write `header` and `rows`, every cell spreadsheet-safe (None as empty); returns the rows written.

    A file that cannot be written raises `error` naming the file and `what` it is.
    """
    with _writing(path, what, error) as stream:
        return _write_rows(stream, header, rows)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """The bytes write_csv writes for `header` and `rows` (BOM included), for a file written later."""
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8-sig", newline="")
    _write_rows(stream, header, rows)
    stream.flush()
    return buffer.getvalue()


@contextmanager
def _writing(path: Path, what: str, error: type[CampaignError]) -> Iterator[TextIO]:
    """A CSV file open for writing (UTF-8 with a BOM, so Excel reads the accents); OSError becomes `error`."""
    try:
        with Path(path).open("w", encoding="utf-8-sig", newline="") as stream:
            yield stream
    except OSError as problem:
        raise error(f"{path}: cannot write the {what} ({problem.strerror})") from None


def _write_rows(stream: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    writer = csv.writer(stream)
    writer.writerow(header)
    written = 0
    for row in rows:
        writer.writerow(["" if cell is None else spreadsheet_safe(str(cell)) for cell in row])
        written += 1
    return written
