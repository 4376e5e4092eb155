"""The shape of a CSV file people made by hand: its delimiter, and rows a stray quote ran together.

* Excel writes semicolons where the comma is the decimal mark (much of Europe),
  and some tools write tabs: `delimiter_of` picks the one under which the header
  names the column it needs.
* One unclosed quote (`a@example.org,"Kim Min-ji,Seoul`) makes the csv module read
  every following line into that field, up to the next quote or the end of the
  file. `records` notices a record spanning several lines whose inner lines look
  like rows of their own, reports it with the number of lines it took in, and
  reads those lines again on their own.
"""

from __future__ import annotations

import csv
import re
from typing import Callable, Iterable, Iterator, TextIO

DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}
LINE_BREAK = re.compile(r"\r\n|\r|\n")

# A data record: the physical line it starts on, its cells, and how many more lines an unclosed
# quote ran into it (0 for a normal record, even one whose quoted field holds a line break).
Record = tuple[int, list[str], int]


def delimiter_of(stream: TextIO, names_needed: Callable[[list[str]], bool]) -> str:
    """The delimiter under which the first non-blank line satisfies `names_needed` (default comma).

    Reads that line and rewinds the stream to its start.
    """
    header = ""
    while not header.strip():
        header = stream.readline()
        if not header:
            break
    stream.seek(0)
    for delimiter in DELIMITERS:
        if names_needed(next(csv.reader([header], delimiter=delimiter), [])):
            return delimiter
    return ","


def records(reader, rest_after: Callable[[int], Iterable[str]], delimiter: str,
            looks_like_row: Callable[[list[str]], bool]) -> Iterator[Record]:
    """Every record after the header has been read from `reader`, with physical line numbers.

    When a record ran rows together, it is yielded with the count of lines it took
    in, and reading goes on from the line after it with `rest_after(line)`: the
    file's lines after its first `line` lines.
    """
    base, before = 0, reader.line_num
    while True:
        for cells in reader:
            line, last = base + before + 1, base + reader.line_num
            before = reader.line_num
            if last > line and _runs_rows_together(cells, delimiter, looks_like_row):
                yield line, cells, last - line
                break
            yield line, cells, 0
        else:
            return
        reader = csv.reader(rest_after(line), delimiter=delimiter)
        base, before = line, 0


def _runs_rows_together(cells: list[str], delimiter: str, looks_like_row: Callable[[list[str]], bool]) -> bool:
    """True when a line inside one of the record's fields would be a row of its own."""
    for cell in cells:
        if "\n" in cell or "\r" in cell:
            for piece in LINE_BREAK.split(cell)[1:]:
                if looks_like_row(next(csv.reader([piece], delimiter=delimiter), [])):
                    return True
    return False
