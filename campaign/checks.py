"""Preflight checks: what a careful editor and an email specialist would find before a send.

`run_checks(settings, number)` renders the issue once and returns findings;
each check below is a pure function of the rendered issue, its content or the
settings, returning a list of `Finding`. Codes are stable: scripts and the
README name them. `gate()` is what a send calls first.

A finding says where (the content file and section, or "layouts" for what the
layouts produce, or campaign.toml), what is wrong, and what to do.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from . import css_support
from .config import Settings
from .content import Issue, Item, Section
from .audience import recipient_columns
from .errors import ChecksFailed
from .page import Page, read_page
from .personalize import PLACEHOLDER, SAMPLE_RECIPIENT, Envelope, merge_values, personalize
from .prose import to_html
from .render import RenderedIssue, render_issue

ERROR, WARNING = "error", "warning"
HTML_LIMIT = 100 * 1024          # Gmail clips messages near 102 KB; keep a margin
STYLE_LIMIT = 16 * 1024          # Gmail drops a <style> block over 16 KB (caniemail html-style)
SUBJECT_RANGE = (15, 70)         # characters; longer subjects are cut on phones
PREHEADER_RANGE = (30, 150)
REPEAT_MIN_CHARS = 60            # shorter paragraphs ("Read more.") may repeat
VAGUE_LINK_TEXT = {"click here", "here", "click", "this", "this link", "link", "more", "go", "this page"}
READ_MORE = {"read more", "more", "learn more", "continue reading"}
LAYOUTS = "layouts"
CONFIG = "campaign.toml"
LONG = 120                       # characters in each long sample value for the size check


@dataclass(frozen=True)
class Finding:
    severity: str   # "error" | "warning"
    code: str       # stable, e.g. "link-placeholder"
    where: str      # content file and section, "layouts" or "campaign.toml"
    message: str    # what is wrong
    fix: str        # what to do

    def line(self) -> str:
        return f"{self.severity}: {self.where}: {self.message} [{self.code}]"


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]
    html_bytes: int                  # final HTML of the longest personalisation
    style_bytes: tuple[int, ...]     # each <style> block
    spam: object | None = None       # spam.SpamReport when SpamAssassin ran
    notes: tuple[str, ...] = ()      # e.g. "SpamAssassin is not installed"

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == ERROR]


def run_checks(settings: Settings, number: int, *, deliverability: bool = True) -> list[Finding]:
    """Every finding for issue `number`, errors first."""
    return list(check_issue(settings, number, deliverability=deliverability).findings)


def check_issue(settings: Settings, number: int, *, rendered: RenderedIssue | None = None,
                deliverability: bool = True) -> CheckReport:
    """Render (once) and check issue `number`; `rendered` reuses a render made by the caller."""
    rendered = rendered or render_issue(settings, number)
    issue = rendered.issue
    known = known_fields(settings)
    longest = personalize(rendered, long_envelope(settings, number, known)).html
    page = read_page(rendered.html.source)
    findings = [
        *check_content_links(issue),
        *check_layout_links(page, issue),
        *check_content_images(issue),
        *check_layout_images(page),
        *check_size(longest, page, issue),
        *check_compliance(rendered, page, settings),
        *check_fields(rendered, known),
        *check_repeated_paragraphs(issue),
        *check_event_dates(issue),
        *check_empty_sections(issue),
        *check_css(page),
    ]
    spam_report, notes = None, ()
    if deliverability:
        from . import spam  # noqa: PLC0415  (runs a subprocess; only when asked)

        spam_report = spam.score_issue(settings, rendered)
        if spam_report is None:
            notes = (f"SpamAssassin is not installed, so no spam score: {spam.INSTALL_HINT}",)
        else:
            findings += spam.findings_for(spam_report)
    order = {ERROR: 0, WARNING: 1}
    findings.sort(key=lambda finding: order[finding.severity])
    return CheckReport(findings=tuple(findings), html_bytes=len(longest.encode("utf-8")),
                       style_bytes=tuple(len(block.encode("utf-8")) for block in page.style_blocks),
                       spam=spam_report, notes=notes)


def gate(settings: Settings, number: int, *, force: bool, rehearsal: bool,
         rendered: RenderedIssue | None = None) -> list[Finding]:
    """The check before a send: raise ChecksFailed for a real send with errors unless forced."""
    findings = list(check_issue(settings, number, rendered=rendered).findings)
    if not force:
        refuse_errors(findings, number, rehearsal=rehearsal)
    return findings


def refuse_errors(findings: list[Finding], number: int, *, rehearsal: bool) -> None:
    errors = [finding for finding in findings if finding.severity == ERROR]
    if errors and not rehearsal:
        raise ChecksFailed(refusal(errors, number))


def send_gate(settings: Settings, *, rehearsal: bool,
              findings: list[Finding] | None = None) -> Callable[[RenderedIssue], None]:
    """The hook campaign/send.py takes (`gate=`): checks the issue it is about to send.

    `findings` from a gate the caller already ran are reused rather than checked
    again. send.py catches ChecksFailed itself and, with --force, records it in the ledger.
    """
    def check(rendered: RenderedIssue) -> None:
        if findings is None:
            gate(settings, rendered.number, force=False, rehearsal=rehearsal, rendered=rendered)
        else:
            refuse_errors(findings, rendered.number, rehearsal=rehearsal)

    return check


def refusal(errors: list[Finding], number: int) -> str:
    lines = [f"{len(errors)} error(s) stop this send:"]
    lines += [f"  {finding.where}: {finding.message}" for finding in errors]
    lines.append(f"run `campaign check --issue {number}` to see them all, or pass --force")
    return "\n".join(lines)


# -- where things are -------------------------------------------------------------------------

def place(path: Path, issue: Issue) -> str:
    """A content file relative to the issue folder's parent: `issue-30/02-recent-events/01-x.md`."""
    try:
        return str(path.relative_to(issue.folder.parent))
    except ValueError:
        return str(path)


