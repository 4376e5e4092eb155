"""Issue 30 in a real browser: headless Chromium at phone width, the screenshots of the preview, and
Playwright driving Debian's Chromium from 320 to 600 px in light and dark (issue 16)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.content import load_issue
from campaign.preview import write_preview
from campaign.render import read_theme
from campaign.screenshots import INSTALL_HINT, measure, take_screenshots

ROOT = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    return replace(load_settings(ROOT / "campaign.toml"), build_dir=build, token_secret="test-secret")


@pytest.fixture(scope="module")
def preview(settings):
    return write_preview(settings, 30).html


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@needs_chromium
def test_phone_width_has_no_sideways_scrolling_and_shows_every_section_heading(preview, settings):
    layout = measure(preview, 375)
    assert layout.viewport == 375, "the email must be laid out in a 375 px viewport, not Chrome's 500 px minimum"
    assert not layout.scrolls_sideways, f"content is {max(layout.scroll_width, layout.body_width)} px wide"
    shown = {heading.text: heading for heading in layout.headings if heading.tag == "h2"}
    for section in load_issue(settings.content_dir, 30).sections:
        text = f"{section.label} {section.heading}" if section.label else section.heading
        assert text in shown, f"section heading {section.heading!r} not found; headings: {sorted(shown)}"
        assert shown[text].visible_within(375), f"{section.heading!r} is hidden or cut off: {shown[text]}"


@needs_chromium
def test_screenshots_are_pngs_at_phone_and_desktop_width(preview):
    shots = take_screenshots(preview)
    assert [shot.name for shot in shots] == ["screenshot-375.png", "screenshot-600.png"]
    assert all(shot.parent == preview.parent for shot in shots)
    (phone_width, phone_height), (desk_width, desk_height) = (png_size(shot) for shot in shots)
    assert (phone_width, desk_width) == (375, 600)
    assert phone_height > desk_height > 2000, "the whole email, taller on a phone where columns stack"
    assert not list(preview.parent.glob(".frame-*.html")), "the frame pages are removed after use"


def test_screenshots_without_chromium_say_how_to_install_it(tmp_path):
    config = tmp_path / "campaign.toml"
    config.write_text((ROOT / "campaign.toml").read_text(encoding="utf-8")
                      .replace('content_dir = "content"', f'content_dir = "{ROOT / "content"}"')
                      .replace('layouts_dir = "layouts"', f'layouts_dir = "{ROOT / "layouts"}"')
                      .replace('build_dir = "output"', f'build_dir = "{tmp_path / "build"}"'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", "from campaign.cli import main; main()", "preview", "--issue", "30",
         "--screenshots", "--config", str(config)],
        capture_output=True, text=True, env={**os.environ, "PATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {INSTALL_HINT}"]
    assert "apt-get install chromium" in INSTALL_HINT

# -- issue 16: the email readers see, driven by Playwright ---------------------------------------
# At 320, 375, 414 and 600 px, in both colour schemes: nothing scrolls sideways, every heading
# computes Georgia first, every visible text meets WCAG AA against the background it actually sits
# on (computed styles, walked up to the first opaque background), and at 375 px every picture fills
# its column. In the dark scheme the dark rules must apply (page, surface, text from theme.yaml).

WIDTHS = (320, 375, 414, 600)

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
def measured(preview):
    """Every (width, scheme) measured once, in one browser."""
    from playwright.sync_api import sync_playwright

    page_url = preview.as_uri()
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
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


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_scrolls_sideways(measured, width, scheme):
    result = measured[width, scheme]
    assert result["viewport"] == width
    assert result["scrollWidth"] <= width, f"the email is {result['scrollWidth']} px wide in a {width} px viewport"


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_heading_computes_georgia_first(measured, width, scheme):
    headings = measured[width, scheme]["headings"]
    assert len(headings) >= 21
    wrong = [h for h in headings if not h["font"].lstrip("\"'").startswith("Georgia")]
    assert not wrong, wrong


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_visible_text_meets_aa_against_its_background(measured, width, scheme):
    texts = measured[width, scheme]["texts"]
    assert len(texts) > 90
    failing = [t for t in texts if t["ratio"] < t["need"]]
    assert not failing, failing[:5]


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pictures_fill_their_column_on_a_phone(measured, scheme):
    pictures = measured[375, scheme]["pictures"]
    assert len(pictures) == 9
    narrow = [p for p in pictures if p["width"] < p["room"] - 1]
    assert not narrow, narrow
    assert all(p["room"] == 375 - 2 * 16 for p in pictures), "phones get the 16 px gutter"


@needs_chromium
@pytest.mark.parametrize("width", WIDTHS)
def test_dark_rules_apply_in_the_dark_scheme_and_not_in_the_light_one(measured, settings, width):
    theme = read_theme(settings.layouts_dir)
    dark, light = measured[width, "dark"], measured[width, "light"]
    assert (dark["page"], dark["surface"], dark["text"]) == (
        css_rgb(theme["dark"]["page"]), css_rgb(theme["dark"]["surface"]), css_rgb(theme["dark"]["text"]))
    assert (light["page"], light["surface"], light["text"]) == (
        css_rgb(theme["colors"]["page"]), css_rgb(theme["colors"]["surface"]), css_rgb(theme["colors"]["text"]))
