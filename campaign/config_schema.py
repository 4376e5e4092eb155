"""How a setting is declared and checked: one line per setting, validated at load.

A settings section is a frozen dataclass; each field says its default, the check
its value must pass and, where the environment may override it, the variable:

    timeout: float = setting(30.0, check=seconds, env="SMTP_TIMEOUT")

The field's type hint is the type the value must have in campaign.toml (str,
int, float, bool, Path, tuple[str, ...] or another section). A check takes the
typed value and returns it (possibly normalised) or raises ValueError with the
rest of a sentence ("is unknown; use one of ..."), which the loader puts after
the setting's name and value. `secret(VARIABLE)` declares a value that only the
environment may give.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import string
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from email_validator import EmailNotValidError

from .addresses import normalise_email
from .errors import ConfigError

Check = Callable[[Any], Any]
MISSING: Any = dataclasses.MISSING


def setting(default: Any = MISSING, *, check: Check | None = None, env: str = "",
            table_of: type | None = None) -> Any:
    """A field read from campaign.toml (and from the variable `env` when it is set)."""
    metadata = {"check": check, "env": env, "table_of": table_of}
    if isinstance(default, (dict, list)):
        raise TypeError("use a tuple or a frozen dataclass as a default")
    return dataclasses.field(default=default, metadata=metadata)


def secret(variable: str) -> Any:
    """A field only the environment variable `variable` may set; never printed."""
    return dataclasses.field(default="", repr=False, metadata={"secret": variable})


def derived(default: Any = MISSING) -> Any:
    """A field the loader fills in itself (never read from the file)."""
    return dataclasses.field(default=default, metadata={"derived": True}, repr=False)


# -- checks ---------------------------------------------------------------------------------

def one_of(*choices: str) -> Check:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"is unknown; use one of {', '.join(choices)}")
        return value
    return check


def between(low: float, high: float) -> Check:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"is out of range; use {low:g} to {high:g}")
        return value
    return check


def at_least(low: int) -> Check:
    def check(value: int) -> int:
        if value < low:
            raise ValueError(f"is out of range; use {low} or more")
        return value
    return check


def seconds(value: float) -> float:
    """A timeout: more than 0, at most an hour."""
    if not 0 < value <= 3600:
        raise ValueError("is out of range; use a number of seconds above 0 and at most 3600")
    return value


def text(value: str) -> str:
    """Non-empty text on one line (it may reach a mail header)."""
    if not value.strip():
        raise ValueError("is empty; write a value")
    if any(character in value for character in "\r\n\0"):
        raise ValueError("holds a line break; keep it on one line")
    return value


def host_name(value: str) -> str:
    """A host name or IP address (IPv6 too), never a URL."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value
    except ValueError:
        pass
    if not value.strip() or any(character in value for character in " /:\r\n"):
        raise ValueError("is not a host name; write just the name, e.g. smtp.example.org")
    return value


def address(value: str) -> str:
    """An email address."""
    try:
        normalise_email(value)
    except EmailNotValidError as error:
        raise ValueError(f"is not an email address ({error})") from None
    return value


def optional(check: Check) -> Check:
    """`check`, except that an empty value is allowed (and means: none)."""
    return lambda value: value if value == "" else check(value)


def mailto(value: str) -> str:
    """An address, optionally written mailto:ADDRESS."""
    address(value.removeprefix("mailto:"))
    return value


