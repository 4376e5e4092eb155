"""The placeholder engine: `[[name]]` fields in a rendered issue, filled by one join per recipient.

A rendered issue carries merge placeholders such as `[[name]]` or
`[[name|colleague]]` (the part after `|` is the fallback used when the value is
empty). They contain no spaces or angle brackets, so they survive MJML and
premailer untouched. `MergeTemplate` splits a text once at its placeholders,
so each fill is one `str.join`: microseconds, not a render. The escapes say
how a value is made safe for where it lands, and `BUILTIN_FIELDS` is the one
list of fields every recipient has whatever the recipients file's columns.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import ContentError

# Fields personalize.merge_values gives every recipient; the recipients file's columns add the rest.
BUILTIN_FIELDS = frozenset({"email", "name", "token", "unsubscribe_url", "view_url"})

PLACEHOLDER = re.compile(r"\[\[([a-z][a-z0-9_]*)(?:\|([^\[\]|]*))?\]\]")
# C0 and C1 controls (CR, LF, TAB, NUL...), line/paragraph separators, bidi overrides, stray BOMs:
# never in a header, never in a merged value, never in a cleaned CSV cell.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]+")


def bracketed_field(fields: Mapping[str, str]) -> str:
    """The first field whose value holds `[[` or `]]`, else "": such a value would be read as a placeholder
    (SendGrid's nested substitution is undefined). Values are joined with NUL (a cleaned value holds no
    control character), so one scan checks a whole row."""
    joined = "\x00".join(fields.values())
    if "[[" not in joined and "]]" not in joined:
        return ""
    return next(name for name, value in fields.items() if "[[" in value or "]]" in value)


@dataclass(frozen=True)
class Placeholder:
    name: str
    fallback: str
    token: str  # exactly as written, e.g. "[[name|colleague]]"

    def value_in(self, values: Mapping[str, str]) -> str:
        """This field's value for one recipient, or the fallback when it is empty."""
        value = values.get(self.name)
        if value is None:
            raise ContentError(
                f"merge field [[{self.name}]] has no value: add a '{self.name}' "
                "column to the recipients file or remove the field from the layout"
            )
        return value or self.fallback


class MergeTemplate:
    """A text split once at its placeholders; `fill` is one join per recipient.

    `markup=True` for HTML source: a fallback written in a layout (`[[name|compañero & amiga]]`)
    comes out of the render HTML-escaped, so it is read back as the plain words it was and escaped
    once, like any value, when filled.
    """

    __slots__ = ("source", "_literals", "_placeholders", "_literal_bytes", "_pieces", "_slots")

    def __init__(self, source: str, *, markup: bool = False):
        self.source = source
        pieces = PLACEHOLDER.split(source)
        # split() with two groups yields literal, name, fallback, literal, name, fallback, ..., literal
        self._literals = pieces[0::3]
        self._placeholders = tuple(
            Placeholder(name, (html.unescape(fallback) if markup else fallback) if fallback else "",
                        f"[[{name}|{fallback}]]" if fallback is not None else f"[[{name}]]")
            for name, fallback in zip(pieces[1::3], pieces[2::3])
        )
        self._literal_bytes: int | None = None  # UTF-8 size of the text between placeholders, on first use
        # The literals with a hole per placeholder: a fill copies this short list and fills the holes.
        self._pieces: list[str] = [self._literals[0]]
        slots = []
        for placeholder, literal in zip(self._placeholders, self._literals[1:]):
            slots.append((len(self._pieces), placeholder.name, placeholder.fallback, placeholder))
            self._pieces += ["", literal]
        self._slots = tuple(slots)

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return self._placeholders

    def field_names(self) -> set[str]:
        return {placeholder.name for placeholder in self._placeholders}

    def fill(self, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
        """The text for one recipient. The hot loop of a send: kept to a list copy and a join."""
        if not self._slots:
            return self.source
        parts = self._pieces.copy()
        for index, name, fallback, placeholder in self._slots:
            value = values.get(name)
            parts[index] = escape(value or fallback) if value is not None else placeholder.value_in(values)
        return "".join(parts)

    def filled_size(self, values: Mapping[str, str], escape: Callable[[str], str]) -> int:
        """len(self.fill(values, escape).encode("utf-8")) without building or encoding the whole text.

        Encoding an 87 kB issue with one non-ASCII character takes ~0.2 ms; for 100,000
        recipients that was most of a dry run. Only the filled values are encoded here.
        """
        if self._literal_bytes is None:
            self._literal_bytes = sum(len(literal.encode("utf-8")) for literal in self._literals)
        size = self._literal_bytes
        for placeholder in self._placeholders:
            size += len(escape(placeholder.value_in(values)).encode("utf-8"))
        return size

    def with_tags(self, tag_for: Callable[[Placeholder], str]) -> str:
        """The source with each placeholder replaced by another tag (SendGrid substitutions)."""
        parts = [self._literals[0]]
        for index, placeholder in enumerate(self._placeholders, start=1):
            parts.append(tag_for(placeholder))
            parts.append(self._literals[index])
        return "".join(parts)


def escape_html(value: str) -> str:
    """HTML-escaped and, like the rendered issue, 7-bit: `Muñoz` -> `Mu&#241;oz`."""
    # Most values (links, addresses, names) hold none of the five: five `in` tests cost a third of html.escape.
    if "&" in value or "<" in value or ">" in value or '"' in value or "'" in value:
        value = html.escape(value, quote=True)
    return value if value.isascii() else value.encode("ascii", "xmlcharrefreplace").decode("ascii")


def escape_text(value: str) -> str:
    return value


def escape_header(value: str) -> str:
    """No CR, LF or other control character ever reaches a header."""
    if value.isprintable():   # every CONTROL_CHARACTERS one is unprintable: nothing to replace
        return value.strip()
    return CONTROL_CHARACTERS.sub(" ", value).strip()
