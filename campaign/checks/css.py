"""CSS in the final HTML that common email clients do not support (table in campaign/css_support.py)."""

from __future__ import annotations

import re

from .. import css_support
from ..page import Page
from .findings import LAYOUTS, WARNING, Finding, squash


# Unsupported features that degrade gracefully in what MJML writes, with why they are fine.
GRACEFUL = {
    "@media": "Outlook for Windows ignores media queries; MJML gives it the desktop layout in MSO tables",
    "border-radius": "Outlook for Windows shows square corners",
    # Dark mode is an enhancement: a client without it shows the light design, whose contrast
    # the contrast check has measured too.
    "prefers-color-scheme": "clients without it show the light colours",
    "color-scheme": "clients without it show the light colours",
}
RESET_VALUES = {"none", "normal", "auto", "0", "0px", "initial", "inherit"}


def css_features(page: Page) -> dict[str, str]:
    """Each table token the final HTML uses, with an example of its use."""
    used: dict[str, str] = {}
    rows = css_support.UNSUPPORTED
    declarations = [(decl, False) for block in page.style_blocks for decl in re.findall(r"[^{};]+:[^{};]+", block)]
    declarations += [(decl, "display:none" in squash(style).replace(" ", "")) for style in page.styles
                     for decl in style.split(";") if ":" in decl]
    style_text = " ".join(page.style_blocks)
    for decl, hidden in declarations:
        name, _, value = (piece.strip().lower() for piece in decl.partition(":"))
        name = name.split()[-1] if name.split() else name
        if hidden or value.replace("!important", "").strip() in RESET_VALUES:
            continue
        for kind, token, _slug, _where in rows:
            hit = ((kind == "property" and name == token)
                   or (kind == "declaration" and f"{name}:{value.replace(' ', '')}".startswith(token))
                   or (kind == "function" and re.search(rf"(?<![\w-]){re.escape(token)}\(", value))
                   or (kind == "keyword" and re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", value)))
            if hit:
                used.setdefault(token, f"{name}: {value}")
    for kind, token, _slug, _where in rows:
        if kind == "at-rule" and re.search(rf"{re.escape(token)}(?![\w-])", style_text):
            used.setdefault(token, token)
        elif kind == "media-feature" and re.search(rf"@media[^{{]*\(\s*[\w-]*{re.escape(token)}", style_text):
            used.setdefault(token, f"@media ({token})")
        elif kind == "pseudo" and re.search(rf"[\w\]\)*]{re.escape(token)}(?![\w-])", style_text):
            used.setdefault(token, token)
    return used


def check_css(page: Page) -> list[Finding]:
    where_by_token = {token: where for _, token, _, where in css_support.UNSUPPORTED}
    return [Finding(WARNING, "css-unsupported", LAYOUTS,
                    f"{example!r} is not supported by {', '.join(where_by_token[token])} "
                    f"({css_support.SOURCE})", "use table attributes or inline CSS that those clients support")
            for token, example in sorted(css_features(page).items()) if token not in GRACEFUL]
