"""Recipients CSV -> validated, deduplicated recipients minus suppressions.

Two steps, each a plain function over plain values:

* `load_recipients(path, settings)` reads every row of the recipients file and
  collects every problem (file line numbers, header = line 1). One bad row never
  stops the others from being checked.
* `select_audience(recipient_file, lists, suppressions)` picks the people on the
  selected lists, one copy per address, minus suppressions, and says why every
  other row is left out.

`Recipient` (campaign/recipient.py, imported from here as ever) is the contract later
stages (personalize, send, ledger) rely on.
"""

from __future__ import annotations

import csv
import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

from email_validator import EmailNotValidError

from .addresses import AddressBook, normalise_email
from .config import Settings
from .csv_shape import delimiter_of, records
from .errors import RecipientsError, UsageError
from .merge import CONTROL_CHARACTERS, bracketed_field
from .recipient import Recipient
from .row_fields import NAME, FieldShape, RowFields, ValuePool
from .spreadsheet import RowProblem, clean_text, header_row, lines_after, reading_csv, write_csv

REQUIRED_COLUMNS = ("email", "lists")
LIST_SEPARATOR = re.compile(r"[;,]")
HEADER_NAME = re.compile(r"[^a-z0-9_]+")


# One valid row as read (the address normalised, lists known in config order, fields cleaned) is a
# Recipient on the lists the row names: select_audience hands the same object on when the selection
# leaves those lists as they are, so a million rows are not held twice.
RecipientRow = Recipient


@dataclass(frozen=True)
class RecipientFile:
    """Everything read from a recipients file: valid rows, problems and warnings, by line, and which rows
    repeat an earlier address."""

    path: Path
    columns: tuple[str, ...]         # normalised header names, in file order
    rows: tuple[Recipient, ...]      # valid rows in file order, duplicates included, each with its own lists
    problems: tuple[RowProblem, ...]  # rows that cannot be used (errors)
    warnings: tuple[RowProblem, ...]  # rows used, but cleaned or merged
    row_count: int                   # data rows read (blank lines not counted)
    duplicate_of: Mapping[int, int]  # line of each later copy of an address -> line of its first row

    def unique_count(self) -> int:
        return len(self.rows) - len(self.duplicate_of)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """One row of the recipients file that does not get this send, and why."""

    email: str
    line: int
    reason: str                      # e.g. "duplicate of line 12", "suppressed: unsubscribed on 2026-05-02"
    kind: str                        # invalid | duplicate | suppressed | not_selected
    fields: Mapping[str, str] = field(default_factory=dict)  # the row's cleaned columns, when it was readable
    lists: tuple[str, ...] = ()      # the lists the row names, when it was readable

    @property
    def name(self) -> str:
        return self.fields.get("name", "")


@dataclass(frozen=True)
class Audience:
    """Who gets a send (one Recipient per address) and every row left out."""

    lists: tuple[str, ...]           # the selected lists, in config order
    recipients: tuple[Recipient, ...]
    exclusions: tuple[Exclusion, ...]  # sorted by line
    columns: tuple[str, ...] = ()    # the recipients file's columns other than email and lists

    def excluded(self, kind: str) -> tuple[Exclusion, ...]:
        return tuple(exclusion for exclusion in self.exclusions if exclusion.kind == kind)

    def count_on(self, list_name: str) -> int:
        return sum(1 for recipient in self.recipients if list_name in recipient.lists)


