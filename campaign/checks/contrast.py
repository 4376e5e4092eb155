"""Contrast: every text colour against the background it sits on, light and dark, by WCAG 2.x AA.

An error below 3:1 (unreadable for many), a warning below AA (4.5:1, or 3:1 for
large text). Texts drawn with the same colours at the same size class make one
finding, which names where each colour comes from (its theme role, and the dark
rule that sets it) and quotes a sample of the text.
"""

from __future__ import annotations

from ..contrast import AA_LARGE, TextColour, below_aa, texts
from .findings import ERROR, LAYOUTS, WARNING, Finding

THEME = "layouts/theme.yaml"


def check_contrast(html: str, theme: dict) -> list[Finding]:
    groups: dict[tuple, list[TextColour]] = {}
    for text in below_aa(texts(html, theme)):
        key = (text.scheme, text.colour, text.colour_from, text.background, text.background_from, text.required)
        groups.setdefault(key, []).append(text)
    return [_finding(found) for found in groups.values()]


def _finding(found: list[TextColour]) -> Finding:
    first = found[0]
    ratio = first.ratio
    severity = ERROR if ratio < AA_LARGE else WARNING
    sample = first.text if len(first.text) <= 40 else first.text[:37] + "..."
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    size = "large" if first.required == AA_LARGE else f"{first.size_px:g} px"
    message = (f"{first.scheme} scheme: text {first.colour} ({first.colour_from or 'layouts'}) on "
               f"{first.background} ({first.background_from or 'layouts'}) is {ratio:.2f}:1, "
               f"below {first.required:g}:1 for {size} text, e.g. <{first.tag}> {sample!r}{more}")
    roles = [origin.split(" ")[0].replace("/", " or ") for origin in (first.colour_from, first.background_from)
             if origin]
    fix = (f"change {' or '.join(dict.fromkeys(roles))} in {THEME}" if roles
           else "change the colour in the layouts")
    return Finding(severity, "contrast-low", LAYOUTS, message, fix + " until the ratio reaches "
                   f"{first.required:g}:1")
