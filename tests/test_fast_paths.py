"""The per-recipient fast paths of a send give exactly what the plain reference code gives.

A SendGrid send builds a hundred thousand personalizations, so the escapes, the token and the
display name take shortcuts for the usual clean value. Each shortcut is compared here with the
straightforward code it replaced, on awkward values and on many random ones.
"""

from __future__ import annotations

import base64
import hmac
import html
import random

import pytest

from campaign.merge import CONTROL_CHARACTERS, escape_header, escape_html
from campaign.personalize import _link, recipient_token
from campaign.providers.sendgrid_payload import NAME_FORBIDDEN, _display_name
from provider_support import random_values

AWKWARD_VALUES = ["", " ", "Ana", "Ana & <b>Bob</b>", "Eve\r\nBcc: x@example.com", 'say "hi"', "it's",
                  "Muñoz; García, Ω", "Emoji 😀", "\u2028line\u202e", "  spaced   out  ", "&amp;",
                  "https://wego.example.org/u?t=abc_-123&issue=30", "mailto:u@example.org?subject=x y",
                  "tab\there", "\x00", "\ufeffBOM", "ｆｕｌｌ\u3000width", "[[name]]"]


def reference_escape_html(value: str) -> str:
    escaped = html.escape(value, quote=True)
    return escaped if escaped.isascii() else escaped.encode("ascii", "xmlcharrefreplace").decode("ascii")


def reference_escape_header(value: str) -> str:
    return CONTROL_CHARACTERS.sub(" ", value).strip()


@pytest.mark.parametrize("escape, reference", [(escape_html, reference_escape_html),
                                               (escape_header, reference_escape_header)])
def test_each_escape_gives_what_its_reference_gives(escape, reference):
    for value in AWKWARD_VALUES + random_values(3000, seed=18):
        assert escape(value) == reference(value), repr(value)


def test_every_character_a_header_must_not_hold_is_unprintable():
    """escape_header returns a printable value as it is (stripped): that holds only while this does."""
    matched = "".join(CONTROL_CHARACTERS.findall("".join(map(chr, range(0x110000)))))
    assert matched and not any(character.isprintable() for character in matched)


def reference_recipient_token(email: str, secret: str) -> str:
    digest = hmac.digest(secret.encode("utf-8"), email.lower().encode("utf-8"), "sha256")
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def test_recipient_token_is_the_plain_hmac_of_the_address():
    """The keyed HMAC is copied per recipient: the same bytes for every secret, short, long (over SHA-256's
    64-byte block, which HMAC hashes first) or non-ASCII, and every address, whatever its case."""
    rng = random.Random(30)
    secrets = ["s", "bench", "é" * 40, "k" * 64, "k" * 65, "long-" * 50] + random_values(20, seed=3)
    addresses = ["Ana@Example.ORG", "ÉVE@exämple.org", ""] + [value + "@example.org" for value in random_values(200, seed=4)]
    for secret in filter(None, secrets):
        for address in rng.sample(addresses, 60) + addresses[:3]:
            assert recipient_token(address, secret) == reference_recipient_token(address, secret), (address, secret)


LINK_PIECES = ["{token}", "{issue}", "{{", "}}", "{{token}}", "{token!r}", "{token:>30}", "{issue:04d}", "{token[0]}",
               "https://wego.example.org/", "u?t=", "&issue=", "/", "é", "\x00", ""]


def test_a_link_cut_into_pieces_is_what_its_template_formats_to():
    """_link joins pieces cut once per send: the same link as format() for a template with no token
    (the view link), one, several, escaped braces, conversions, format specs and a stray NUL."""
    rng = random.Random(7)
    templates = ["https://wego.example.org/newsletter/issue-{issue}/", "https://x.example/u?t={token}", ""]
    templates += ["".join(rng.choice(LINK_PIECES) for _ in range(rng.randrange(1, 7))) for _ in range(500)]
    for template in templates:
        for token in ("XV8YMPiHwuc5QtpQp05yOd6l", "", "a{b}"):
            assert outcome(_link, template, 30, token) == outcome(reference_link, template, 30, token), (template, token)


def reference_link(template: str, issue_number: int, token: str) -> str:
    return template.format(issue=issue_number, token=token)


def outcome(function, *args):
    """What a call gives: its value, or the kind of error it raises (an empty token has no [0])."""
    try:
        return function(*args)
    except (IndexError, KeyError, ValueError) as error:
        return type(error)


def reference_display_name(name: str) -> str:
    return " ".join(NAME_FORBIDDEN.sub(" ", name or "").split())


def test_a_display_name_is_what_the_reference_makes_of_it():
    names = AWKWARD_VALUES + random_values(3000, seed=5) + [" Ana", "Ana ", "Ana  Souza", "A;B", "A,B", "Ana Souza"]
    for name in names:
        assert _display_name(name) == reference_display_name(name), repr(name)


def test_the_only_printable_space_is_the_ascii_space():
    """_display_name splits a printable name only when it holds two spaces or starts or ends with one:
    that is right while no other character is both printable and whitespace to str.split()."""
    assert [chr(c) for c in range(0x110000) if chr(c).isspace() and chr(c).isprintable()] == [" "]
