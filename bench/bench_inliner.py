"""premailer (what campaign uses) next to css-inline (Rust) on the same input: issue 30's compiled MJML.

Run by hand, with css-inline installed in the venv (it is not a dependency):

    .venv/bin/pip install css-inline
    .venv/bin/python bench/bench_inliner.py [RUNS]

Both get exactly what campaign.render.inline_css gets (mjml2html's output). The
blocks premailer is told to leave alone (data-premailer="ignore": MJML's reset,
the dark-mode and phone rules) and MJML's <style media=...> block are set aside
before css-inline runs and put back after, since css-inline has no switch that
keeps a block without inlining it. Prints, for each: time per call (median of
RUNS warm calls, and the first call), final size (after seven_bit, as sent), and
whether every text gets the same colour, background and size in both colour
schemes (campaign.contrast.texts) and every heading the same style.
"""

from __future__ import annotations

import re
from html import unescape
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import load_settings  # noqa: E402
from campaign.contrast import normalise, texts  # noqa: E402
from campaign.render import MJML_RESET, compile_mjml, inline_css, read_theme, render_issue, seven_bit  # noqa: E402

SET_ASIDE = re.compile(r'<style[^>]*(?:data-premailer="ignore"|media=)[^>]*>.*?</style>', re.DOTALL)


def with_css_inline(html: str) -> str:
    import css_inline  # noqa: PLC0415  (optional: only this benchmark uses it)

    html = html.replace(MJML_RESET, MJML_RESET.replace("<style", '<style data-premailer="ignore"'), 1)
    kept = SET_ASIDE.findall(html)
    html = SET_ASIDE.sub("", html)
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    inlined = inliner.inline(html)
    inlined = inlined.replace("</head>", "".join(block.replace(' data-premailer="ignore"', "") for block in kept)
                              + "</head>", 1)
    return inlined if inlined.lstrip().lower().startswith("<!doctype") else "<!doctype html>\n" + inlined


def timed(function, html: str, runs: int) -> tuple[float, float, str]:
    start = time.perf_counter()
    result = function(html)
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function(html)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), result


def headings(html: str) -> list[dict[str, str]]:
    """Each heading's inline declarations, quotes and spacing normalised."""
    styles = [unescape(style) for _, style in re.findall(r"<h[123] [^>]*?style=([\"'])(.*?)\1", html)]
    return [{name.strip(): _same(value) for name, value in
             (declaration.split(":", 1) for declaration in style.split(";") if ":" in declaration)}
            for style in styles]


def _same(value: str) -> str:
    value = value.strip().replace('"', "'")
    return normalise(value) if re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", value) else value


def main(runs: int = 20) -> None:
    settings = replace(load_settings(ROOT / "campaign.toml"), token_secret="bench")
    rendered = render_issue(settings, 30)
    source = compile_mjml(rendered.mjml, [], settings.layouts_dir / "base.mjml.j2")
    theme = read_theme(settings.layouts_dir)
    results = {}
    for name, function in (("premailer", inline_css), ("css-inline", with_css_inline)):
        first, median, html = timed(function, source, runs)
        results[name] = (first, median, seven_bit(html))
    base_texts, base_headings = texts(results["premailer"][2], theme), headings(results["premailer"][2])
    print(f"input: mjml2html output of issue 30, {len(source):,} characters; {runs} warm runs each")
    print("| inliner | first call | warm median | final HTML | same colours, sizes (light+dark) | same headings |")
    print("|---|---|---|---|---|---|")
    for name, (first, median, html) in results.items():
        same_texts = texts(html, theme) == base_texts
        print(f"| {name} | {first * 1000:.1f} ms | {median * 1000:.1f} ms | {len(html.encode()):,} bytes | "
              f"{'yes' if same_texts else 'NO'} | {'yes' if headings(html) == base_headings else 'differs'} |")
    ratio = results["premailer"][1] / results["css-inline"][1]
    print(f"css-inline is {ratio:.0f}x faster warm; {results['premailer'][1] * 1000 - results['css-inline'][1] * 1000:.0f} ms "
          "saved per render (once per issue, not per recipient)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
