"""The send gate: one decision, made once, from the preflight findings.

A real send with errors is refused unless forced; a rehearsal (outbox, sandbox,
dry run, test send) goes on and shows them. A forced send goes on and the ledger
records what it went on over (`GateDecision.forced_over`). Nothing else decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..errors import ChecksFailed
from .findings import ERROR, Finding

if TYPE_CHECKING:
    from ..config import Settings
    from ..rendered import RenderedIssue
    from ..spam import SpamRun


@dataclass(frozen=True)
class GateDecision:
    """What the preflight checks decide about one send."""

    issue: int
    findings: tuple[Finding, ...]
    errors: tuple[Finding, ...]
    forced: bool                      # a real send going on over errors because of --force
    refused: bool                     # a real send with errors, not forced: nothing may be sent

    @property
    def going_on_over_errors(self) -> bool:
        """Errors stand, and the send goes on anyway (a rehearsal, a test, or --force)."""
        return bool(self.errors) and not self.refused

    @property
    def refusal(self) -> str:
        return refusal(list(self.errors), self.issue) if self.errors else ""

    @property
    def forced_over(self) -> str:
        """What the ledger records with a forced run: the errors it went on over ("" when not forced)."""
        if not self.forced:
            return ""
        return "\n".join([f"{len(self.errors)} error(s) this send went on over with --force:",
                          *(f"  {finding.where}: {finding.message}" for finding in self.errors)])

    def enforce(self) -> None:
        """Raise ChecksFailed, naming each error, when the send is refused."""
        if self.refused:
            raise ChecksFailed(self.refusal)


def decide(findings: Sequence[Finding], number: int, *, force: bool, rehearsal: bool) -> GateDecision:
    """The decision for issue `number`'s send, from findings already made."""
    errors = tuple(finding for finding in findings if finding.severity == ERROR)
    stops = bool(errors) and not rehearsal
    return GateDecision(number, tuple(findings), errors, forced=stops and force, refused=stops and not force)


def gate_decision(settings: Settings, number: int, *, force: bool, rehearsal: bool,
                  rendered: RenderedIssue | None = None, spam_run: SpamRun | None = None) -> GateDecision:
    """Check issue `number` (reusing `rendered`, and `spam_run` started on it) and decide; raises nothing."""
    from .report import check_issue  # noqa: PLC0415  (every check, and the render: see checks/__init__.py)

    findings = check_issue(settings, number, rendered=rendered, spam_run=spam_run).findings
    return decide(findings, number, force=force, rehearsal=rehearsal)


def gate(settings: Settings, number: int, *, force: bool, rehearsal: bool,
         rendered: RenderedIssue | None = None) -> list[Finding]:
    """The check before a send: raise ChecksFailed for a real send with errors unless forced."""
    decision = gate_decision(settings, number, force=force, rehearsal=rehearsal, rendered=rendered)
    decision.enforce()
    return list(decision.findings)


def refusal(errors: list[Finding], number: int) -> str:
    lines = [f"{len(errors)} error(s) stop this send:"]
    lines += [f"  {finding.where}: {finding.message}" for finding in errors]
    lines.append(f"run `campaign check --issue {number}` to see them all, or pass --force")
    return "\n".join(lines)
