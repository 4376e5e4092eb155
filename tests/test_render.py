"""Issue 30 renders offline, completely, once; and recipient data is escaped where it lands."""

from __future__ import annotations

import html as html_module
import json
import os
import shutil
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
SIZE_TARGET_BYTES = 75 * 1024          # issue 16: room under the clip for longer issues
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


def test_every_image_has_its_alt_text_and_width(rendered):
    """A picture's alt is its content's alt text, or empty for a decorative picture (screen readers skip it)."""
    pictures = [part for section in rendered.issue.sections for part in (section, *section.items) if part.image]
    images = [attrs for tag, attrs in parse(rendered.html.source).tags if tag == "img"]
    assert len(images) == len(pictures) == 9
    for attrs, part in zip(images, pictures):
        assert attrs["src"].endswith(part.image)
        assert "alt" in attrs and attrs["alt"] == ("" if part.decorative else part.alt), attrs
        assert attrs.get("width", "").isdigit(), attrs
    assert all(part.decorative for part in pictures), "issue 30's generated placeholder pictures only decorate"


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
    from campaign.merge import MergeTemplate, escape_header

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
    assert len(message.html.encode("utf-8")) < SIZE_TARGET_BYTES


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


def styles_of(html: str, tag: str) -> list[str]:
    return [attrs.get("style", "") for name, attrs in parse(html).tags if name == tag]


def test_headings_keep_the_theme_heading_font_with_its_quotes(rendered):
    html = rendered.html.source
    assert "&#39;" not in "".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
    for tag in ("h1", "h2", "h3"):
        styles = styles_of(html, tag)
        assert styles and all(re.search(r"font-family:Georgia, ([\"'])Times New Roman\1, serif", html_module.unescape(style))
                              for style in styles), tag


@pytest.mark.parametrize("value", ["Georgia; } body { display: none", "x</style><script>", "'unbalanced", "a /* b"])
def test_a_theme_value_that_could_break_out_of_css_is_refused_naming_theme_yaml(settings, tmp_path, value):
    from campaign.errors import LayoutError

    layouts = tmp_path / "layouts"
    shutil.copytree(settings.layouts_dir, layouts)
    theme = (layouts / "theme.yaml").read_text(encoding="utf-8")
    (layouts / "theme.yaml").write_text(theme.replace('heading: "Georgia, \'Times New Roman\', serif"',
                                                      f"heading: {json.dumps(value)}"), encoding="utf-8")
    with pytest.raises(LayoutError, match=r"theme\.yaml"):
        render_issue(replace(settings, layouts_dir=layouts), 30)


def test_a_theme_colour_that_is_not_hex_is_refused_naming_the_role(settings, tmp_path):
    from campaign.errors import LayoutError

    layouts = tmp_path / "layouts"
    shutil.copytree(settings.layouts_dir, layouts)
    theme = (layouts / "theme.yaml").read_text(encoding="utf-8")
    (layouts / "theme.yaml").write_text(theme.replace('text: "#2B2B2B"', 'text: "dark grey"'), encoding="utf-8")
    with pytest.raises(LayoutError, match=r"theme\.yaml: colors\.text is 'dark grey'"):
        render_issue(replace(settings, layouts_dir=layouts), 30)


def test_mjml_reset_stays_one_rule_in_head_not_copied_onto_every_table(rendered):
    html = rendered.html.source
    head, body = html.split("<body", 1)
    assert "mso-table-lspace" in head and "mso-table-lspace" not in body
    assert "border-collapse:collapse;mso-table-lspace" not in html
    spans = [attrs for tag, attrs in parse(html).tags if tag == "span"]
    assert spans and not any("bgcolor" in attrs or "valign" in attrs for attrs in spans)


def test_section_labels_are_separated_from_their_heading(rendered):
    html = rendered.html.source
    assert re.search(r'<span class="label"[^>]*>02</span> Recent events', html)
    assert re.search(r'<span class="label"[^>]*>01</span> World Cities Summit 2022', html)
    assert "02Recent events" not in words("".join(parse(html).text))


def test_preheader_has_no_colour_of_its_own_and_a_spacer_after_it(rendered):
    html = rendered.html.source
    hidden = re.search(r'<div style="display:none[^"]*">(.*?)</div>', html, re.S)
    assert hidden, "the preheader is a hidden div at the top of the body"
    assert "color" not in hidden.group(0).split(">")[0]
    assert hidden.group(1).startswith(rendered.preheader.replace("ã", "&#227;"))
    assert hidden.group(1).count("&#847;") >= 40, "a spacer keeps the inbox preview from running on"


def test_head_carries_dark_mode_and_phone_handling(rendered):
    head = rendered.html.source.split("<body", 1)[0]
    for meta in ('name="x-apple-disable-message-reformatting"', 'name="color-scheme" content="light dark"',
                 'name="supported-color-schemes" content="light dark"',
                 'name="format-detection" content="telephone=no, date=no, address=no, email=no'):
        assert meta in head, meta
    assert "a[x-apple-data-detectors]" in head and "color: inherit !important" in head
    assert "@media (prefers-color-scheme: dark)" in head
    assert "[data-ogsc] .t div" in head and "[data-ogsb] .sf" in head
    assert re.search(r"max-width: 479px\) \{\s*\.g \{ padding-left: 16px !important", head)
    assert "mj-full-width-mobile" in rendered.html.source, "pictures are fluid on phones"


def test_merge_values_give_exactly_the_builtin_fields_plus_the_columns(settings):
    from campaign.merge import BUILTIN_FIELDS

    values = merge_values("ana@example.org", "Ana", {"city": "Recife"}, issue_number=30, links=settings.links,
                          token_secret="test-secret")
    assert set(values) == BUILTIN_FIELDS | {"city"}
