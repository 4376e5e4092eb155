"""Render once: content -> Jinja2 -> MJML -> mjml2html -> premailer -> HTML, plus its plain-text twin.

This is the expensive step (premailer dominates, about 100 ms); it runs once
per issue. Recipient data never enters it: the layouts write merge
placeholders such as `[[name|colleague]]`, which survive MJML and premailer
unchanged and are filled per recipient by campaign/personalize.py.
"""

from __future__ import annotations

import logging
import re
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup
from mjml import mjml2html

from . import prose
from .config import Settings
from .content import Issue, Section, load_issue
from .errors import ContentError, LayoutError
from .merge import MergeTemplate
from .rendered import RenderedIssue as RenderedIssue   # re-exported: where it always was

BASE_LAYOUT = "base.mjml.j2"
TEXT_LAYOUT = "issue.txt.j2"
THEME_FILE = "theme.yaml"
SECTION_LAYOUT = "sections/{kind}.mjml.j2"
TEXT_RULE = "=" * 72
COLOUR_GROUPS = ("colors", "dark")          # theme.yaml groups of hex colours
HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
CSS_VALUE = re.compile(r"[A-Za-z0-9 #%.,'\"()+_>\[\]=-]*")
# MJML's reset <style> (`table, td { border-collapse ...; mso-table-rspace: 0pt }` and four more
# rules) stays one block in <head>, where every client that needs it (Outlook above all) reads it:
# inlined, premailer would copy it onto every table and cell (about 10 KB for issue 30).
MJML_RESET = '<style type="text/css">\n#outlook a'



def render_issue(settings: Settings, number: int, *, images_base: str | None = None,
                 web: bool = False) -> RenderedIssue:
    """Load content/issue-N and render it: the one expensive step of a send.

    `images_base` is where <img src> points: by default the public images URL
    from campaign.toml; the local preview passes "images/". `web` renders the copy
    for the "view in browser" address: the layouts leave out everything personal.
    """
    issue = load_issue(settings.content_dir, number)
    if images_base is None:
        images_base = settings.links.images_url.format(issue=number)
    return render(issue, settings, images_base, web=web)


def render(issue: Issue, settings: Settings, images_base: str, *, web: bool = False) -> RenderedIssue:
    environment = layout_environment(settings.layouts_dir, images_base)
    context = {"issue": issue, "sender": settings.sender, "theme": read_theme(settings.layouts_dir), "web": web}
    sections = [render_section(environment, section, context) for section in issue.sections]
    mjml = render_layout(environment, BASE_LAYOUT, {**context, "sections": [Markup(s) for s in sections]},
                         issue.folder)
    sources = _mjml_sources(settings.layouts_dir, issue, sections)
    html = seven_bit(inline_css(compile_mjml(mjml, sources, settings.layouts_dir / BASE_LAYOUT)))
    text = render_layout(environment, TEXT_LAYOUT, {**context, "rule": TEXT_RULE}, issue.folder)
    return RenderedIssue(
        number=issue.number,
        subject=MergeTemplate(issue.subject),
        html=MergeTemplate(html, markup=True),
        text=MergeTemplate(text.strip() + "\n"),
        preheader=issue.preheader,
        mjml=mjml,
        issue=issue,
    )


def _layout_folder(environment: jinja2.Environment) -> str:
    loader = environment.loader
    return loader.searchpath[0] if isinstance(loader, jinja2.FileSystemLoader) else ""


def layout_environment(layouts_dir: Path, images_base: str) -> jinja2.Environment:
    if not layouts_dir.is_dir():
        raise LayoutError(f"{layouts_dir}: no layouts folder; check layouts_dir in campaign.toml")
    return _cached_environment(layouts_dir.resolve(), images_base)


@lru_cache(maxsize=8)
def _cached_environment(layouts_dir: Path, images_base: str) -> jinja2.Environment:
    """One environment per layouts folder, so each layout compiles once per process.

    Jinja's auto_reload still recompiles a layout whose file changed.
    """
    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(layouts_dir),
        autoescape=lambda name: not (name or "").endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["css"] = css_value
    environment.globals.update(
        markdown=prose.to_html,
        text=prose.to_text,
        image_url=lambda name: name if re.match(r"^https?://", name) else images_base + name,
    )
    return environment


def css_value(value: object) -> Markup:
    """A theme value written into a <style> block: checked, then left as it is.

    Autoescape is right for HTML but wrong inside <style>, where `&#39;` is not a
    quote: `Georgia, 'Times New Roman', serif` would become invalid CSS that
    premailer drops. So a value passes only if it cannot end the rule or the
    <style> element: no `<`, braces, semicolon, backslash, at-sign or comment,
    and its quotes balanced.
    """
    text = str(value)
    if not CSS_VALUE.fullmatch(text) or text.count("'") % 2 or text.count('"') % 2 or "/*" in text:
        raise ValueError(f"{text!r} is not a plain CSS value (letters, digits, spaces, # % . , ' \" ( ) - + _ > [ ] = "
                         f"only, quotes balanced); fix it in {THEME_FILE}")
    return Markup(text)


