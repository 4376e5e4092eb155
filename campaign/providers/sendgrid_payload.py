"""The mail/send JSON body for one batch, and SendGrid's documented limits checked before sending.

The issue's HTML and text go once as `content`, and each recipient is one
personalization (nobody sees another address) with substitutions for the merge
placeholders. A value lands in three places, each escaped differently, so each
placeholder gets a tag per place:

* HTML: the placeholder exactly as written (`[[name|colleague]]`), HTML-escaped value;
* text: `[[name|colleague:t]]`, the plain value;
* subject: `[[name|colleague:s]]`, the value cleaned for a header.

Nothing is left to the SendGrid account's own settings: every body says what
tracking SendGrid may add (`tracking_settings`), which statistics it counts in
(`categories`) and, per personalization, which ledger row and attempt it is
(`custom_args`, matched by the event webhook).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as quoted   # the encoder json.dumps uses for each str
from typing import Callable

from ..config import SendGridSettings, Settings
from ..merge import MergeTemplate, Placeholder, escape_header, escape_html, escape_text
from ..mime import ONE_CLICK, ListUnsubscribe, feedback_id, list_id
from ..personalize import Envelope
from .base import Batch

# SendGrid's limits that its OpenAPI schema does not enforce (tsg_mail_v3.json descriptions, LIBRARY-TRAPS.md).
MAX_CUSTOM_ARGS_BYTES = 10_000        # custom_args of one personalization, as JSON
MAX_SUBSTITUTIONS_BYTES = 10_000      # substitutions of one personalization, as JSON (the schema's figure)
MAX_REQUEST_BYTES = 30_000_000        # the whole request ("under 30 MB")

# The per-personalization custom_args keys: SendGrid copies each into every event as a top-level field,
# so they carry a prefix that no SendGrid event field has.
ARG_ISSUE, ARG_DELIVERY, ARG_LISTS = "campaign_issue", "campaign_delivery", "campaign_lists"

NAME_FORBIDDEN = re.compile(r"[;,\x00-\x1f\x7f]+")

TagFills = dict[str, tuple[Placeholder, Callable[[str], str]]]
# Per field and fallback: the placeholder, then each escape with the tags that take its result.
FillGroups = tuple[tuple[Placeholder, tuple[tuple[Callable[[str], str], tuple[str, ...]], ...]], ...]


@dataclass(frozen=True)
class Body:
    """What `build_body` made of a batch, as plain data (it may be built in another process).

    `pieces`: each recipient's personalization as JSON, by address; `refused`: {email: why SendGrid
    would refuse that personalization}, naming the recipient's line: never posted.
    """

    pieces: dict[str, str]
    refused: dict[str, str]


def build_body(batch: Batch, settings: Settings) -> Body:
    """Payload.built as a plain function, which another process can run (send/builder.py)."""
    return Payload(batch, settings).built()


class Payload:
    """One batch's body, built once: the shared part, then a personalization per envelope.

    With `body` (build_body's, maybe made in another process) the personalizations are taken from
    it and never written again: the envelopes may then carry no merge values at all.
    """

    def __init__(self, batch: Batch, settings: Settings, body: Body | None = None):
        self.batch = batch
        self._issue_number = batch.issue.number
        self._unsubscribe_of = ListUnsubscribe(settings.links)
        issue = batch.issue
        self._fills = _fill_groups((
            _tag_fills(issue.html, lambda p: p.token, escape_html),
            _tag_fills(issue.text, lambda p: _suffixed(p, "t"), escape_text),
            _tag_fills(issue.subject, lambda p: _suffixed(p, "s"), escape_header),
        ))
        self.common = _common(batch, settings)
        self._common_json = json.dumps(self.common)
        self._common_bytes = len(self._common_json)
        # A personalization no longer than this is under every limit, alone in a body too.
        self._fits_every_limit = min(MAX_CUSTOM_ARGS_BYTES, MAX_SUBSTITUTIONS_BYTES, MAX_REQUEST_BYTES - self.size([]))
        self._writer = PersonalizationJson(self._fills, self._unsubscribe_of, self._issue_number)
        self._json: dict[str, str] = dict(body.pieces) if body else {}   # each personalization as JSON, once
        self._written_elsewhere = body is not None

    def built(self) -> Body:
        """Every personalization of the batch, serialised once, and those SendGrid would refuse."""
        pieces, refused = {}, {}
        for envelope in self.batch.envelopes:
            problem = self.over_limit(envelope)
            if problem:
                refused[envelope.email] = problem
            else:
                pieces[envelope.email] = self._json_of(envelope)
        return Body(pieces, refused)

    def personalization(self, envelope: Envelope) -> dict:
        return _personalization(envelope, self._fills, self._unsubscribe_of, self._issue_number)

    def _json_of(self, envelope: Envelope) -> str:
        """The personalization as json.dumps writes it (7-bit: its length is its size in bytes)."""
        text = self._json.get(envelope.email)
        if text is None:
            if self._written_elsewhere:   # its envelopes may hold no merge values: never write one from them
                raise KeyError(f"the body built for batch {self.batch.batch_id} has no personalization "
                               f"for {envelope.email}")
            text = self._json[envelope.email] = self._writer.write(envelope)
        return text

    def _size_of(self, envelope: Envelope) -> int:
        return len(self._json_of(envelope))

    def too_large(self, envelopes: list[Envelope]) -> bool:
        """Whether the body would be over SendGrid's 30 MB."""
        return self.size(envelopes) > MAX_REQUEST_BYTES

    def body(self, envelopes: list[Envelope]) -> dict:
        return {"personalizations": [self.personalization(envelope) for envelope in envelopes], **self.common}

    def body_json(self, envelopes: list[Envelope]) -> str:
        """json.dumps(self.body(envelopes)), joined from the pieces serialised once (no second encoding).

        The body's start and the shared part ride on the first and last personalization, so the
        megabyte is copied by one join (each further copy of it cost ~1 ms a batch)."""
        if not envelopes:
            return '{"personalizations": [], ' + self._common_json[1:]
        pieces = [self._json_of(envelope) for envelope in envelopes]
        pieces[0] = '{"personalizations": [' + pieces[0]
        pieces[-1] += "], " + self._common_json[1:]
        return ", ".join(pieces)

    def size(self, envelopes: list[Envelope]) -> int:
        """The body's size in bytes as the client sends it (json.dumps defaults), without building it."""
        parts = sum(self._size_of(envelope) for envelope in envelopes)
        return self._common_bytes + len('"personalizations": [], ') + parts + 2 * max(0, len(envelopes) - 1)

    def over_limit(self, envelope: Envelope) -> str:
        """Why SendGrid would refuse this recipient's personalization, naming their line; "" when it fits."""
        if self._size_of(envelope) <= self._fits_every_limit:
            return ""  # the usual case: each part is smaller than the whole, which fits every limit
        personalization = self.personalization(envelope)
        where = (f"recipients line {envelope.line} ({envelope.email})" if envelope.line
                 else envelope.email)
        custom_args = _json_size(personalization.get("custom_args", {}))
        if custom_args > MAX_CUSTOM_ARGS_BYTES:
            return (f"{where}: its custom_args (issue, delivery id, list names) take {custom_args:,} bytes, "
                    f"over SendGrid's {MAX_CUSTOM_ARGS_BYTES:,}; shorten the list names")
        substitutions = _json_size(personalization.get("substitutions", {}))
        if substitutions > MAX_SUBSTITUTIONS_BYTES:
            return (f"{where}: its merge values take {substitutions:,} bytes as SendGrid substitutions "
                    f"(HTML, text and subject), over SendGrid's {MAX_SUBSTITUTIONS_BYTES:,} per recipient; "
                    "shorten the long values in that line")
        if self.size([envelope]) > MAX_REQUEST_BYTES:
            return (f"{where}: the message alone is over SendGrid's {MAX_REQUEST_BYTES:,} bytes per request; "
                    "make the issue smaller")
        return ""


def build_payload(batch: Batch, settings: Settings) -> dict:
    """The mail/send JSON body for one batch: content once, one personalization per recipient."""
    return Payload(batch, settings).body(list(batch.envelopes))


def tracking_settings(config: SendGridSettings) -> dict:
    """What SendGrid may add, decided here and not by the account: never its own unsubscribe footer."""
    return {
        "click_tracking": {"enable": config.track_clicks, "enable_text": False},
        "open_tracking": {"enable": config.track_opens},
        "subscription_tracking": {"enable": False},
        "ganalytics": {"enable": False},
    }


def categories(batch: Batch) -> list[str]:
    """`issue-N` for a real send only, so test sends and sandbox runs never count in the issue's stats."""
    if batch.test or batch.sandbox:
        return [name for name, on in (("test", batch.test), ("sandbox", batch.sandbox)) if on]
    return [f"issue-{batch.issue.number}"]


def _common(batch: Batch, settings: Settings) -> dict:
    issue, sender = batch.issue, settings.sender
    common: dict = {
        "from": _address(sender.from_email, sender.from_name),
        "subject": issue.subject.with_tags(lambda p: _suffixed(p, "s")),
        "content": [
            {"type": "text/plain", "value": issue.text.with_tags(lambda p: _suffixed(p, "t"))},
            {"type": "text/html", "value": issue.html.source},
        ],
        "headers": {"List-Id": list_id(sender), "Feedback-ID": feedback_id(issue.number, sender)},
        "categories": categories(batch),
        "tracking_settings": tracking_settings(settings.sendgrid),
    }
    if sender.reply_to:
        common["reply_to"] = {"email": sender.reply_to}
    if batch.sandbox:
        common["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return common


def _tag_fills(template: MergeTemplate, tag_for: Callable[[Placeholder], str], escape) -> TagFills:
    """tag -> (placeholder, escape): the substitution value is the escaped value or fallback."""
    return {tag_for(p): (p, escape) for p in template.placeholders}


def _fill_groups(tag_sets: tuple[TagFills, ...]) -> FillGroups:
    """The tags grouped by field and fallback, then by escape: each value is looked up and escaped once."""
    groups: dict[tuple[str, str], tuple[Placeholder, dict[Callable[[str], str], list[str]]]] = {}
    for tags in tag_sets:
        for tag, (placeholder, escape) in tags.items():
            _, by_escape = groups.setdefault((placeholder.name, placeholder.fallback), (placeholder, {}))
            by_escape.setdefault(escape, []).append(tag)
    return tuple((placeholder, tuple((escape, tuple(tags)) for escape, tags in by_escape.items()))
                 for placeholder, by_escape in groups.values())


def _substitutions(fields, fills: FillGroups) -> dict[str, str]:
    substitutions = {}
    for placeholder, by_escape in fills:
        value = placeholder.value_in(fields)
        for escape, tags in by_escape:
            escaped = escape(value)
            for tag in tags:
                substitutions[tag] = escaped
    return substitutions


def _suffixed(placeholder: Placeholder, suffix: str) -> str:
    return placeholder.token[:-2] + f":{suffix}]]"


def _personalization(envelope: Envelope, fills: FillGroups, unsubscribe_of: ListUnsubscribe,
                     issue_number: int) -> dict:
    """One recipient's personalization as a dict: the reference that PersonalizationJson writes faster."""
    substitutions = _substitutions(envelope.fields, fills)
    personalization: dict = {"to": [_address(envelope.email, envelope.name)]}
    if substitutions:
        personalization["substitutions"] = substitutions
    unsubscribe = unsubscribe_of.header(envelope.unsubscribe_url, envelope.token)
    headers = {}
    if unsubscribe:
        headers["List-Unsubscribe"] = unsubscribe
    if envelope.unsubscribe_url:
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    if headers:
        personalization["headers"] = headers
    personalization["custom_args"] = _custom_args(envelope, issue_number)
    return personalization


def _custom_args(envelope: Envelope, issue_number: int) -> dict[str, str]:
    """This recipient's own: issue, delivery id (absent for test sends) and lists. Strings only."""
    args = {ARG_ISSUE: str(issue_number), ARG_DELIVERY: envelope.delivery_id, ARG_LISTS: ",".join(envelope.lists)}
    return {key: value for key, value in args.items() if value}


def _address(addr: str, name: str) -> dict:
    """SendGrid's {email, name}: names may not contain ';' or ','."""
    cleaned = _display_name(name)
    return {"email": addr, "name": cleaned} if cleaned else {"email": addr}


def _display_name(name: str) -> str:
    name = name or ""
    if name.isprintable() and ";" not in name and "," not in name:   # nothing forbidden; no space but " "
        return name if "  " not in name and name[:1] != " " and name[-1:] != " " else " ".join(name.split())
    return " ".join(NAME_FORBIDDEN.sub(" ", name).split())


class PersonalizationJson:
    """`json.dumps(personalization)` written straight from an envelope, a hundred thousand times a send.

    The same JSON, byte for byte (tests compare the two), without building the dicts and
    walking them again: the keys and the constant parts are encoded once per batch, and each
    recipient's strings go through the C encoder json.dumps itself uses. Every piece goes into
    one list, joined once.
    """

    def __init__(self, fills: FillGroups, unsubscribe_of: ListUnsubscribe, issue_number: int):
        self._fills = _encoded_fills(fills)
        self._substitutions_end = "}" if fills else ""
        self._unsubscribe_of = unsubscribe_of
        self._issue = quoted(ARG_ISSUE) + ": " + quoted(str(issue_number))
        self._lists: dict[tuple[str, ...], str] = {}    # each distinct lists tuple, encoded once

    def write(self, envelope: Envelope) -> str:
        parts = ['{"to": [{"email": ', quoted(envelope.email)]
        name = _display_name(envelope.name)
        if name:
            parts += [', "name": ', quoted(name)]
        parts.append("}]")
        self._add_substitutions(parts, envelope.fields)
        parts.append(self._substitutions_end)
        self._add_headers(parts, envelope)
        parts += [', "custom_args": {', self._custom_args(envelope), "}}"]
        return "".join(parts)

    def _add_substitutions(self, parts: list[str], fields) -> None:
        for name, fallback, placeholder, keyed_escapes in self._fills:
            value = fields.get(name)
            value = (value or fallback) if value is not None else placeholder.value_in(fields)
            plain = ""
            for escape, key in keyed_escapes:
                escaped = value if escape is None else escape(value)
                if escaped is value:   # as a rule nothing to escape: the value is encoded once for all its tags
                    encoded = plain = plain or quoted(value)
                else:
                    encoded = quoted(escaped)
                parts += (key, encoded)

    def _add_headers(self, parts: list[str], envelope: Envelope) -> None:
        url = envelope.unsubscribe_url
        unsubscribe = self._unsubscribe_of.header(url, envelope.token)
        if unsubscribe:
            parts += (', "headers": {"List-Unsubscribe": ', quoted(unsubscribe),
                      _ONE_CLICK_MEMBER + "}" if url else "}")

    def _custom_args(self, envelope: Envelope) -> str:
        issue_and_id = (self._issue + ', "' + ARG_DELIVERY + '": ' + quoted(envelope.delivery_id)
                        if envelope.delivery_id else self._issue)
        lists = self._lists.get(envelope.lists)
        if lists is None:
            joined = ",".join(envelope.lists)
            lists = self._lists[envelope.lists] = ', "' + ARG_LISTS + '": ' + quoted(joined) if joined else ""
        return issue_and_id + lists


_ONE_CLICK_MEMBER = ', "List-Unsubscribe-Post": ' + quoted(ONE_CLICK)


def _encoded_fills(fills: FillGroups) -> tuple:
    """Per field: its name, fallback and placeholder, then each tag's escape (None: the value as it is)
    and JSON key, the key with what comes before it (`, "substitutions": {` for the first, `, ` for
    the others) and after it (`: `)."""
    before = ', "substitutions": {'
    encoded = []
    for placeholder, by_escape in fills:
        keyed_escapes = []
        for escape, tags in by_escape:
            for tag in tags:
                keyed_escapes.append((None if escape is escape_text else escape, before + quoted(tag) + ": "))
                before = ", "
        encoded.append((placeholder.name, placeholder.fallback, placeholder, tuple(keyed_escapes)))
    return tuple(encoded)


def _json_size(value: object) -> int:
    return len(json.dumps(value))   # ensure_ascii (the default): one character, one byte


class JsonText:
    """A body for python-http-client, which asks it for `.encode("utf-8")` (its media type is not exactly
    "application/json") and then formats those bytes into a DEBUG message on every request, logged
    or not: the repr of a megabyte, ~3 ms of the interpreter, holding every address. Its bytes format
    as their size instead; they are encoded once, straight into the bytes that are sent."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _SizedBytes(self.text, encoding, errors)


class _SizedBytes(bytes):
    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes of JSON>"