def section_file(section: Section) -> Path:
    return section.source / "index.md" if section.source.is_dir() else section.source


def parts(issue: Issue) -> Iterator[tuple[str, Section, Section | Item]]:
    """Every section and item with where it comes from: `issue-30/x.md (section "Heading")`."""
    for section in issue.sections:
        yield f'{place(section_file(section), issue)} (section "{section.heading}")', section, section
        for item in section.items:
            yield f'{place(item.source, issue)} (section "{section.heading}")', section, item


# -- links ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    href: str
    text: str
    button: bool = False


def links_of(part: Section | Item) -> list[Link]:
    found = [Link(link.href, link.text) for link in read_page(to_html(part.body)).links] if part.body else []
    if part.link or part.link_text:
        found.append(Link(part.link, part.link_text or "Read more", button=True))
    return found


def link_problem(href: str) -> tuple[str, str, str, str] | None:
    """(severity, code, message, fix) for one href, or None when it is fine."""
    if href.strip() in ("", "#") or href.startswith("#"):
        return (ERROR, "link-placeholder", f"link target is a placeholder ({href!r})",
                "put the real address (https://...) in place of the placeholder")
    if PLACEHOLDER.fullmatch(href):
        return None
    if href.startswith("mailto:"):
        ok = re.fullmatch(r"mailto:[^@\s]+@[^@\s]+\.[^@\s]+", href.split("?")[0])
        return None if ok else (ERROR, "link-malformed", f"malformed mailto link {href!r}",
                                "write it as mailto:name@example.org")
    parts_ = urlsplit(href)
    if parts_.scheme not in ("http", "https") or not parts_.netloc or " " in href or "." not in parts_.netloc:
        return (ERROR, "link-malformed", f"malformed link {href!r}",
                "write a full address such as https://www.example.org/page")
    if parts_.scheme == "http":
        return (WARNING, "link-not-https", f"link is not https: {href}",
                "use the https:// address (check that the site answers on https)")
    return None