def read_theme(layouts_dir: Path) -> dict:
    path = layouts_dir / THEME_FILE
    try:
        theme = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayoutError(f"{path}: missing; the layouts need their colours and fonts") from None
    except yaml.YAMLError as error:
        raise LayoutError(f"{path}: malformed YAML ({error}); fix the file") from None
    if not isinstance(theme, dict):
        raise LayoutError(f"{path}: expected 'name: value' settings")
    for group in COLOUR_GROUPS:
        colours = theme.get(group, {})
        if not isinstance(colours, dict):
            raise LayoutError(f"{path}: '{group}' must be 'role: \"#RRGGBB\"' lines")
        for role, colour in colours.items():
            if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
                raise LayoutError(f"{path}: {group}.{role} is {colour!r}; write colours as \"#RRGGBB\"")
    return theme


def render_section(environment: jinja2.Environment, section: Section, context: dict) -> str:
    name = SECTION_LAYOUT.format(kind=section.kind)
    return render_layout(environment, name, {**context, "section": section}, section.source)


def render_layout(environment: jinja2.Environment, name: str, context: dict, content: Path) -> str:
    """Render one layout; any failure names the layout (with line) and the content it was given."""
    try:
        return environment.get_template(name).render(context)
    except jinja2.TemplateNotFound as error:
        missing = Path(_layout_folder(environment)) / str(error.name)
        raise LayoutError(f"{missing}: missing layout, needed by {content}; create it or fix the "
                          "section's 'kind'") from None
    except jinja2.TemplateSyntaxError as error:
        raise LayoutError(f"{error.filename}:{error.lineno}: {error.message}") from None
    except jinja2.UndefinedError as error:
        raise ContentError(f"{_template_position(error)}: {error.message} while rendering {content}; "
                           "add the field to the content or fix the layout") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise LayoutError(f"{_template_position(error)}: {error} while rendering {content}") from None


def _template_position(error: BaseException) -> str:
    """The innermost layout file and line in a Jinja traceback."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return "layouts"


@dataclass(frozen=True)
class MjmlSource:
    """Where a piece of the merged MJML came from, to name it in an MJML error."""

    layout: Path
    content: Path
    mjml: str


def _mjml_sources(layouts_dir: Path, issue: Issue, sections: list[str]) -> list[MjmlSource]:
    return [MjmlSource(layouts_dir / SECTION_LAYOUT.format(kind=section.kind), section.source, mjml)
            for section, mjml in zip(issue.sections, sections)]


def compile_mjml(mjml: str, sources: list[MjmlSource], base: Path) -> str:
    """MJML to HTML with MRML; MRML does not validate, so unknown tags are caught here too."""
    try:
        html = mjml2html(mjml, fonts={})  # fonts={}: no Google Fonts <link> or @import
    except ValueError as error:
        culprit = _failing_source(sources)
        where = f"{culprit.layout} (rendering {culprit.content})" if culprit else base
        raise LayoutError(f"{where}: MJML error: {error}; check that every tag is closed") from None
    leftover = re.search(r"<mj-[a-z-]+", html)
    if leftover:
        tag = leftover.group(0)
        culprit = next((source for source in sources if tag in source.mjml), None)
        where = f"{culprit.layout} (rendering {culprit.content})" if culprit else base
        raise LayoutError(f"{where}: unknown MJML tag {tag}>; MJML would leave it in the email")
    return html


def _failing_source(sources: list[MjmlSource]) -> MjmlSource | None:
    """MRML's errors rarely say where: compile each section alone to find the one that fails."""
    for source in sources:
        try:
            mjml2html(f"<mjml><mj-body>{source.mjml}</mj-body></mjml>", fonts={})
        except ValueError:
            return source
    return None


def inline_css(html: str) -> str:
    """Inline CSS with premailer, keeping what email clients and MJML need."""
    import premailer  # noqa: PLC0415  (a quarter second of imports: only commands that render pay it)

    html = html.replace(MJML_RESET, MJML_RESET.replace("<style", '<style data-premailer="ignore"'), 1)
    inlined = premailer.transform(
        html,
        allow_network=False,                       # never fetch <link> stylesheets
        strip_important=False,                     # MJML's mobile rules need !important
        # No presentational attributes from the inlined styles: MJML already writes the ones
        # Outlook needs on its tables, <img width> must stay in pixels, and premailer would put
        # bgcolor/valign on the <span> of a section label, where they are invalid.
        disable_basic_attributes=["width", "height", "bgcolor", "valign", "align"],
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
    )
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = "<!doctype html>\n" + inlined    # premailer drops MJML's lowercase doctype
    return inlined


def seven_bit(html: str) -> str:
    """Every non-ASCII character as a numeric reference (`ã` -> `&#227;`).

    The HTML then survives any transfer encoding or charset mix-up, and as a
    one-byte-per-character Python string each per-recipient fill copies half the
    bytes and encodes to UTF-8 ten times faster. (The <style> blocks and MSO
    comments carry no non-ASCII text; a test keeps it so.)
    """
    return html.encode("ascii", "xmlcharrefreplace").decode("ascii")