def resolve_lists(settings: Settings, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The selected list names in config order (default: every list); unknown names are a UsageError."""
    known = settings.list_names()
    if not requested:
        return known
    by_folded = {name.casefold(): name for name in known}
    unknown = [name for name in requested if name.strip().casefold() not in by_folded]
    if unknown:
        raise UsageError(f"unknown list {unknown[0]!r}; known lists: {', '.join(known)}")
    wanted = {by_folded[name.strip().casefold()] for name in requested}
    return tuple(name for name in known if name in wanted)


def load_recipients(path: Path, settings: Settings) -> RecipientFile:
    """Read and check every row of a recipients CSV (UTF-8, with or without BOM)."""
    path = Path(path)
    with reading_csv(path, "recipients") as stream, acyclic_bulk():
        return _read(path, stream, settings.list_names(), AddressBook())


@contextmanager
def acyclic_bulk() -> Iterator[None]:
    """Pause Python's cycle collector while building many objects that hold no cycles.

    Rows, recipients and their field dicts never refer back to each other, yet
    the collector would keep re-walking them as they pile up: a fifth of the
    time of loading or selecting 100,000 rows. Reference counting still frees
    everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def recipient_columns(path: Path) -> tuple[str, ...]:
    """The recipients file's column names from its header line alone, () when it has none.

    Only the header, under the same rules as load_recipients: validating every row
    just to learn the columns took seconds at 100,000 rows, before each send.
    """
    try:
        with reading_csv(Path(path), "recipients") as stream:
            header = header_row(csv.reader(stream, delimiter=delimiter_of(stream, _names_email)))
            return tuple(column for column in _columns(Path(path), header or []) if column)
    except RecipientsError:
        return ()


def _names_email(cells: list[str]) -> bool:
    return "email" in (_column_name(cell) for cell in cells)


def _read(path: Path, stream: TextIO, list_names: tuple[str, ...], addresses: AddressBook) -> RecipientFile:
    delimiter = delimiter_of(stream, _names_email)
    reader = csv.reader(stream, delimiter=delimiter)
    header = header_row(reader)
    if header is None:
        raise RecipientsError(f"{path}: the file is empty; the first line must be a header with email and lists")
    columns = _columns(path, header)
    checker = _RowChecker(columns, list_names, addresses)
    for line, cells, swallowed in records(reader, lambda skip: lines_after(path, skip, "recipients"), delimiter,
                                          checker.looks_like_row):
        if swallowed:
            checker.unclosed_quote(line, cells, swallowed)
        elif cells and (len(cells) > 1 or cells[0].strip()):
            checker.check(line, cells)
    return RecipientFile(
        path=path,
        columns=tuple(columns),
        rows=tuple(checker.rows),
        problems=tuple(checker.problems),
        warnings=tuple(sorted(checker.warnings, key=lambda warning: warning.line)),
        row_count=checker.row_count,
        duplicate_of=checker.duplicate_of,
    )


def _column_name(cell: str) -> str:
    return HEADER_NAME.sub("_", clean_text(cell).lower()).strip("_")


def _columns(path: Path, header: list[str]) -> list[str]:
    columns = [_column_name(cell) for cell in header]
    named = [column for column in columns if column]
    duplicated = sorted({column for column in named if named.count(column) > 1})
    if duplicated:
        raise RecipientsError(f"{path}: the header names column {duplicated[0]!r} twice; keep one")
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing and len(header) == 1 and re.search(r"[^\w\s]", header[0]):
        raise RecipientsError(f"{path}: the header has no {missing[0]!r} column: it reads {header[0]!r} as one "
                              "column; separate the columns with commas (or semicolons or tabs), "
                              "e.g. email,name,lists")
    if missing:
        found = ", ".join(named) or "nothing"
        raise RecipientsError(f"{path}: the header has no {missing[0]!r} column (found: {found}); "
                              "line 1 must name the columns, e.g. email,name,lists")
    return columns


class _RowChecker:
    """Checks rows one by one, keeping valid rows, problems and warnings."""

    def __init__(self, columns: list[str], list_names: tuple[str, ...], addresses: AddressBook):
        self.columns = columns
        self.addresses = addresses
        self.width = len(columns)
        self.email_index = columns.index("email")
        self.lists_index = columns.index("lists")
        self.field_columns = [(index, column, None if column == NAME else ValuePool())
                              for index, column in enumerate(columns)
                              if column and index not in (self.email_index, self.lists_index)]
        self.shape = FieldShape(tuple(column for _, column, _ in self.field_columns))
        self.same_values = ValuePool()   # rows with the same values but the name share one tuple
        self.list_names = list_names
        self.list_by_folded = {name.casefold(): name for name in list_names}
        self.list_order = {name: position for position, name in enumerate(list_names)}
        self.list_cache: dict[str, tuple[str, ...] | str] = {}
        self.first_line: dict[str, int] = {}
        self.duplicate_of: dict[int, int] = {}
        self.rows: list[Recipient] = []
        self.problems: list[RowProblem] = []
        self.warnings: list[RowProblem] = []
        self.row_count = 0

    def check(self, line: int, cells: list[str]) -> None:
        self.row_count += 1
        written = clean_text(cells[self.email_index]) if self.email_index < len(cells) else ""
        if len(cells) != self.width:
            self.problem(line, written, f"has {len(cells)} columns, the header has {self.width}")
            return
        if not written:
            self.problem(line, "", "empty email")
            return
        lists = self.lists(cells[self.lists_index])
        try:
            email = self.addresses.normalise(written)
        except EmailNotValidError as error:
            reasons = [f"invalid address: {error}"] + ([lists] if isinstance(lists, str) else [])
            self.problem(line, written, "; ".join(reasons))
            return
        if isinstance(lists, str):
            self.problem(line, written, lists)
            return
        name, others, brackets = self.fields(line, written, cells)
        if brackets:
            self.problem(line, email, brackets)
            return
        first = self.first_line.setdefault(email, line)
        if first != line:
            self.duplicate_of[line] = first
            self.warnings.append(RowProblem(line, written, f"duplicate of line {first} (one copy is sent)"))
        self.rows.append(Recipient.of_row(email, name, lists, self.shape, others, line))

    def problem(self, line: int, email: str, reason: str) -> None:
        self.problems.append(RowProblem(line, email, reason))

    def looks_like_row(self, cells: list[str]) -> bool:
        return len(cells) == self.width and "@" in cells[self.email_index]

    def unclosed_quote(self, line: int, cells: list[str], swallowed: int) -> None:
        self.row_count += 1
        written = clean_text(cells[self.email_index]) if self.email_index < len(cells) else ""
        self.problem(line, written, f"a quote opened on this line is never closed: it ran the next {swallowed} "
                                    "lines into one field (they were read again on their own); close the quote, "
                                    'or write "" for a quote inside a field')

    def lists(self, cell: str) -> tuple[str, ...] | str:
        """The row's lists in config order (tuples shared between rows), or the reason they are wrong."""
        cached = self.list_cache.get(cell)
        if cached is None:
            cached = self.list_cache[cell] = self._parse_lists(cell)
        return cached

    def _parse_lists(self, cell: str) -> tuple[str, ...] | str:
        names = [clean_text(name) for name in LIST_SEPARATOR.split(cell)]
        names = [name for name in names if name]
        if not names:
            return f"no list named; lists must name one or more of: {', '.join(self.list_names)}"
        unknown = [name for name in names if name.casefold() not in self.list_by_folded]
        if unknown:
            return f"unknown list {unknown[0]!r}; known lists: {', '.join(self.list_names)}"
        found = {self.list_by_folded[name.casefold()] for name in names}
        return tuple(sorted(found, key=self.list_order.__getitem__))

    def fields(self, line: int, written: str, cells: list[str]) -> tuple[str, tuple[str, ...], str]:
        """The row's name, its other values (a tuple shared by rows with the same ones), and the problem
        when a value holds '[[' or ']]' ("" if none)."""
        name, others = "", []
        for index, column, pool in self.field_columns:
            raw = cells[index]
            if pool is None:   # names are mostly unique: cleaned and kept as they are
                name = clean_text(raw)
            else:   # other columns (city, country, organisation...) repeat: one string per distinct cell
                value = pool.get(raw)
                others.append(pool.share(raw, clean_text(raw)) if value is None else value)
            if not raw.isprintable() and CONTROL_CHARACTERS.search(raw):
                self.warnings.append(RowProblem(
                    line, written, f"{column}: line breaks or control characters removed"))
        values = tuple(others)
        values = self.same_values.get(values) or self.same_values.share(values, values)
        joined = "\x00".join(values)   # the quick test first: a full scan only when brackets are there
        if "[[" not in joined and "]]" not in joined and "[[" not in name and "]]" not in name:
            return name, values, ""
        fields = RowFields(self.shape, name, values)
        bracketed = bracketed_field(fields)
        return name, values, (f"{bracketed}: holds '[[' or ']]' ({fields[bracketed][:40]!r}), which would be read "
                              "as a merge placeholder; remove the brackets")


def select_audience(
    recipient_file: RecipientFile,
    lists: Sequence[str],
    suppressions: Mapping[str, tuple[str, str]],
) -> Audience:
    """One Recipient per address on any of `lists`, minus suppressions; every other row explained.

    `lists` are known list names (see `resolve_lists`); `suppressions` maps a
    normalised address to (reason, date), as `suppressions.suppressed_emails` returns.
    It has no default on purpose: every send, dry run and test send to lists applies them.
    """
    with acyclic_bulk():
        return _select(recipient_file, tuple(lists), suppressions)


def _select(recipient_file: RecipientFile, selected: tuple[str, ...],
            suppressions: Mapping[str, tuple[str, str]]) -> Audience:
    exclusions = [Exclusion(problem.email, problem.line, problem.reason, "invalid")
                  for problem in recipient_file.problems]
    # Duplicates were found while loading: no {address: row} of everyone is built again here (at a
    # million rows it was ~40 MB that the process kept after letting it go).
    duplicate_of = recipient_file.duplicate_of
    lists_of: dict[str, set[str]] = {}    # people listed more than once: the lists of their later copies
    if duplicate_of:
        for row in recipient_file.rows:
            first_line = duplicate_of.get(row.line)
            if first_line is not None:
                exclusions.append(Exclusion(row.email, row.line, f"duplicate of line {first_line}", "duplicate",
                                            row.fields, row.lists))
                lists_of.setdefault(row.email, set()).update(row.lists)
    selection: dict[frozenset | tuple, tuple[str, ...]] = {}   # few distinct list combinations: share them
    recipients = []
    for first in recipient_file.rows:
        if first.line in duplicate_of:
            continue
        email, later = first.email, lists_of.get(first.email)
        on_lists = first.lists if later is None else later.union(first.lists)
        key = frozenset(on_lists) if isinstance(on_lists, set) else on_lists
        on = selection.get(key)
        if on is None:
            on = selection[key] = tuple(name for name in selected if name in on_lists)
        if not on:
            exclusions.append(Exclusion(email, first.line, "not on a selected list", "not_selected",
                                        first.fields, first.lists))
        elif email in suppressions:
            reason, date = suppressions[email]
            exclusions.append(Exclusion(email, first.line, f"suppressed: {reason} on {date}", "suppressed",
                                        first.fields, on))
        else:
            # the row itself when the selection keeps its lists (the usual case): no second object per person
            recipients.append(first if on == first.lists else first.on_lists(on))
    exclusions.sort(key=lambda exclusion: exclusion.line)
    columns = tuple(column for column in recipient_file.columns if column and column not in REQUIRED_COLUMNS)
    return Audience(lists=selected, recipients=tuple(recipients), exclusions=tuple(exclusions), columns=columns)


MANIFEST_COLUMNS = ("line", "email", "status", "reason", "lists")


def write_manifest(audience: Audience, path: Path) -> int:
    """Write every row with its outcome (included, or excluded and why) as a spreadsheet-safe CSV.

    Columns: line, email, status, reason, lists, then the recipients file's own
    columns (name, organisation, ...). Returns the number of rows written.
    """
    columns = audience.columns
    entries: list[tuple[int, list[str]]] = []
    for recipient in audience.recipients:
        fields = recipient.fields   # made on access for a file's row: once per person
        entries.append((recipient.line, [recipient.email, "included", "", ";".join(recipient.lists),
                                         *(fields.get(column, "") for column in columns)]))
    for exclusion in audience.exclusions:
        entries.append((exclusion.line, [exclusion.email, "excluded", exclusion.reason, ";".join(exclusion.lists),
                                         *(exclusion.fields.get(column, "") for column in columns)]))
    entries.sort(key=lambda entry: entry[0])
    return write_csv(path, [*MANIFEST_COLUMNS, *columns], ([str(line), *cells] for line, cells in entries),
                     what="manifest", error=RecipientsError)


def find_recipient(settings: Settings, email: str) -> Recipient:
    """One person of the recipients file by address (`--as EMAIL`), whatever the letter case."""
    try:
        wanted = normalise_email(email)
    except ValueError as error:  # email-validator's EmailNotValidError
        raise UsageError(f"--as {email!r} is not a valid address: {error}") from None
    for row in load_recipients(settings.recipients, settings).rows:
        if row.email == wanted:
            return row
    raise UsageError(f"{email} is not a valid row of {settings.recipients}; check the address or --recipients")
