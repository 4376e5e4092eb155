"""Issue 30 renders offline, completely, once; and recipient data is escaped where it lands."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.personalize import Envelope, merge_values, personalize, sample_envelope
from campaign.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
SEED = ROOT.parent / "shared" / "seed" / "wego-enewsletter-q2-2022-issue-30.txt"
UPDATE_GOLDEN = os.environ.get("CAMPAIGN_UPDATE_GOLDEN") == "1"
GMAIL_CLIP_BYTES = 100 * 1024
REPEATED_PARAGRAPH = "WeGO also participated as a commentator for the UN Committee of Experts"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def settings():
    return replace(load_settings(ROOT / "campaign.toml") if (ROOT / "campaign.toml").exists()
                   else load_settings(environ={}), token_secret="test-secret")


@pytest.fixture(scope="module")
def rendered(settings):
    return render_issue(settings, 30)


def envelope(settings, name: str, **columns) -> Envelope:
    email = columns.pop("email", "ana@example.org")
    values = merge_values(email, name, {"name": name, **columns}, issue_number=30,
                          links=settings.links, token_secret=settings.token_secret)
    return Envelope(email=email, name=name, fields=values)


INLINE_TAGS = {"a", "em", "strong", "span", "b", "i"}


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in INLINE_TAGS:
            self.text.append(" ")

    def handle_endtag(self, tag):
        if tag not in INLINE_TAGS:
            self.text.append(" ")

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_render_makes_no_network_connection(settings, no_network):
    rendered = render_issue(settings, 30)
    assert "</html>" in rendered.html.source


def test_html_is_compiled_inlined_and_free_of_remote_styles(rendered):
    html = rendered.html.source
    assert html.startswith("<!doctype html>")
    assert "<mj-" not in html
    assert "{{" not in html and "{%" not in html
    assert not re.search(r"<link[^>]+stylesheet", html)
    assert "@import" not in html and "fonts.googleapis" not in html
    assert re.search(r'<html[^>]*\blang="en"', html)
    assert "<!--[if mso | IE]>" in html
    assert "!important" in html, "MJML's mobile rules need !important in the media query"
    tags = parse(html).tags
    headings = [tag for tag, attrs in tags if tag in ("h1", "h2", "h3")]
    assert headings.count("h1") == 1 and headings.count("h2") == 6 and headings.count("h3") >= 14
    assert all("style" in attrs for tag, attrs in tags if tag in ("h2", "h3", "p", "a"))


def test_html_is_seven_bit_with_character_references(rendered, settings):
    assert rendered.html.source.isascii()
    assert "S&#227;o Paulo" in rendered.html.source
    message = personalize(rendered, envelope(settings, "Đorđe Muñoz"))
    assert message.html.isascii() and "Dear &#272;or&#273;e Mu&#241;oz," in message.html
    assert "Dear Đorđe Muñoz," in message.text


def test_every_image_has_alt_text_and_width(rendered):
    images = [attrs for tag, attrs in parse(rendered.html.source).tags if tag == "img"]
    assert len(images) == 9
    for attrs in images:
        assert attrs.get("alt", "").strip(), attrs
        assert attrs.get("width", "").isdigit(), attrs


def test_tables_are_presentational(rendered):
    tables = [attrs for tag, attrs in parse(rendered.html.source).tags if tag == "table"]
    assert tables and all(attrs.get("role") == "presentation" for attrs in tables)


def test_html_and_text_carry_every_section_item_date_and_place(rendered, settings):
    message = personalize(rendered, sample_envelope(settings, 30))
    html_text = words("".join(parse(message.html).text))
    text = words(message.text)
    expected = [
        "São Paulo", "Recent events", "WeGO Secretariat activities", "Upcoming activities",
        "New members", "Smart city trends",
        "WeGO Smart City Champions", "May - June", "Latin America Smart Cities Network (LASCN) Webinar",
        "World Cities Summit 2022", "July 31 – August 3", "Singapore, Singapore",
        "WeGO-NIA Joint Workshop 2022", "Seoul Leaders Forum", "September 27 - 29", "Hybrid",
        "Solutions Meet Cities", "Jeju Peace Forum 2022", "September 14 - 16", "Jeju, South Korea",
        "Smart City EXPO LATAM Congress", "November 15 - 17", "Barcelona, Argentina & Online",
        "WeGO Regional Office Bidding", "August 15", "Cuenca", "Ecuador", "Ningbo", "China",
        "Citizen smart city platform expands to support local tourism",
        "Which cities are top for urban resilience?",
        "Smart city partnership reduces energy usage by two-thirds",
    ]
    for phrase in expected:
        assert phrase in html_text, f"HTML lacks {phrase!r}"
        assert phrase in text, f"text lacks {phrase!r}"


def test_repeated_seed_paragraph_appears_once(rendered):
    assert rendered.html.source.count(REPEATED_PARAGRAPH) == 1
    assert words(rendered.text.source).count(REPEATED_PARAGRAPH) == 1


@pytest.mark.skipif(not SEED.exists(), reason=f"seed text not found at {SEED} (../shared is absent)")
def test_every_seed_paragraph_is_in_both_parts(rendered, settings):
    message = personalize(rendered, sample_envelope(settings, 30))
    html_text = words("".join(parse(message.html).text))
    text = words(message.text)
    for paragraph in SEED.read_text(encoding="utf-8").split("\n\n"):
        paragraph = words(re.sub(r"\[([^\]]*)\]\(#\)", r"\1", paragraph))
        if len(paragraph) < 60:  # headings, dates, places, "Read more." lines are checked above
            continue
        if paragraph.startswith("SÃO PAULO São Paulo"):
            paragraph = paragraph.removeprefix("SÃO PAULO ")
        assert paragraph in html_text, f"HTML lacks: {paragraph[:70]}..."
        assert words(paragraph) in text.replace(" (#)", ""), f"text lacks: {paragraph[:70]}..."


def test_text_twin_is_structured_not_a_tag_strip(rendered):
    text = rendered.text.source
    assert "<" not in text.replace("<->", "")
    assert "\n02 Recent events\n" in text
    assert "Read more: #" in text
    assert "You can see who's coming here (#)." in words(text)
    assert all(len(line) <= 80 for line in text.splitlines()), "text lines are wrapped for plain-text readers"


def test_placeholders_survive_mjml_and_premailer(rendered):
    assert rendered.field_names() == {"name", "email", "unsubscribe_url", "view_url"}
    assert 'href="[[unsubscribe_url]]"' in rendered.html.source
    assert 'href="[[view_url]]"' in rendered.html.source


def test_recipient_data_is_escaped_in_html_and_raw_in_text(rendered, settings):
    tricky = 'Ana & <b>Bob</b> "Jr"'
    message = personalize(rendered, envelope(settings, tricky))
    assert "Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt; &quot;Jr&quot;," in message.html
    assert "<b>Bob</b>" not in message.html
    assert f"Dear {tricky}," in message.text


def test_empty_name_falls_back_to_a_greeting(rendered, settings):
    message = personalize(rendered, envelope(settings, ""))
    assert "Dear colleague," in message.html and "Dear colleague," in message.text


def test_subject_never_carries_a_line_break(settings):
    from campaign.personalize import MergeTemplate, escape_header

    subject = MergeTemplate("News for [[name]]").fill({"name": "Eve\r\nBcc: x@example.com"}, escape_header)
    assert "\r" not in subject and "\n" not in subject


def test_unsubscribe_link_identifies_recipient_by_opaque_token(rendered, settings):
    message = personalize(rendered, envelope(settings, "Ana", email="ana@example.org"))
    links = [attrs["href"] for tag, attrs in parse(message.html).tags if tag == "a"
             and "unsubscribe" in attrs.get("href", "")]
    assert links and all("ana@example.org" not in link and "ana%40" not in link for link in links)


def test_final_html_fits_under_gmail_clipping_with_longest_personalisation(rendered, settings):
    longest = envelope(settings, "N" * 200, email=("x" * 60) + "@example.org")
    message = personalize(rendered, longest)
    assert len(message.html.encode("utf-8")) < GMAIL_CLIP_BYTES


def test_render_matches_golden_files(settings):
    """Golden files change only with CAMPAIGN_UPDATE_GOLDEN=1 (see README, 'Tests')."""
    rendered = render_issue(replace(settings, token_secret="golden"), 30)
    for name, actual in (("issue-30.html", rendered.html.source), ("issue-30.txt", rendered.text.source)):
        golden = GOLDEN / name
        if UPDATE_GOLDEN:
            golden.parent.mkdir(exist_ok=True)
            golden.write_text(actual, encoding="utf-8")
        assert golden.exists(), f"{golden} missing: run CAMPAIGN_UPDATE_GOLDEN=1 pytest {__file__}"
        assert actual == golden.read_text(encoding="utf-8"), (
            f"{name} differs from its golden file; if the change is intended, "
            "rerun with CAMPAIGN_UPDATE_GOLDEN=1 and review the diff")
