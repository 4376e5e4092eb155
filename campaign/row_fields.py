"""A recipient's columns in little memory: a read-only Mapping over values shared between rows.

A million recipients held as one dict per person cost ~184 bytes each for the
dict alone, and the same city, country, language and organisation strings were
held once per person. `RowFields` keeps a row's columns as

* one `FieldShape` per file (the column names, in file order, and where each value is),
* the row's name (nearly always its own string), and
* a tuple of the other values, the same tuple object for every row with the same
  values (`ValuePool` hands out one object per distinct value or tuple).

so a row's fields take one small object (56 bytes) plus whatever values are its
own. It reads as a `Mapping[str, str]` like the dict it replaces: same keys in the
same order, same values, equal to a dict with the same items.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Hashable, TypeVar

NAME = "name"
POOL_LIMIT = 50_000   # distinct values a pool shares; past it, new values are kept as they come

T = TypeVar("T", bound=Hashable)
V = TypeVar("V")


class ValuePool(dict):
    """One object per distinct value, so rows with the same city (or the same values) share it.

    A dict from a key to the value shared for it: the hot path is the dict's own `get`;
    on a miss, `share(key, value)` keeps the value for later rows and returns it.
    `same(value)` interns a value under itself. Bounded: a column whose values all
    differ (an organisation per person) would otherwise hold an entry per row while
    loading; after `limit` keys the pool takes no new ones and values are kept as they come.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int | None = None):
        super().__init__()
        self.limit = POOL_LIMIT if limit is None else limit

    def share(self, key: Hashable, value: V) -> V:
        if len(self) < self.limit:
            self[key] = value
        return value

    def same(self, value: T) -> T:
        shared = self.get(value)
        return self.share(value, value) if shared is None else shared


class FieldShape:
    """The columns of one recipients file's rows (every column but email and lists, in file order)."""

    __slots__ = ("columns", "_where", "_name_at")

    def __init__(self, columns: tuple[str, ...]):
        self.columns = columns
        self._name_at = columns.index(NAME) if NAME in columns else -1
        others = [column for column in columns if column != NAME]
        self._where = {column: others.index(column) if column != NAME else -1 for column in columns}

    def values(self, name: str, others: tuple[str, ...]) -> tuple[str, ...]:
        at = self._name_at
        return others if at < 0 else (*others[:at], name, *others[at:])


class RowFields(Mapping[str, str]):
    """One row's columns, read-only, as a Mapping[str, str] (see the module's docstring)."""

    __slots__ = ("_shape", "_name", "_others")

    def __init__(self, shape: FieldShape, name: str, others: tuple[str, ...]):
        self._shape = shape
        self._name = name
        self._others = others

    def __getitem__(self, key: str) -> str:
        at = self._shape._where[key]   # KeyError for a column the file does not have, as a dict
        return self._name if at < 0 else self._others[at]

    def get(self, key: str, default=None):  # type: ignore[override]
        at = self._shape._where.get(key)
        if at is None:
            return default
        return self._name if at < 0 else self._others[at]

    def __contains__(self, key: object) -> bool:
        return key in self._shape._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._shape.columns)

    def __len__(self) -> int:
        return len(self._shape.columns)

    def keys(self) -> KeysView[str]:
        return self._shape._where.keys()

    def values(self) -> ValuesView[str]:
        return _Values(self)

    def items(self) -> ItemsView[str, str]:
        return _Items(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowFields) and other._shape is self._shape:
            return other._name == self._name and other._others == self._others
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # like a dict: fields are compared, never hashed

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def _values(self) -> tuple[str, ...]:
        return self._shape.values(self._name, self._others)


class _Items(ItemsView[str, str]):
    """items() without a Python call per key: merge values are built from it for every message."""

    _mapping: RowFields

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(self._mapping._shape.columns, self._mapping._values())


class _Values(ValuesView[str]):
    _mapping: RowFields

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping._values())
