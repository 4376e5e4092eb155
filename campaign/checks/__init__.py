"""Preflight checks: what a careful editor and an email specialist would find before a send.

One module per family of findings (links, images, size, compliance, signing,
content, todo, css, contrast, spam), all sharing `findings.Finding`; `report` runs them on one render,
and `gate` makes a send's one decision from them. The names other modules use
are re-exported here, so `from campaign.checks import check_issue, gate` keeps working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light, and needed by every send (a decision comes back from a builder process): imported at once.
from .findings import CONFIG, ERROR, LAYOUTS, WARNING, Finding
from .gate import GateDecision, decide, gate, gate_decision, refusal

if TYPE_CHECKING:
    from .compliance import check_compliance
    from .content import check_empty_sections, check_event_dates, check_fields, check_repeated_paragraphs
    from .contrast import check_contrast
    from .css import check_css, css_features
    from .images import check_content_images, check_layout_images
    from .links import check_content_links, check_layout_links, link_problem
    from .report import CheckReport, check_issue, run_checks
    from .signing import check_signing
    from .size import HTML_LIMIT, STYLE_LIMIT, check_size, known_fields, long_envelope
    from .todo import check_todo_markers

# The checks themselves (and the render they need: Jinja2, MJML, cssutils) are imported when first named:
# a send whose builder process checks the issue never needs them here (about 70 ms of its start).
_LAZY = {
    ".compliance": ("check_compliance",),
    ".content": ("check_empty_sections", "check_event_dates", "check_fields", "check_repeated_paragraphs"),
    ".contrast": ("check_contrast",),
    ".css": ("check_css", "css_features"),
    ".images": ("check_content_images", "check_layout_images"),
    ".links": ("check_content_links", "check_layout_links", "link_problem"),
    ".report": ("CheckReport", "check_issue", "run_checks"),
    ".signing": ("check_signing",),
    ".size": ("HTML_LIMIT", "STYLE_LIMIT", "check_size", "known_fields", "long_envelope"),
    ".todo": ("check_todo_markers",),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CONFIG", "ERROR", "HTML_LIMIT", "LAYOUTS", "STYLE_LIMIT", "WARNING", "CheckReport", "Finding",
    "GateDecision", "check_compliance", "check_content_images", "check_contrast", "check_content_links",
    "check_css", "check_empty_sections", "check_event_dates", "check_fields", "check_issue", "check_layout_images",
    "check_layout_links", "check_repeated_paragraphs", "check_signing", "check_size", "check_todo_markers",
    "css_features", "decide", "gate", "gate_decision", "known_fields", "link_problem", "long_envelope", "refusal",
    "run_checks",
]
