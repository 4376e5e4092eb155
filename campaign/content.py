"""content/issue-N/ -> Issue: every file read, every field checked, errors name file and field.

An issue folder holds `issue.yaml` (metadata) and its sections in order of
their two-digit prefix. A section is either one Markdown file (`03-text.md`)
or a folder (`02-recent-events/`) with `index.md` and one Markdown file per
item. Every Markdown file is YAML front matter between `---` lines, then a
Markdown body.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ContentError, UsageError

ISSUE_FILE = "issue.yaml"
# What `campaign new` leaves in every field to write; `campaign check` reports each one left (field-todo).
TODO_MARKER = re.compile(r"\bTODO\b")
SECTION_INDEX = "index.md"
ORDERED_NAME = re.compile(r"^(\d{2})-[a-z0-9-]+(\.md)?$")

# What each kind of section needs of itself and of each of its items.
SECTION_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "cover": {"section": ("heading", "image", "alt", "body"), "item": ()},
    "text": {"section": ("heading", "body"), "item": ()},
    "events": {"section": ("heading",), "item": ("title", "when", "date", "body")},
    "upcoming": {"section": ("heading",), "item": ("title", "when", "date", "place", "body")},
    "members": {"section": ("heading",), "item": ("title", "place", "image", "alt", "body")},
    "trends": {"section": ("heading",), "item": ("title", "image", "alt", "body", "link")},
}
ITEMS_OF_FOLDER_KINDS = {"events", "upcoming", "members", "trends"}
# A kind not listed above needs only a heading; its layout (layouts/sections/KIND.mjml.j2) decides the rest.
OTHER_KIND = {"section": ("heading",), "item": ("title",)}
KIND_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
ISSUE_FIELDS = ("number", "edition", "title", "subject", "preheader", "published")
SECTION_KEYS = {"kind", "heading", "label", "image", "alt", "decorative", "link", "link_text"}
ITEM_KEYS = {"title", "when", "date", "place", "image", "alt", "decorative", "link", "link_text"}
# `decorative: true` marks a picture that only decorates: it gets alt="" and needs no alt text.
FLAGS = {"decorative"}


@dataclass(frozen=True)
class Item:
    title: str
    body: str = ""                   # Markdown
    when: str = ""                   # as displayed: "July 31 – August 3"
    date: dt.date | None = None      # machine start date, for checks
    place: str = ""
    image: str = ""                  # file name in the issue's images/ folder, or a URL
    alt: str = ""
    decorative: bool = False         # the picture only decorates: alt="" in the email
    link: str = ""
    link_text: str = ""
    source: Path = Path()


@dataclass(frozen=True)
class Section:
    kind: str
    heading: str
    body: str = ""
    label: str = ""
    image: str = ""
    alt: str = ""
    decorative: bool = False
    link: str = ""
    link_text: str = ""
    items: tuple[Item, ...] = ()
    source: Path = Path()

    @property
    def slug(self) -> str:
        return self.source.name.removesuffix(".md")[3:]


@dataclass(frozen=True)
class Issue:
    number: int
    edition: str
    title: str
    subject: str
    preheader: str
    published: dt.date
    language: str
    sections: tuple[Section, ...]
    folder: Path

    @property
    def images_dir(self) -> Path:
        return self.folder / "images"


def issue_folder(content_dir: Path, number: int) -> Path:
    return content_dir / f"issue-{number}"


def available_issues(content_dir: Path) -> list[int]:
    numbers = []
    for path in content_dir.glob("issue-*"):
        suffix = path.name.removeprefix("issue-")
        if path.is_dir() and suffix.isdigit():
            numbers.append(int(suffix))
    return sorted(numbers)


def require_issue(content_dir: Path, number: int) -> Path:
    """The folder of issue `number`; a UsageError naming the issues there are when it does not exist."""
    folder = issue_folder(content_dir, number)
    if not folder.is_dir():
        known = ", ".join(str(n) for n in available_issues(content_dir)) or "none"
        raise UsageError(f"issue {number} does not exist: no folder {folder} (issues found: {known})")
    return folder


def load_issue(content_dir: Path, number: int) -> Issue:
    """Read and check content/issue-N/; raise ContentError naming the file and field."""
    folder = require_issue(content_dir, number)
    metadata = _read_yaml(folder / ISSUE_FILE)
    _require(metadata, ISSUE_FIELDS, folder / ISSUE_FILE)
    if metadata["number"] != number:
        raise ContentError(f"{folder / ISSUE_FILE}: field 'number' is {metadata['number']!r} "
                           f"but the folder is issue-{number}; make them agree")
    sections = tuple(_read_section(path) for path in _ordered_entries(folder))
    if not sections:
        raise ContentError(f"{folder}: no sections; add files named like 01-cover.md")
    return Issue(
        number=number,
        edition=_text(metadata, "edition", folder / ISSUE_FILE),
        title=_text(metadata, "title", folder / ISSUE_FILE),
        subject=_text(metadata, "subject", folder / ISSUE_FILE),
        preheader=_text(metadata, "preheader", folder / ISSUE_FILE),
        published=_date(metadata, "published", folder / ISSUE_FILE),
        language=str(metadata.get("language", "en")),
        sections=sections,
        folder=folder,
    )


def _ordered_entries(folder: Path) -> list[Path]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in (ISSUE_FILE, SECTION_INDEX, "images"):
            continue
        if not ORDERED_NAME.match(path.name) or (path.is_file() and path.suffix != ".md"):
            raise ContentError(f"{path}: not a section; name sections like 02-recent-events.md "
                               "or 02-recent-events/ (two digits, a dash, lowercase words)")
        entries.append(path)
    return entries


def _read_section(path: Path) -> Section:
    index = path / SECTION_INDEX if path.is_dir() else path
    if path.is_dir() and not index.exists():
        raise ContentError(f"{index}: missing; a section folder needs an index.md with its kind and heading")
    front, body = read_markdown(index)
    kind = front.get("kind")
    if not isinstance(kind, str) or not KIND_NAME.match(kind):
        raise ContentError(f"{index}: field 'kind' is {kind!r}; use one of {', '.join(SECTION_KINDS)} "
                           "(or the name of a layout in layouts/sections/)")
    _reject_unknown(front, SECTION_KEYS, index)
    _require({**front, "body": body}, _needed(SECTION_KINDS.get(kind, OTHER_KIND)["section"], front, index), index)
    items: tuple[Item, ...] = ()
    if path.is_dir():
        items = tuple(_read_item(p, kind) for p in _ordered_entries(path))
    if kind in ITEMS_OF_FOLDER_KINDS and not items:
        raise ContentError(f"{index}: a '{kind}' section needs items: make it a folder with one "
                           "Markdown file per item")
    return Section(kind=kind, body=body, items=items, source=path, decorative=_flag(front, "decorative", index),
                   **{key: _text(front, key, index) for key in SECTION_KEYS - {"kind"} - FLAGS if key in front})


def _read_item(path: Path, kind: str) -> Item:
    if path.is_dir():
        raise ContentError(f"{path}: items are Markdown files, not folders")
    front, body = read_markdown(path)
    _reject_unknown(front, ITEM_KEYS, path)
    _require({**front, "body": body}, _needed(SECTION_KINDS.get(kind, OTHER_KIND)["item"], front, path), path)
    values = {key: _text(front, key, path) for key in ITEM_KEYS - {"date"} - FLAGS if key in front}
    return Item(body=body, date=_date(front, "date", path) if "date" in front else None,
                decorative=_flag(front, "decorative", path), source=path, **values)


def read_markdown(path: Path) -> tuple[dict, str]:
    """Split a Markdown file into its YAML front matter and its body."""
    text = _read_text(path)
    if not text.startswith("---"):
        raise ContentError(f"{path}:1: no front matter; start the file with a line '---', "
                           "the fields, and another '---'")
    parts = re.split(r"^---[ \t]*$", text, maxsplit=2, flags=re.MULTILINE)
    if len(parts) < 3:
        raise ContentError(f"{path}: front matter is not closed; add a line '---' after the fields")
    front = _parse_yaml(parts[1], path)
    return front, parts[2].strip()


def _read_yaml(path: Path) -> dict:
    return _parse_yaml(_read_text(path), path)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ContentError(f"{path}: missing; every issue needs it")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ContentError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None


def yaml_loader() -> type:
    """libyaml's C parser when PyYAML has it (its wheels do): ten times faster, same safe subset.
    Imported when content is read: a send gets its Issue from the render and never needs YAML."""
    import yaml  # noqa: PLC0415

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, path: Path) -> dict:
    import yaml  # noqa: PLC0415  (see yaml_loader)

    try:
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise ContentError(f"{path}{where}: {problem}; check quoting and indentation") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ContentError(f"{path}: expected 'field: value' lines")
    return data


def _require(values: dict, fields: tuple[str, ...], path: Path) -> None:
    for name in fields:
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            what = "a Markdown body after the front matter" if name == "body" else f"field '{name}'"
            raise ContentError(f"{path}: missing {what}")


def _needed(fields: tuple[str, ...], front: dict, path: Path) -> tuple[str, ...]:
    """The fields a part must have: a decorative picture needs no alt text."""
    return tuple(name for name in fields if not (name == "alt" and _flag(front, "decorative", path)))


def _flag(values: dict, name: str, path: Path) -> bool:
    value = values.get(name, False)
    if not isinstance(value, bool):
        raise ContentError(f"{path}: field '{name}' is {value!r}; write true or false")
    return value


def _reject_unknown(front: dict, known: set[str], path: Path) -> None:
    unknown = sorted(set(front) - known - {"kind"})
    if unknown:
        raise ContentError(f"{path}: unknown field '{unknown[0]}'; known fields: {', '.join(sorted(known))}")


def _text(values: dict, name: str, path: Path) -> str:
    value = values.get(name, "")
    if isinstance(value, (dict, list)):
        raise ContentError(f"{path}: field '{name}' must be text")
    return str(value).strip()


def _date(values: dict, name: str, path: Path) -> dt.date:
    value = values.get(name)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ContentError(f"{path}: field '{name}' is {value!r}; write a date as YYYY-MM-DD") from None
