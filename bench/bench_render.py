"""How long rendering an issue takes, stage by stage, and MJML in Python next to the official MJML in Node.

Run by hand:  .venv/bin/python bench/bench_render.py [RUNS]   (bench/run.py runs it with everything else)

`staged_render` does exactly what campaign.render.render does, with a clock
between the stages; `measure_render` runs it once cold (first render in the
process: Jinja compiles the layouts) and RUNS times warm, and times
`render_issue` itself the same way so the staged sum can be checked against it.

`measure_mjml_node` compiles the same MJML (RenderedIssue.mjml) with the MJML
4 command line (one node process per file, start-up included) and with mjml
required once inside node (compile only), when bench/.node holds it:
    npm install --prefix bench/.node mjml@4
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mjml import mjml2html

from campaign.config import Settings, load_settings
from campaign.content import load_issue
from campaign.merge import MergeTemplate
from campaign.render import (BASE_LAYOUT, TEXT_LAYOUT, TEXT_RULE, RenderedIssue, _mjml_sources, compile_mjml,
                             inline_css, layout_environment, read_theme, render_issue, render_layout, render_section)
from markupsafe import Markup

BENCH = Path(__file__).resolve().parent
NODE_PREFIX = BENCH / ".node"
MJML_CLI = NODE_PREFIX / "node_modules" / "mjml" / "bin" / "mjml"
NODE_SCRIPT = BENCH / "mjml_node.js"
STAGES = ("content load", "jinja2 (MJML)", "mjml2html", "premailer", "plain text", "merge split")


@dataclass
class RenderTimes:
    cold: dict[str, float]                       # stage -> seconds, first render in the process
    warm: dict[str, list[float]]                 # stage -> seconds per warm run
    total_cold: float                            # render_issue, first call after the staged cold run
    total_warm: list[float]                      # render_issue, warm runs
    html_bytes: int = 0
    mjml_bytes: int = 0
    placeholders: int = 0

    def warm_median(self, stage: str) -> float:
        return statistics.median(self.warm[stage])

    @property
    def cold_total(self) -> float:
        return sum(self.cold.values())


@dataclass
class MjmlComparison:
    python_cold: float                           # mjml2html, first call on this MJML in the process
    python_warm: list[float]
    node_available: str = ""                     # "" when available, else why not
    node_version: str = ""
    mjml_version: str = ""
    cli_runs: list[float] = field(default_factory=list)      # node + mjml CLI per file, wall
    node_cold: float = 0.0                       # first mjml() call inside node
    node_warm: list[float] = field(default_factory=list)     # later mjml() calls inside node
    node_html_bytes: int = 0


def staged_render(settings: Settings, number: int) -> tuple[RenderedIssue, dict[str, float]]:
    """campaign.render.render_issue, one stage at a time (keep in step with render.render)."""
    times: dict[str, float] = {}
    clock = time.perf_counter
    started = clock()
    issue = load_issue(settings.content_dir, number)
    images_base = settings.links.images_url.format(issue=number)
    times["content load"] = clock() - started

    started = clock()
    environment = layout_environment(settings.layouts_dir, images_base)
    context = {"issue": issue, "sender": settings.sender, "theme": read_theme(settings.layouts_dir), "web": False}
    sections = [render_section(environment, section, context) for section in issue.sections]
    mjml = render_layout(environment, BASE_LAYOUT, {**context, "sections": [Markup(s) for s in sections]},
                         issue.folder)
    times["jinja2 (MJML)"] = clock() - started

    started = clock()
    sources = _mjml_sources(settings.layouts_dir, issue, sections)
    compiled = compile_mjml(mjml, sources, settings.layouts_dir / BASE_LAYOUT)
    times["mjml2html"] = clock() - started

    started = clock()
    html = inline_css(compiled)
    times["premailer"] = clock() - started

    started = clock()
    text = render_layout(environment, TEXT_LAYOUT, {**context, "rule": TEXT_RULE}, issue.folder)
    times["plain text"] = clock() - started

    started = clock()
    rendered = RenderedIssue(number=issue.number, subject=MergeTemplate(issue.subject), html=MergeTemplate(html),
                             text=MergeTemplate(text.strip() + "\n"), preheader=issue.preheader, mjml=mjml,
                             issue=issue)
    times["merge split"] = clock() - started
    return rendered, times


def measure_render(settings: Settings, number: int, runs: int) -> tuple[RenderedIssue, RenderTimes]:
    """Cold: the first staged render in this process. Warm: `runs` staged renders and `runs` render_issue calls."""
    rendered, cold = staged_render(settings, number)
    started = time.perf_counter()
    render_issue(settings, number)
    total_cold = time.perf_counter() - started
    warm: dict[str, list[float]] = {stage: [] for stage in STAGES}
    total_warm = []
    for _ in range(runs):
        _, times = staged_render(settings, number)
        for stage, seconds in times.items():
            warm[stage].append(seconds)
        started = time.perf_counter()
        render_issue(settings, number)
        total_warm.append(time.perf_counter() - started)
    result = RenderTimes(cold=cold, warm=warm, total_cold=total_cold, total_warm=total_warm,
                         html_bytes=len(rendered.html.source.encode()), mjml_bytes=len(rendered.mjml.encode()),
                         placeholders=len(rendered.html.placeholders))
    return rendered, result


def measure_mjml_python(mjml: str, runs: int) -> MjmlComparison:
    started = time.perf_counter()
    mjml2html(mjml, fonts={})
    cold = time.perf_counter() - started
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        mjml2html(mjml, fonts={})
        warm.append(time.perf_counter() - started)
    return MjmlComparison(python_cold=cold, python_warm=warm)


def measure_mjml_node(comparison: MjmlComparison, mjml: str, cli_runs: int, node_runs: int) -> MjmlComparison:
    """Fill in the Node side of `comparison`, or say why it could not be measured."""
    node = shutil.which("node")
    if node is None:
        comparison.node_available = "node is not installed"
        return comparison
    if not MJML_CLI.exists():
        comparison.node_available = f"MJML is not installed: npm install --prefix {NODE_PREFIX} mjml@4"
        return comparison
    comparison.node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    package = json.loads((NODE_PREFIX / "node_modules" / "mjml" / "package.json").read_text())
    comparison.mjml_version = package["version"]
    with tempfile.TemporaryDirectory(prefix="campaign-bench-mjml-") as name:
        source = Path(name) / "issue.mjml"
        source.write_text(mjml, encoding="utf-8")
        output = Path(name) / "issue.html"
        for _ in range(cli_runs):
            started = time.perf_counter()
            completed = subprocess.run([node, str(MJML_CLI), str(source), "-o", str(output), "--config.fonts", "{}",
                                        "--config.validationLevel", "soft"], capture_output=True, text=True)
            comparison.cli_runs.append(time.perf_counter() - started)
            if completed.returncode != 0:
                comparison.node_available = f"mjml CLI failed: {completed.stderr.strip()[:200]}"
                return comparison
        completed = subprocess.run([node, str(NODE_SCRIPT), str(source), str(node_runs)], capture_output=True,
                                   text=True, cwd=NODE_PREFIX)
        if completed.returncode != 0:
            comparison.node_available = f"node mjml failed: {completed.stderr.strip()[:200]}"
            return comparison
        answer = json.loads(completed.stdout)
        comparison.node_cold = answer["cold_ms"] / 1000
        comparison.node_warm = [ms / 1000 for ms in answer["warm_ms"]]
        comparison.node_html_bytes = answer["html_bytes"]
    return comparison


def main(runs: int) -> None:
    settings = load_settings(BENCH.parent / "campaign.toml", environ={}) if (BENCH.parent / "campaign.toml").exists() \
        else load_settings(None, environ={})
    rendered, times = measure_render(settings, 30, runs)
    print(f"{'stage':<16} {'cold ms':>9} {'warm ms':>9}")
    for stage in STAGES:
        print(f"{stage:<16} {times.cold[stage] * 1000:>9.1f} {times.warm_median(stage) * 1000:>9.1f}")
    print(f"{'render_issue':<16} {times.total_cold * 1000:>9.1f} {statistics.median(times.total_warm) * 1000:>9.1f}")
    mjml = measure_mjml_node(measure_mjml_python(rendered.mjml, runs), rendered.mjml, 3, runs)
    print(f"mjml2html warm {statistics.median(mjml.python_warm) * 1000:.1f} ms; "
          + (mjml.node_available or f"node in-process {statistics.median(mjml.node_warm) * 1000:.1f} ms, "
             f"CLI per file {statistics.median(mjml.cli_runs) * 1000:.0f} ms"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
