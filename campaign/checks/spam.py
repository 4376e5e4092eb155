"""The spam score as a finding: one personalised message through SpamAssassin (campaign/spam.py)."""

from __future__ import annotations

from ..config import Settings
from ..mime import build_message
from ..personalize import sample_envelope
from ..render import RenderedIssue
from ..spam import INSTALL_HINT, SpamReport, SpamRun, spamassassin
from .findings import ERROR, WARNING, Finding

__all__ = ["INSTALL_HINT", "WARN_AT", "ERROR_AT", "start_scoring", "findings_for"]

WARN_AT = 1.0       # our own bar: a newsletter from a known sender should score under 1
ERROR_AT = 5.0      # SpamAssassin's default "this is spam"


def start_scoring(settings: Settings, rendered: RenderedIssue) -> SpamRun | None:
    """SpamAssassin started on the issue as one sample recipient would get it; None when not installed.

    Other work goes on meanwhile; `run.report()` waits for the score, closing the run ends it.
    """
    if spamassassin() is None:
        return None
    message = build_message(rendered, sample_envelope(settings, rendered.number),
                            sender=settings.sender, links=settings.links)
    return SpamRun(message.as_bytes(), remember_in=settings.build_dir / ".cache" / "spamassassin")


def findings_for(report: SpamReport) -> list[Finding]:
    """A finding when the score is high enough to matter: warning from 1.0, error from 5.0."""
    if report.score < WARN_AT:
        return []
    severity = ERROR if report.score >= ERROR_AT else WARNING
    top = sorted((rule for rule in report.rules if rule.points > 0), key=lambda rule: -rule.points)[:5]
    reasons = "; ".join(f"{rule.name} (+{rule.points:.1f}: {rule.description})" for rule in top)
    return [Finding(severity, "spam-score", "the issue as a whole",
                    f"SpamAssassin scores a personalised message {report.score:.1f} (ours: under {WARN_AT:.1f}): "
                    f"{reasons}", "change what the rules point at (see the rule names), then check again")]