def check_content_links(issue: Issue) -> list[Finding]:
    findings = []
    read_more: dict[str, list[str]] = defaultdict(list)
    for where, _, part in parts(issue):
        for link in links_of(part):
            problem = link_problem(link.href)
            if problem:
                severity, code, message, fix = problem
                findings.append(Finding(severity, code, where, f'{message}, text "{link.text}"', fix))
            words = re.sub(r"[^\w\s]", "", link.text).strip().lower()
            if words in VAGUE_LINK_TEXT:
                findings.append(Finding(WARNING, "link-vague-text", where,
                                        f'link text "{link.text}" says nothing about where it goes',
                                        "make the linked words name the target, e.g. "
                                        "\"the list of participants\""))
            if words in READ_MORE and not problem:
                read_more[link.href].append(where)
    for href, places in read_more.items():
        if len(places) > 1:
            findings.append(Finding(WARNING, "link-duplicate-read-more", "; ".join(places),
                                    f'{len(places)} "Read more" links go to the same address {href}',
                                    "point each \"Read more\" at its own story"))
    return findings


def check_layout_links(page: Page, issue: Issue) -> list[Finding]:
    """Links the layouts write (view in browser, unsubscribe...): every one must be usable."""
    from_content = {link.href for _, _, part in parts(issue) for link in links_of(part)}
    findings = []
    for link in page.links:
        if link.href in from_content:
            continue
        problem = link_problem(link.href)
        if problem:
            severity, code, message, fix = problem
            findings.append(Finding(severity, code, LAYOUTS, message, fix))
    return findings


# -- images ---------------------------------------------------------------------------------

def images_of(part: Section | Item) -> list[tuple[str, str, bool]]:
    """(src, alt, from_markdown) for the part's picture and any Markdown image in its body."""
    found = [(part.image, part.alt, False)] if part.image else []
    if part.body:
        found += [(image.get("src", ""), image.get("alt", ""), True) for image in read_page(to_html(part.body)).images]
    return found


def check_content_images(issue: Issue) -> list[Finding]:
    findings = []
    for where, _, part in parts(issue):
        for src, alt, from_markdown in images_of(part):
            if not alt.strip():
                findings.append(Finding(ERROR, "image-missing-alt", where, f"image {src} has no alt text",
                                        "add 'alt:' with a few words saying what the picture shows"))
            if from_markdown:
                findings.append(Finding(WARNING, "image-missing-width", where,
                                        f"Markdown image {src} has no width (Outlook shows it full size)",
                                        "use the 'image:' field instead, which the layout sizes"))
            if re.match(r"^[a-z]+:", src):
                if not src.startswith("https://"):
                    findings.append(Finding(ERROR, "image-not-https", where, f"image source is not https: {src}",
                                            "put the file in the issue's images/ folder or use an https:// URL"))
            elif not (issue.images_dir / src).is_file():
                findings.append(Finding(ERROR, "image-missing-file", where,
                                        f"image {src} is not in {place(issue.images_dir, issue)}/",
                                        "add the file there or correct the name"))
    return findings


def check_layout_images(page: Page) -> list[Finding]:
    findings = []
    for image in page.images:
        src = image.get("src", "")
        if "alt" not in image:
            findings.append(Finding(ERROR, "image-missing-alt", LAYOUTS, f"<img src={src}> has no alt attribute",
                                    "give the layout's image an alt attribute"))
        if not (image.get("width") or "").isdigit():
            findings.append(Finding(ERROR, "image-missing-width", LAYOUTS,
                                    f"<img src={src}> has no width attribute in pixels",
                                    "set width on the mj-image in the layout (Outlook needs it)"))
        if src and not src.startswith("https://") and not PLACEHOLDER.match(src):
            findings.append(Finding(ERROR, "image-not-https", LAYOUTS, f"image source is not https: {src}",
                                    "set links.images_url in campaign.toml to an https:// address"))
    return findings


# -- size -----------------------------------------------------------------------------------

def check_size(longest_html: str, page: Page, issue: Issue) -> list[Finding]:
    findings = []
    size = len(longest_html.encode("utf-8"))
    if size > HTML_LIMIT:
        where, _, longest = max(parts(issue), key=lambda part: len(part[2].body.encode("utf-8")))
        findings.append(Finding(ERROR, "html-too-large", f"{place(issue.folder, issue)}/, longest text in {where} "
                                f"({len(longest.body.encode('utf-8')) / 1024:.0f} KB)",
                                f"final HTML is {size / 1024:.0f} KB for the longest personalisation; "
                                f"Gmail clips messages over about 102 KB (limit here {HTML_LIMIT // 1024} KB)",
                                "shorten the stories and link to the full text on the website"))
    for block in page.style_blocks:
        if len(block.encode("utf-8")) > STYLE_LIMIT:
            findings.append(Finding(ERROR, "style-too-large", LAYOUTS,
                                    f"a <style> block is {len(block.encode()) / 1024:.0f} KB; Gmail ignores "
                                    "style blocks over 16 KB", "trim the CSS in the layouts' mj-style"))
    return findings


