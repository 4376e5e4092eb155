"""Small builders shared by the provider and MIME tests: settings, a rendered issue, envelopes."""

from __future__ import annotations

import random
from pathlib import Path

from campaign.config import Settings, load_settings
from campaign.merge import MergeTemplate
from campaign.personalize import Envelope
from campaign.render import RenderedIssue

API_KEY = "SG.test-key-not-secret"
TRICKY_NAME = "Ana & <b>Bob</b>"
INJECTION_NAME = "Eve\r\nBcc: x@example.com"
# Characters that change what an escape does: the five HTML specials, whitespace and controls of every
# kind, the header's forbidden ones, non-ASCII letters, an astral emoji, and plain letters.
AWKWARD_CHARACTERS = ("&<>\"'; ,=?/:%+_-.@[]|\\ \t\r\n\x00\x0b\x1f\x7f\x85\x9f\xa0\u2028\u2029\u202a\u202e"
                      "\u2066\u2069\ufeff\u3000éñŁΩ😀aZ09")


def random_values(count: int, seed: int) -> list[str]:
    """`count` strings of up to 23 AWKWARD_CHARACTERS, the same for the same seed."""
    rng = random.Random(seed)
    return ["".join(rng.choice(AWKWARD_CHARACTERS) for _ in range(rng.randrange(0, 24))) for _ in range(count)]


# Every [smtp]/[sendgrid] field is written out: config.load_settings applies environment
# overrides to a shallow copy of its DEFAULTS, so a value set by an earlier call in the
# same process would otherwise leak into these settings.
BASE_CONFIG = """
[smtp]
host = "localhost"
port = 587
security = "starttls"
username = ""
timeout = 30.0

[sendgrid]
api_url = "https://api.sendgrid.com"
timeout = {sendgrid_timeout}
"""


def provider_settings(root: Path, sendgrid_timeout: float = 30.0, **environ: str) -> Settings:
    """Default settings (not the project's campaign.toml), plus environment overrides."""
    config = root / "campaign.toml"
    config.write_text(BASE_CONFIG.format(sendgrid_timeout=sendgrid_timeout), encoding="utf-8")
    return load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": "test-secret", **environ})


def rendered_issue(number: int = 30) -> RenderedIssue:
    return RenderedIssue(
        number=number,
        subject=MergeTemplate("WeGO Newsletter 30 for [[name|colleague]]"),
        html=MergeTemplate('<html><body><p>Dear [[name|colleague]],</p><p>News from [[city]].</p>'
                           '<p><a href="[[unsubscribe_url]]">Unsubscribe</a></p></body></html>'),
        text=MergeTemplate("Dear [[name|colleague]],\n\nNews from [[city]].\n\n"
                           "Unsubscribe: [[unsubscribe_url]]\n"),
        preheader="Smart cities news",
    )


def envelope(email: str, name: str = "", city: str = "Seoul", lists: tuple[str, ...] = ("members",)) -> Envelope:
    token = email.split("@")[0].replace(".", "-")
    fields = {
        "email": email,
        "name": name,
        "city": city,
        "unsubscribe_url": f"https://wego.example.org/newsletter/unsubscribe?t=tok-{token}",
    }
    return Envelope(email=email, name=name, fields=fields, lists=lists)


def envelopes(count: int, start: int = 0) -> list[Envelope]:
    return [envelope(f"person{n:05d}@example.org", f"Person {n}") for n in range(start, start + count)]
