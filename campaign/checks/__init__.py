"""Preflight checks: what a careful editor and an email specialist would find before a send.

One module per family of findings (links, images, size, compliance, signing,
content, todo, css, contrast, spam), all sharing `findings.Finding`; `report` runs them on one render,
and `gate` makes a send's one decision from them. The names other modules use
are re-exported here, so `from campaign.checks import check_issue, gate` keeps working.
"""

from __future__ import annotations

from .compliance import check_compliance
from .contrast import check_contrast
from .content import check_empty_sections, check_event_dates, check_fields, check_repeated_paragraphs
from .css import check_css, css_features
from .findings import CONFIG, ERROR, LAYOUTS, WARNING, Finding
from .images import check_content_images, check_layout_images
from .gate import GateDecision, decide, gate, gate_decision, refusal
from .links import check_content_links, check_layout_links, link_problem
from .report import CheckReport, check_issue, run_checks
from .signing import check_signing
from .size import HTML_LIMIT, STYLE_LIMIT, check_size, known_fields, long_envelope
from .todo import check_todo_markers

__all__ = [
    "CONFIG", "ERROR", "HTML_LIMIT", "LAYOUTS", "STYLE_LIMIT", "WARNING", "CheckReport", "Finding",
    "GateDecision", "check_compliance", "check_content_images", "check_contrast", "check_content_links",
    "check_css", "check_empty_sections", "check_event_dates", "check_fields", "check_issue", "check_layout_images",
    "check_layout_links", "check_repeated_paragraphs", "check_signing", "check_size", "check_todo_markers",
    "css_features", "decide", "gate", "gate_decision", "known_fields", "link_problem", "long_envelope", "refusal",
    "run_checks",
]