def known_fields(settings: Settings) -> set[str]:
    """Merge fields a layout or content may use: what merge_values always gives plus the CSV columns."""
    fields = set(merge_values("a@example.org", "", SAMPLE_RECIPIENT, issue_number=0, links=settings.links,
                              token_secret=settings.token_secret))
    return (fields | set(recipient_columns(settings.recipients))) - {"lists"}


def long_envelope(settings: Settings, number: int, fields: set[str]) -> Envelope:
    """A recipient whose every value is long: the biggest message anyone can get."""
    columns = {name: "W" * LONG for name in fields}
    email = "x" * 64 + "@" + "long-organisation-domain." + "example.org"
    values = merge_values(email, "W" * LONG, columns, issue_number=number, links=settings.links,
                          token_secret=settings.token_secret)
    return Envelope(email=email, name="W" * LONG, fields=values)


# -- compliance -----------------------------------------------------------------------------

def check_compliance(rendered: RenderedIssue, page: Page, settings: Settings) -> list[Finding]:
    findings = []
    visible = [link for link in page.links if link.href == "[[unsubscribe_url]]" and link.text.strip()
               and not link.hidden]
    if not visible:
        findings.append(Finding(ERROR, "unsubscribe-missing-html", LAYOUTS,
                                "the HTML part has no visible unsubscribe link",
                                'add <a href="[[unsubscribe_url]]">Unsubscribe</a> to the footer of base.mjml.j2'))
    if "[[unsubscribe_url]]" not in rendered.text.source:
        findings.append(Finding(ERROR, "unsubscribe-missing-text", LAYOUTS,
                                "the text part has no unsubscribe link",
                                "add 'Unsubscribe: [[unsubscribe_url]]' to issue.txt.j2"))
    address = squash(settings.sender.postal_address)
    for part, text, layout in (("HTML", page.text, "base.mjml.j2"), ("text", rendered.text.source, "issue.txt.j2")):
        if not address or address not in squash(text):
            findings.append(Finding(ERROR, "postal-address-missing", LAYOUTS if address else CONFIG,
                                    f"the {part} part does not show the sender's postal address",
                                    "set sender.postal_address in campaign.toml" if not address
                                    else f"show sender.postal_address in the footer of {layout}"))
    links = settings.links
    if not links.unsubscribe_url.startswith("https://") or "{token}" not in links.unsubscribe_url:
        findings.append(Finding(ERROR, "list-unsubscribe-url", CONFIG,
                                f"links.unsubscribe_url {links.unsubscribe_url!r} is not an https:// URL "
                                "with {token}; Gmail and Yahoo require one-click List-Unsubscribe",
                                "set links.unsubscribe_url = \"https://.../unsubscribe?t={token}\""))
    if not re.fullmatch(r"(mailto:)?[^@\s]+@[^@\s]+\.[^@\s]+", links.unsubscribe_mailto):
        findings.append(Finding(WARNING, "list-unsubscribe-mailto", CONFIG,
                                f"links.unsubscribe_mailto {links.unsubscribe_mailto!r} is not an address",
                                "set links.unsubscribe_mailto to an address that handles unsubscribes"))
    issue = rendered.issue
    meta = place(issue.folder / "issue.yaml", issue)
    preheader = squash(issue.preheader)
    if not preheader or preheader not in squash(page.text):
        findings.append(Finding(WARNING, "preheader-missing", meta, "the email has no preheader",
                                "write 'preheader:' in issue.yaml, one sentence after the subject"))
    elif not PREHEADER_RANGE[0] <= len(preheader) <= PREHEADER_RANGE[1]:
        findings.append(Finding(WARNING, "preheader-length", meta,
                                f"the preheader is {len(preheader)} characters",
                                f"keep it between {PREHEADER_RANGE[0]} and {PREHEADER_RANGE[1]} characters"))
    subject = rendered.subject.fill({name: SAMPLE_RECIPIENT.get(name, "") for name in
                                     rendered.subject.field_names()}, str)
    if not SUBJECT_RANGE[0] <= len(subject) <= SUBJECT_RANGE[1]:
        findings.append(Finding(WARNING, "subject-length", meta, f"the subject is {len(subject)} characters",
                                f"keep it between {SUBJECT_RANGE[0]} and {SUBJECT_RANGE[1]} characters "
                                "so phones show it whole"))
    return findings


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


