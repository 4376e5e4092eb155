"""Issue 30 as readers see it, in Debian's Chromium driven by Playwright: phone to desktop, light and dark.

At 320, 375, 414 and 600 px, in both colour schemes: nothing scrolls sideways,
every heading computes Georgia first, every visible text meets WCAG AA against
the background it actually sits on (computed styles, walked up to the first
opaque background), and at 375 px every picture fills its column. In the dark
scheme the dark rules must apply (page, surface and text colours from theme.yaml).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.preview import write_preview
from campaign.render import read_theme

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (320, 375, 414, 600)
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

# Runs in the page: what a reader's eye would check, from computed styles.
MEASURE = """
() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const channel = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const colour = rgb(getComputedStyle(e).backgroundColor);
      if (colour.length === 3 || colour[3] > 0) return colour.slice(0, 3);
    }
    return null;
  };
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement, text = node.textContent.replace(/\\s+/g, " ").trim();
    if (!text || !element.getClientRects().length) continue;
    const style = getComputedStyle(element);
    if (style.visibility === "hidden" || Number(style.opacity) === 0) continue;
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 600;
    const behind = background(element);
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    texts.push({text: text.slice(0, 40), tag: element.tagName.toLowerCase(), colour: style.color,
                background: behind ? `rgb(${behind.join(", ")})` : "none",
                ratio: behind ? ratio(rgb(style.color), behind) : 0, need});
  }
  const headings = [...document.querySelectorAll("h1, h2, h3")].map(
    (h) => ({text: h.textContent.trim().slice(0, 30), font: getComputedStyle(h).fontFamily}));
  const pictures = [...document.querySelectorAll("img")].map((img) => {
    const cell = img.closest("td.g"), style = getComputedStyle(cell);
    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return {src: img.getAttribute("src"), width: img.getBoundingClientRect().width, room};
  });
  const surface = document.querySelector(".sf");
  return {viewport: innerWidth, scrollWidth: document.documentElement.scrollWidth, texts, headings, pictures,
          page: getComputedStyle(document.body).backgroundColor,
          surface: getComputedStyle(surface).backgroundColor,
          text: getComputedStyle(document.querySelector(".t div")).color};
}
"""


def css_rgb(hex_colour: str) -> str:
    digits = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(digits[i:i + 2], 16) for i in (0, 2, 4)))


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    return replace(load_settings(ROOT / "campaign.toml"), build_dir=build, token_secret="test-secret")


@pytest.fixture(scope="module")
def measured(settings):
    """Every (width, scheme) measured once, in one browser."""
    from playwright.sync_api import sync_playwright

    page_url = write_preview(settings, 30).html.as_uri()
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for scheme in ("light", "dark"):
                for width in WIDTHS:
                    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
                    page = context.new_page()
                    page.goto(page_url)
                    results[width, scheme] = page.evaluate(MEASURE)
                    context.close()
        finally:
            browser.close()
    return results


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_scrolls_sideways(measured, width, scheme):
    result = measured[width, scheme]
    assert result["viewport"] == width
    assert result["scrollWidth"] <= width, f"the email is {result['scrollWidth']} px wide in a {width} px viewport"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_heading_computes_georgia_first(measured, width, scheme):
    headings = measured[width, scheme]["headings"]
    assert len(headings) >= 21
    wrong = [h for h in headings if not h["font"].lstrip("\"'").startswith("Georgia")]
    assert not wrong, wrong


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_visible_text_meets_aa_against_its_background(measured, width, scheme):
    texts = measured[width, scheme]["texts"]
    assert len(texts) > 90
    failing = [t for t in texts if t["ratio"] < t["need"]]
    assert not failing, failing[:5]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pictures_fill_their_column_on_a_phone(measured, scheme):
    pictures = measured[375, scheme]["pictures"]
    assert len(pictures) == 9
    narrow = [p for p in pictures if p["width"] < p["room"] - 1]
    assert not narrow, narrow
    assert all(p["room"] == 375 - 2 * 16 for p in pictures), "phones get the 16 px gutter"


@pytest.mark.parametrize("width", WIDTHS)
def test_dark_rules_apply_in_the_dark_scheme_and_not_in_the_light_one(measured, settings, width):
    theme = read_theme(settings.layouts_dir)
    dark, light = measured[width, "dark"], measured[width, "light"]
    assert (dark["page"], dark["surface"], dark["text"]) == (
        css_rgb(theme["dark"]["page"]), css_rgb(theme["dark"]["surface"]), css_rgb(theme["dark"]["text"]))
    assert (light["page"], light["surface"], light["text"]) == (
        css_rgb(theme["colors"]["page"]), css_rgb(theme["colors"]["surface"]), css_rgb(theme["colors"]["text"]))
