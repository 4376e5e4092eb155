"""`Recipient`: one person a send reaches, the contract later stages (personalize, send, ledger) rely on.

A frozen value like the dataclass it was (same constructor, compared by its five
values, never changed), written by hand for one reason: memory (issue 18). A row
read from the recipients file keeps its columns as the file's `FieldShape` and the
tuple of its other values, shared between rows (campaign/row_fields.py), in two
slots of its own; `fields` makes the read-only `RowFields` mapping over them when
asked. A million recipients so hold no mapping object each (48 bytes less a person).
A Recipient made with a mapping (a test, a sample) keeps that mapping as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from .row_fields import FieldShape, RowFields


@dataclass(frozen=True, init=False)
class Recipient:
    """A frozen dataclass of five fields (equality, repr, `dataclasses.replace` as ever); only its
    `__init__` and `fields` are written by hand, to keep a file's row without a mapping of its own."""

    __slots__ = ("email", "name", "lists", "line", "_shape", "_values")

    email: str                       # validated and normalised (email-validator)
    name: str
    lists: tuple[str, ...]           # every selected list this person is on, in config order
    fields: Mapping[str, str]        # every column but email and lists, cleaned (a property: see below)
    line: int                        # line in the recipients file (first occurrence)
    if TYPE_CHECKING:                # slots, not dataclass fields
        _shape: FieldShape | None    # a file's row: its columns; None: `_values` is the mapping given
        _values: Any                 # a file's row: its values but the name (a shared tuple); else the mapping

    def __init__(self, email: str, name: str, lists: tuple[str, ...], fields: Mapping[str, str] | None = None,
                 line: int = 0):
        self._set(email, name, lists, line, None, {} if fields is None else fields)

    @classmethod
    def of_row(cls, email: str, name: str, lists: tuple[str, ...], shape: FieldShape, others: tuple[str, ...],
               line: int) -> Recipient:
        """A row of a recipients file: every column but email and lists is `name` and `others` under `shape`."""
        recipient = cls.__new__(cls)
        recipient._set(email, name, lists, line, shape, others)
        return recipient

    def on_lists(self, lists: tuple[str, ...]) -> Recipient:
        """The same person on `lists` (the selected ones), sharing everything else."""
        recipient = type(self).__new__(type(self))
        recipient._set(self.email, self.name, lists, self.line, self._shape, self._values)
        return recipient

    def _set(self, email: str, name: str, lists: tuple[str, ...], line: int, shape: FieldShape | None,
             values: Any) -> None:
        setter = object.__setattr__   # frozen: __setattr__ refuses
        setter(self, "email", email)
        setter(self, "name", name)
        setter(self, "lists", lists)
        setter(self, "line", line)
        setter(self, "_shape", shape)
        setter(self, "_values", values)

    def __reduce__(self) -> tuple:   # copy and pickle (frozen slots cannot be set back one by one)
        return _restored, self.row()

    def row(self) -> tuple:
        """Its values as a plain tuple, which RecipientRow reads as a Recipient (a file's row keeps its shape)."""
        return (self.email, self.name, self.lists, self.line, self._shape, self._values)


class RecipientRow(NamedTuple):
    """A Recipient's `row()`, read as the Recipient where building a message reads one (email, name, lists,
    line, fields): a batch sent to another process as plain tuples is unpickled there with no Python
    call per person, 0.8 ms a thousand against 2.5 ms as Recipients (send/builder.py)."""

    email: str
    name: str
    lists: tuple[str, ...]
    line: int
    shape: FieldShape | None
    values: Any

    @property
    def fields(self) -> Mapping[str, str]:
        return _fields_of(self.shape, self.name, self.values)


def _restored(email: str, name: str, lists: tuple[str, ...], line: int, shape: FieldShape | None,
              values: Any) -> Recipient:
    """A pickled Recipient, rebuilt as it was kept (a file's row stays a row: its shape is pickled once)."""
    recipient = Recipient.__new__(Recipient)
    recipient._set(email, name, lists, line, shape, values)
    return recipient


def _fields(recipient: Recipient) -> Mapping[str, str]:
    return _fields_of(recipient._shape, recipient.name, recipient._values)


def _fields_of(shape: FieldShape | None, name: str, values: Any) -> Mapping[str, str]:
    """A row's columns read through its file's shape, or (no shape) the mapping it was made with."""
    return values if shape is None else RowFields(shape, name, values)


# After the dataclass is made, so that it still counts `fields` as one of its five fields (for ==, repr, replace).
setattr(Recipient, "fields", property(_fields, doc="Every column but email and lists, cleaned."))