# -- content --------------------------------------------------------------------------------

def check_fields(rendered: RenderedIssue, known: set[str]) -> list[Finding]:
    """Template syntax left in the content, or merge fields nobody has a value for."""
    findings = []
    issue = rendered.issue
    texts = [(where, f"{part.body} {getattr(part, 'title', '')} {part.heading if part is section else ''}")
             for where, section, part in parts(issue)]
    texts.append((place(issue.folder / "issue.yaml", issue), f"{issue.subject} {issue.preheader}"))
    for where, text in texts:
        for leftover in re.findall(r"\{\{.*?\}\}|\{%.*?%\}|\{\{|\{%", text):
            findings.append(Finding(ERROR, "field-unfilled", where, f"unfilled template text {leftover!r}",
                                    "write the final words; content files are not templates"))
    for where, text in [("the rendered HTML", rendered.html.source), ("the rendered text", rendered.text.source)]:
        if "{{" in text or "{%" in text:
            findings.append(Finding(ERROR, "field-unfilled", LAYOUTS, f"{where} still contains '{{{{' or '{{%'",
                                    "fix the layout or the content that leaves template syntax behind"))
    for name in sorted(rendered.field_names() - known):
        findings.append(Finding(ERROR, "field-unknown", LAYOUTS if name not in content_fields(issue) else
                                "the issue's content", f"merge field [[{name}]] has no value for recipients",
                                f"add a '{name}' column to the recipients file, or remove [[{name}]]"))
    return findings


def content_fields(issue: Issue) -> set[str]:
    return {match.group(1) for _, _, part in parts(issue) for match in PLACEHOLDER.finditer(part.body)}


def paragraphs(text: str) -> list[str]:
    return [squash(block) for block in re.split(r"\n\s*\n", text) if len(squash(block)) >= REPEAT_MIN_CHARS]


def check_repeated_paragraphs(issue: Issue) -> list[Finding]:
    seen: dict[str, list[str]] = defaultdict(list)
    for where, _, part in parts(issue):
        for paragraph in paragraphs(part.body):
            seen[paragraph].append(where)
    return [Finding(WARNING, "paragraph-repeated", "; ".join(dict.fromkeys(places)),
                    f'paragraph appears {len(places)} times: "{paragraph[:70]}..."',
                    "keep it once, or say something specific in each place")
            for paragraph, places in seen.items() if len(places) > 1]


def check_event_dates(issue: Issue) -> list[Finding]:
    return [Finding(ERROR, "event-in-past", where,
                    f'upcoming "{part.title}" is dated {part.date}, before the issue\'s publication '
                    f"date {issue.published}", "correct 'date:', or move it to the recent events")
            for where, section, part in parts(issue)
            if section.kind == "upcoming" and isinstance(part, Item) and part.date and part.date < issue.published]


def check_empty_sections(issue: Issue) -> list[Finding]:
    findings = []
    for where, section, part in parts(issue):
        if part is section and not section.body.strip() and not section.items:
            findings.append(Finding(ERROR, "section-empty", where, f'section "{section.heading}" has no text',
                                    "write its body, add items, or remove the section"))
        elif isinstance(part, Item) and not part.body.strip():
            findings.append(Finding(WARNING, "item-empty", where, f'"{part.title}" has no text',
                                    "write a few sentences after the front matter"))
    return findings


# -- rendering ------------------------------------------------------------------------------

# Unsupported features that degrade gracefully in what MJML writes, with why they are fine.
GRACEFUL = {
    "@media": "Outlook for Windows ignores media queries; MJML gives it the desktop layout in MSO tables",
    "border-radius": "Outlook for Windows shows square corners",
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