def url_template(*fields: str) -> Check:
    """An http(s) URL in which only {field} placeholders from `fields` are filled in."""
    def check(value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError:
            raise ValueError("has a lone '{' or '}'; write {{ or }} for a literal brace") from None
        for _, name, spec, conversion in parsed:
            if name is not None and (name not in fields or spec or conversion):
                raise ValueError(f"uses {{{name}}}; only {', '.join('{%s}' % f for f in fields)} "
                                 "can be filled in")
        parts = urlsplit(value.format(**{name: "1" for name in fields}))
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("is not a web address; write it as https://host/path")
        return value
    return check


def https_or_loopback(value: str) -> str:
    """A base URL that carries a secret: https://, or plain http:// only to this machine (tests)."""
    parts = urlsplit(value)
    if not parts.netloc or (parts.scheme != "https" and not (parts.scheme == "http"
                                                              and _is_loopback(parts.hostname or ""))):
        raise ValueError("must start with https:// (plain http:// only to a loopback host such as 127.0.0.1)")
    return value


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- loading --------------------------------------------------------------------------------

class Source:
    """Where values come from, for error messages: the file, or an environment variable."""

    def __init__(self, path: Path, root: Path, environ: Mapping[str, str]):
        self.path, self.root, self.environ = path, root, environ

    def fail(self, where: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{self.path}: {where} {problem}")


def load_section(cls: type, raw: Any, source: Source, prefix: str = "", **derived_values: Any) -> Any:
    """Build the dataclass `cls` from the TOML table `raw`, checking every value.

    A missing section is built from its defaults (and the environment); a missing
    path is its default, relative to the configuration's folder.
    """
    label = f"[{prefix}]" if prefix else ""
    if not isinstance(raw, dict):
        source.fail(label or "the file", "must be a table")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    readable = {name for name, field in fields.items() if _from_file(field)}
    for key in raw:
        if key not in readable:
            _unknown(key, isinstance(raw[key], dict), fields, readable, source, prefix)
    hints = typing.get_type_hints(cls)
    values = {}
    for name in readable:
        field = fields[name]
        where = f"{label} {name}".strip()
        variable = field.metadata.get("env", "")
        if variable and source.environ.get(variable):
            values[name] = _from_environment(variable, source.environ[variable], hints[name], field, source)
        elif name in raw:
            values[name] = _typed(raw[name], hints[name], field, source, where, prefix)
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = load_section(hints[name], {}, source, f"{prefix}.{name}".lstrip("."))
        elif hints[name] is Path and field.default is not MISSING:
            values[name] = source.root / str(field.default)
        elif field.default is MISSING:
            source.fail(label or "the file", f"has no {name}; add {name} = ...")
    for name, field in fields.items():
        if "secret" in field.metadata:
            values[name] = source.environ.get(field.metadata["secret"], "")
    return cls(**values, **derived_values)


def _from_file(field: dataclasses.Field) -> bool:
    return "secret" not in field.metadata and "derived" not in field.metadata


def _unknown(key: str, table: bool, fields: dict, readable: set[str], source: Source,
             prefix: str) -> typing.NoReturn:
    where = f"[{prefix}] " if prefix else ""
    if key in fields and "secret" in fields[key].metadata:
        source.fail(f"{where}{key}", f"is a secret: set {fields[key].metadata['secret']} in the environment, "
                    "never in campaign.toml")
    near = difflib.get_close_matches(key, sorted(readable), n=1, cutoff=0.6)
    if table and not prefix:
        hint = f"did you mean [{near[0]}]?" if near else f"known: {', '.join(sorted(readable))}"
        source.fail(f"[{key}]", f"is not a known section; {hint}")
    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(sorted(readable))}"
    source.fail(f"{where}{key!r}", f"is not a known setting; {hint}")


def _typed(value: Any, hint: Any, field: dataclasses.Field, source: Source, where: str, prefix: str) -> Any:
    table_of = field.metadata.get("table_of")
    if table_of is not None:
        return _tables(value, table_of, source, f"{prefix}.{field.name}".lstrip("."))
    if dataclasses.is_dataclass(hint):
        return load_section(typing.cast(type, hint), value, source, f"{prefix}.{field.name}".lstrip("."))
    try:
        typed = _as_type(value, hint, source.root)
        check = field.metadata.get("check")
        return check(typed) if check else typed
    except ValueError as error:
        source.fail(f"{where} {value!r}", str(error))


def _tables(raw: Any, cls: type, source: Source, prefix: str) -> tuple:
    """[prefix.NAME] tables, each a `cls` whose first field is the NAME."""
    if not isinstance(raw, dict) or not raw or not all(isinstance(value, dict) for value in raw.values()):
        source.fail(f"[{prefix}]", f"must be one or more tables [{prefix}.NAME], each with its settings")
    first = dataclasses.fields(cls)[0].name
    return tuple(load_section(cls, {first: name, **values}, source, f"{prefix}.{name}")
                 for name, values in raw.items())


def _from_environment(variable: str, value: str, hint: Any, field: dataclasses.Field, source: Source) -> Any:
    try:
        typed = _as_type(_parse_word(value, hint), hint, source.root)
        check = field.metadata.get("check")
        return check(typed) if check else typed
    except ValueError as error:
        raise ConfigError(f"environment variable {variable} {value!r} {error}") from None


def _parse_word(value: str, hint: Any) -> Any:
    """An environment variable's text as the TOML value it stands for."""
    if hint is bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if value.strip().lower() not in words:
            raise ValueError("is not true or false")
        return words[value.strip().lower()]
    if hint is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError("is not a whole number") from None
    if hint is float:
        try:
            return float(value)
        except ValueError:
            raise ValueError("is not a number") from None
    if typing.get_origin(hint) is tuple:
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _as_type(value: Any, hint: Any, root: Path) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError("is not true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("is not a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError('is not text; write it in quotes: "..."')
        return value
    if hint is Path:
        if not isinstance(value, str) or not value.strip():
            raise ValueError('is not a path; write it in quotes: "folder/file"')
        return root / value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError('is not a list of text; write it as ["a", "b"]')
        return tuple(value)
    raise TypeError(f"settings of type {hint} are not supported")  # a programming error, not the user's
