"""Issue 30 in a real browser: headless Chromium at phone width, and the screenshots of the preview."""

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
