"""Imports run one way: read every `import` in campaign/ (ast, nothing imported) and check the direction.

STAGES is the order of the rooms, lowest first. A module may import its own
stage or a lower one, never a higher one, and no chain of imports may lead back
to where it started. Imports inside functions count too: a lazy import is
still a dependency. A new module needs a line here, which is the point: say
where it sits before it imports anything.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "campaign"

# Lowest first. Keys are a module of campaign/ or a whole sub-package (every module in it shares its stage).
STAGES: list[tuple[str, ...]] = [
    # the ground everything stands on: errors, settings, small engines with no idea of an issue
    ("__init__", "errors", "config", "config_schema", "token_secret", "files", "addresses", "page", "prose",
     "css_support", "contrast", "csv_shape", "merge", "spreadsheet", "spam", "mbox"),
    ("content", "scaffold"),                            # content/issue-N/ -> Issue; `campaign new` writes a new one
    ("render", "rendered"),                             # Issue -> RenderedIssue, once
    ("ledger_migrations", "ledger_schema", "batches_in_flight", "link_tokens", "ledger", "freeze", "suppressions", "events"),               # the SQLite record: who got what, who must never get anything,
                                                        # what the provider said happened after
    ("row_fields", "recipient", "audience"),            # recipients CSV -> Audience (minus suppressions)
    ("personalize",),                                   # one recipient's values, filled into the issue
    ("mime", "dkim_signing"),                           # one complete message, and its DKIM signature
    ("providers",),                                     # outbox, SMTP, SendGrid behind one interface
    ("checks", "preview", "screenshots", "live"),       # looking at an issue before it goes (live: while it is written)
    ("send", "dry_run"),                                # the send workflow and its rehearsal
    ("web", "unsubscribe_inbox", "bounces",             # doors back into the ledger from outside: the readers'
     "suppression_sync", "report", "report_page"),      # service, the editor's preview, mailed unsubscribes,
                                                        # the bounce mailbox, SendGrid's suppression lists;
                                                        # and the report of what came back
    ("cli", "__main__"),                                # the command line over all of it
]
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def stage_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    assert key in RANK, (f"campaign/{key} has no stage: add it to STAGES in tests/test_imports.py, "
                         "at the lowest stage it can stand on")
    return RANK[key]


def imports_of(module: str) -> set[str]:
    """Every campaign module `module` imports, wherever in the file the import is."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "campaign"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "campaign":
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
            found |= submodules or {target}
            if submodules != {f"{target}.{alias.name}" for alias in node.names}:
                found.add(target)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_stage():
    for module in MODULES:
        stage_of(module)


def test_no_module_imports_a_higher_stage():
    wrong = [f"{module} (stage {stage_of(module)}) imports {target} (stage {stage_of(target)})"
             for module, targets in sorted(GRAPH.items()) for target in sorted(targets)
             if stage_of(target) > stage_of(module)]
    assert not wrong, "lower stages import higher ones:\n" + "\n".join(wrong)


def test_no_import_cycle():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(GRAPH[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_checker_sees_a_lazy_import_and_a_relative_one():
    assert "campaign.providers.sendgrid" in GRAPH["campaign.providers"]   # inside make_provider
    assert "campaign.merge" in GRAPH["campaign.render"]
    assert "campaign.checks.spam" in GRAPH["campaign.checks.report"]   # `from . import spam`
    assert "campaign.spam" in GRAPH["campaign.checks.spam"]            # `from ..spam import ...`


HELP_IMPORTS = """
import sys
from campaign.cli import main
sys.argv = ["campaign", "--help"]
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted(name for name in sys.modules if name.startswith(("campaign", "email_validator", "yaml")))))
"""


def test_help_imports_the_command_line_and_none_of_the_library():
    """`campaign --help` is paid before every command is learnt: it loads no settings, ledger, content or
    address checks (issue 18: start-up). Each command imports the library it calls in its body."""
    result = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    imported = set(result.stdout.splitlines()[-1].split())
    light = {"campaign", "campaign.errors", "campaign.ledger_schema", "campaign.files"}   # the reasons' vocabulary
    assert imported - light == {name for name in imported if name.startswith("campaign.cli")}, sorted(imported)


SEND_IMPORTS = """
import pickle, sys
import campaign.send.builder, campaign.send.loop, campaign.send.concurrent, campaign.providers.sendgrid
from campaign.content import Issue
from campaign.merge import MergeTemplate
from campaign.rendered import RenderedIssue
before = set(sys.modules)
issue = RenderedIssue(30, MergeTemplate("S"), MergeTemplate("<p>H</p>"), MergeTemplate("T"), "P",
                      issue=Issue.__new__(Issue))
pickle.loads(pickle.dumps(issue))   # as it comes back from a builder process that rendered it
from campaign.checks import decide
from campaign.checks.findings import ERROR, Finding
pickle.loads(pickle.dumps(decide([Finding(ERROR, "x", "here", "what", "fix")], 30, force=True, rehearsal=False)))
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("jinja2", "mjml", "markdown_it", "yaml",
                                                                         "premailer"))))
"""


def test_a_send_whose_builder_renders_imports_no_renderer_here():
    """A large first send's builder process renders and checks the issue and sends both back
    (send/builder.py): the sending process takes them without importing Jinja2, MJML, Markdown, YAML or
    premailer, which only the render and the checks need (about 70 ms of its start)."""
    result = subprocess.run([sys.executable, "-c", SEND_IMPORTS], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    assert result.stdout.split() == [], result.stdout
