"""The contrast check: WCAG 2.x ratios, the colours each text is drawn with (light and dark), and its findings."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.checks import ERROR, WARNING, check_contrast
from campaign.config import load_settings
from campaign.contrast import below_aa, contrast_ratio, dark_rules, is_large, texts
from campaign.render import read_theme, render_issue

ROOT = Path(__file__).resolve().parents[1]
LOW_CONTRAST_THEME = Path(__file__).parent / "fixtures" / "themes" / "low-contrast.yaml"
THEME = {"colors": {"text": "#2B2B2B", "surface": "#FFFFFF", "on_brand": "#FFFFFF", "brand": "#00857C"},
         "dark": {"text": "#E3E7EA", "surface": "#1A2026", "link": "#2F8F86"}}
PAGE = """<html><head><style>
@media (prefers-color-scheme: dark) {
.sf, .sf > table { background-color: #1A2026 !important; }
.t div { color: #E3E7EA !important; }
.t a { color: #2F8F86 !important; }
}</style></head><body><div class="sf" style="background-color:#FFFFFF"><table><tr>
<td class="t"><div style="color:#2B2B2B;font-size:15px">Hello <a href="#" style="color:#00857C">there</a>
<span style="display:none">hidden</span></div></td>
<td bgcolor="#00857C"><h1 style="color:#FFFFFF;font-size:26px">Masthead</h1></td></tr></table></div></body></html>"""


def test_wcag_ratios_and_large_text():
    assert contrast_ratio("#000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("#00857C", "#FFFFFF") == pytest.approx(4.52, abs=0.01)
    assert contrast_ratio("#00857C", "#E8F3F2") == pytest.approx(3.99, abs=0.01)   # the old label chip
    assert is_large(24, False) and is_large(18.7, True) and not is_large(18.7, False) and not is_large(15, True)


def test_each_text_gets_its_colour_background_size_and_theme_role_in_both_schemes():
    found = {(text.scheme, text.text): text for text in texts(PAGE, THEME)}
    assert ("light", "hidden") not in found and ("dark", "hidden") not in found
    hello, there = found["light", "Hello"], found["light", "there"]
    assert (hello.colour, hello.background, hello.size_px) == ("#2B2B2B", "#FFFFFF", 15.0)
    assert (hello.colour_from, there.colour_from) == ("colors.text", "colors.brand")
    assert hello.background_from == "colors.surface/colors.on_brand"
    masthead = found["light", "Masthead"]
    assert masthead.background == "#00857C" and masthead.bold and masthead.required == 3.0
    dark_there = found["dark", "there"]
    assert (dark_there.colour, dark_there.background) == ("#2F8F86", "#1A2026")
    assert dark_there.colour_from == "dark.link (.t a)" and dark_there.background_from == "dark.surface (.sf > table)"
    assert [text.text for text in below_aa(texts(PAGE, THEME))] == ["there"]


def test_dark_rules_are_read_from_the_prefers_color_scheme_block_only():
    rules = dark_rules(PAGE.replace("<style>", "<style>.x { color: #000; } [data-ogsc] .t a { color: #fff; }"))
    assert [rule.source for rule in rules] == [".sf", ".sf > table", ".t div", ".t a"]


@pytest.fixture(scope="module")
def settings():
    return replace(load_settings(ROOT / "campaign.toml"), token_secret="test-secret")


def test_issue_30_meets_aa_in_both_schemes(settings):
    rendered = render_issue(settings, 30)
    assert check_contrast(rendered.html.source, read_theme(settings.layouts_dir)) == []


def test_a_seeded_low_contrast_theme_colour_is_caught_with_where_it_comes_from(settings, tmp_path):
    layouts = tmp_path / "layouts"
    shutil.copytree(settings.layouts_dir, layouts)
    shutil.copy(LOW_CONTRAST_THEME, layouts / "theme.yaml")
    rendered = render_issue(replace(settings, layouts_dir=layouts), 30)
    findings = check_contrast(rendered.html.source, read_theme(layouts))
    muted = [f for f in findings if "(colors.muted)" in f.message]
    links = [f for f in findings if "(dark.link (.t a))" in f.message]
    assert muted and len(muted) + len(links) == len(findings), "only the two seeded colours are found"
    assert {f.code for f in findings} == {"contrast-low"}
    for finding in muted:   # on the surface (dates, places) and on the page colour (the browser link)
        assert finding.severity == ERROR and "light scheme" in finding.message and "#A0A8B0" in finding.message
        assert "colors.muted" in finding.fix and "theme.yaml" in finding.fix
    [link] = links
    assert link.severity == WARNING and "dark scheme" in link.message
    assert "4.22:1, below 4.5:1" in link.message and "dark.link" in link.fix
