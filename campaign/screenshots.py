"""The preview as readers see it: headless Chromium screenshots at phone and desktop widths.

Chrome will not lay a window out narrower than 500 px, so each width loads the
preview inside an <iframe> of exactly that width, in a small frame page written
next to index.html (same folder, so the frame may read its document with
--allow-file-access-from-files). A script in the frame page measures the
email and writes the result into an attribute that `--dump-dom` prints; the
screenshot then uses a window as tall as the email. Every run gets a fresh
profile in a temporary folder and no network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CampaignError

WIDTHS = (375, 600)                  # phone, desktop
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "Chromium is not installed: install it with `apt-get install chromium` (Debian/Ubuntu)"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--allow-file-access-from-files")
TIMEOUT = 60.0
MAX_HEIGHT = 16000                   # Chromium's screenshots fail beyond about 16k pixels
LAYOUT_ATTRIBUTE = re.compile(r'data-layout="([^"]*)"')

FRAME_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{width} px</title>
<style>html, body {{ margin: 0; padding: 0; background: #ffffff; }}
iframe {{ border: 0; display: block; width: {width}px; height: 800px; }}</style></head>
<body><iframe id="email" src="{page}" scrolling="no"></iframe>
<script>
const frame = document.getElementById("email");
frame.addEventListener("load", () => {{
  const doc = frame.contentDocument, root = doc.documentElement;
  frame.style.height = root.scrollHeight + "px";
  const headings = [...doc.querySelectorAll("h1, h2")].map((h) => {{
    const box = h.getBoundingClientRect(), style = frame.contentWindow.getComputedStyle(h);
    return {{tag: h.tagName.toLowerCase(), text: h.textContent.replace(/\\s+/g, " ").trim(),
             left: box.left, right: box.right, width: box.width, height: box.height,
             shown: style.display !== "none" && style.visibility !== "hidden" && style.opacity !== "0"}};
  }});
  document.body.setAttribute("data-layout", JSON.stringify({{
    viewport: frame.contentWindow.innerWidth, scroll_width: root.scrollWidth,
    body_width: doc.body.scrollWidth, height: root.scrollHeight, headings}}));
}});
</script></body></html>
"""


class ScreenshotError(CampaignError):
    """Chromium is missing or could not render the preview."""


@dataclass(frozen=True)
class Heading:
    tag: str
    text: str
    left: float
    right: float
    width: float
    height: float
    shown: bool

    def visible_within(self, width: int) -> bool:
        return self.shown and self.width > 0 and self.height > 0 and self.left >= 0 and self.right <= width + 0.5


@dataclass(frozen=True)
class Layout:
    """The email laid out in a viewport `viewport` px wide."""

    viewport: int
    scroll_width: int
    body_width: int
    height: int
    headings: tuple[Heading, ...]

    @property
    def scrolls_sideways(self) -> bool:
        return max(self.scroll_width, self.body_width) > self.viewport


def chromium() -> str:
    """The Chromium program, or a ScreenshotError saying how to install it."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ScreenshotError(INSTALL_HINT)


def measure(page: Path, width: int) -> Layout:
    """Lay `page` out at `width` px in Chromium and read back its size and headings."""
    with _frame(page, width) as frame:
        output = _run([f"--window-size={max(width, 500)},800", "--virtual-time-budget=5000", "--dump-dom",
                       frame.as_uri()])
    match = LAYOUT_ATTRIBUTE.search(output)
    if not match:
        raise ScreenshotError(f"Chromium loaded {page} but the page did not finish laying out; "
                              "open it in a browser to see why")
    data = json.loads(html.unescape(match.group(1)))
    return Layout(viewport=int(data["viewport"]), scroll_width=int(data["scroll_width"]),
                  body_width=int(data["body_width"]), height=int(data["height"]),
                  headings=tuple(Heading(**heading) for heading in data["headings"]))


def take_screenshots(page: Path, widths: tuple[int, ...] = WIDTHS) -> list[Path]:
    """PNG screenshots of the whole email at each width, next to `page`: screenshot-375.png ..."""
    shots = []
    for width in widths:
        height = min(measure(page, width).height, MAX_HEIGHT)
        target = page.parent / f"screenshot-{width}.png"
        target.unlink(missing_ok=True)
        with _frame(page, width) as frame:
            _run([f"--window-size={width},{height}", "--virtual-time-budget=5000",
                  f"--screenshot={target}", frame.as_uri()])
        if not target.exists():
            raise ScreenshotError(f"Chromium wrote no screenshot for {page} at {width} px")
        shots.append(target)
    return shots


class _frame:
    """A frame page beside `page` for the duration of one Chromium run."""

    def __init__(self, page: Path, width: int):
        if not page.is_file():
            raise ScreenshotError(f"{page}: no preview to look at; run `campaign preview` first")
        self.path = page.parent.resolve() / f".frame-{width}.html"
        self.text = FRAME_PAGE.format(width=width, page=page.name)

    def __enter__(self) -> Path:
        self.path.write_text(self.text, encoding="utf-8")
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _run(arguments: list[str]) -> str:
    program = chromium()
    with tempfile.TemporaryDirectory(prefix="campaign-chromium-") as profile:
        command = [program, *FLAGS, f"--user-data-dir={profile}", *arguments]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"Chromium did not finish within {TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ScreenshotError(f"Chromium failed (exit {result.returncode}): {last}")
    return result.stdout
