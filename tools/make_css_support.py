"""Write campaign/css_support.py: the CSS that Gmail, Outlook and Apple Mail lack, from caniemail.

    python tools/make_css_support.py                      # reads ../shared/vendor/caniemail/data.json
    python tools/make_css_support.py PATH/TO/data.json    # another copy of the data

For every CSS feature in the data, the latest tested result on each main
platform of the three major clients is read; a feature whose latest result is
`n` (not supported) on at least one of them becomes one row of the table. The
project carries the generated table, so it works without ../shared.

Left out on purpose: units (`css-unit-*`), selectors (`css-selector-*`),
comments, nesting, `!important` and `inert`: the check looks for properties,
values, at-rules, media features, functions and pseudo-classes, which is what
a layout or a content author can reach for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "vendor" / "caniemail" / "data.json"
OUTPUT = ROOT / "campaign" / "css_support.py"

# The platforms that count as "major clients": what most WeGO contacts read mail in.
MAJOR = {
    "gmail": ("desktop-webmail", "ios", "android"),
    "outlook": ("windows", "outlook-com", "macos"),
    "apple-mail": ("macos", "ios"),
}
SKIPPED_PREFIXES = ("css-unit-", "css-selector-")
SKIPPED = {"css-comments", "css-nesting", "css-important", "css-inert-attribute"}

# Features whose slug is not simply `css-<property>`: (kind, tokens).
SPECIAL: dict[str, tuple[str, tuple[str, ...]]] = {
    "css-block-inline-size": ("property", ("block-size", "inline-size")),
    "css-border-inline-block": ("property", ("border-inline", "border-block")),
    "css-border-inline-block-individual": ("property", (
        "border-inline-start", "border-inline-end", "border-block-start", "border-block-end")),
    "css-border-inline-block-longhand": ("property", (
        "border-inline-width", "border-inline-style", "border-inline-color",
        "border-block-width", "border-block-style", "border-block-color")),
    "css-border-radius-logical": ("property", (
        "border-start-start-radius", "border-start-end-radius", "border-end-start-radius",
        "border-end-end-radius")),
    "css-column-layout-properties": ("property", (
        "columns", "column-width", "column-rule", "column-span", "column-fill")),
    "css-gap": ("property", ("gap", "column-gap", "row-gap")),
    "css-grid-template": ("property", ("grid-template", "grid-template-columns", "grid-template-rows",
                                       "grid-template-areas")),
    "css-left-right-top-bottom": ("property", ("left", "right", "top", "bottom")),
    "css-margin-block-start-end": ("property", ("margin-block-start", "margin-block-end")),
    "css-margin-inline-block": ("property", ("margin-inline", "margin-block")),
    "css-margin-inline-start-end": ("property", ("margin-inline-start", "margin-inline-end")),
    "css-padding-block-start-end": ("property", ("padding-block-start", "padding-block-end")),
    "css-padding-inline-block": ("property", ("padding-inline", "padding-block")),
    "css-padding-inline-start-end": ("property", ("padding-inline-start", "padding-inline-end")),
    "css-scroll-snap": ("property", ("scroll-snap-type", "scroll-snap-align", "scroll-snap-stop")),
    "css-display-flex": ("declaration", ("display:flex", "display:inline-flex")),
    "css-display-grid": ("declaration", ("display:grid", "display:inline-grid")),
    "css-display-none": ("declaration", ("display:none",)),
    "css-flex-direction": ("property", ("flex-direction",)),
    "css-flex-wrap": ("property", ("flex-wrap",)),
    "css-intrinsic-size": ("keyword", ("fit-content", "min-content", "max-content")),
    "css-sytem-ui": ("keyword", ("system-ui", "ui-serif", "ui-sans-serif", "ui-rounded", "ui-monospace")),
    "css-modern-color": ("function", ("lch", "oklch", "lab", "oklab")),
    "css-rgb": ("function", ("rgb",)),
    "css-rgba": ("function", ("rgba",)),
    "css-variables": ("function", ("var",)),
    "css-linear-gradient": ("function", ("linear-gradient",)),
    "css-radial-gradient": ("function", ("radial-gradient",)),
    "css-conic-gradient": ("function", ("conic-gradient",)),
    "css-at-media-device-pixel-ratio": ("media-feature", ("device-pixel-ratio",)),
    "css-at-media-hover": ("media-feature", ("hover", "any-hover")),
}


def latest(results: dict) -> str:
    """The code of the most recent test: the data lists versions oldest first."""
    return list(results.values())[-1].split()[0] if results else "u"


def unsupported(feature: dict, names: dict) -> tuple[str, ...]:
    where = []
    for family, platforms in MAJOR.items():
        stats = feature.get("stats", {}).get(family, {})
        for platform in platforms:
            if latest(stats.get(platform, {})) == "n":
                client, system = names["family"][family], names["platform"][platform]
                where.append(system if system.startswith(client) else f"{client} {system}")
    return tuple(where)


def kind_and_tokens(slug: str) -> tuple[str, tuple[str, ...]] | None:
    if slug in SKIPPED or slug.startswith(SKIPPED_PREFIXES):
        return None
    if slug in SPECIAL:
        return SPECIAL[slug]
    name = slug.removeprefix("css-")
    if name.startswith("at-media-"):
        return "media-feature", (name.removeprefix("at-media-"),)
    if name.startswith("at-"):
        return "at-rule", ("@" + name.removeprefix("at-"),)
    if name.startswith("function-"):
        return "function", (name.removeprefix("function-"),)
    if name.startswith("pseudo-class-"):
        return "pseudo", (":" + name.removeprefix("pseudo-class-"),)
    if name.startswith("pseudo-element-"):
        return "pseudo", ("::" + name.removeprefix("pseudo-element-"),)
    return "property", (name,)


def table_rows(data: dict) -> list[tuple[str, str, str, tuple[str, ...]]]:
    rows = []
    for feature in sorted(data["data"], key=lambda f: f["slug"]):
        if feature.get("category") != "css":
            continue
        mapped = kind_and_tokens(feature["slug"])
        where = unsupported(feature, data["nicenames"])
        if mapped is None or not where:
            continue
        kind, tokens = mapped
        for token in tokens:
            rows.append((kind, token, feature["slug"], where))
    return rows


def module_text(data: dict) -> str:
    source = data.get("source", {})
    lines = [
        '"""CSS that major email clients do not support: a compact table carried from caniemail.',
        "",
        "Source: the \"Can I email\" data, https://github.com/hteumeuleu/caniemail",
        f"commit {source.get('commit', 'unknown')}, {source.get('licence', 'MIT')} licence,",
        "Copyright (c) 2019 Rémi Parmentier (the vendored copy is ../shared/vendor/caniemail/).",
        "Generated by tools/make_css_support.py; do not edit by hand, rerun the script.",
        "",
        "Each row: (kind, token, caniemail slug, platforms whose latest test says 'not supported').",
        "Kinds: property (`gap`), declaration (`display:flex`), at-rule (`@font-face`),",
        "media-feature (`prefers-color-scheme` inside @media), function (`linear-gradient`),",
        "keyword (a value such as `system-ui`), pseudo (`:hover`, `::before`).",
        "Platforms counted: " + "; ".join(
            f"{data['nicenames']['family'][family]}: {', '.join(data['nicenames']['platform'][p] for p in platforms)}"
            for family, platforms in MAJOR.items()) + ".",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"SOURCE = \"caniemail {source.get('commit', 'unknown')}\"",
        "",
        "UNSUPPORTED: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (",
    ]
    for kind, token, slug, where in table_rows(data):
        lines.append(f"    ({kind!r}, {token!r}, {slug!r}, {where!r}),")
    lines += [")", ""]
    return "\n".join(lines).replace("'", '"')


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_DATA
    if not path.exists():
        print(f"{path}: no caniemail data.json there; pass its path", file=sys.stderr)
        return 1
    data = json.loads(path.read_text(encoding="utf-8"))
    OUTPUT.write_text(module_text(data), encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(table_rows(data))} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
