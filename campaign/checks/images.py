"""Pictures: alt text, a width Outlook can use, https sources, files that exist."""

from __future__ import annotations

import re

from ..content import Issue, Item, Section
from ..page import Page, read_page
from ..merge import PLACEHOLDER
from ..prose import to_html
from .findings import ERROR, LAYOUTS, WARNING, Finding, parts, place


# Alt text that names no content: a screen reader already says "image".
GENERIC_ALT = re.compile(r"^\s*(illustration for|image of)\b", re.IGNORECASE)


def images_of(part: Section | Item) -> list[tuple[str, str | None, bool]]:
    """(src, alt, from_markdown) for the part's picture and any Markdown image in its body.

    A decorative picture (`decorative: true`) has alt None: it needs none.
    """
    found = [(part.image, None if part.decorative else part.alt, False)] if part.image else []
    if part.body:
        found += [(image.get("src", ""), image.get("alt", ""), True) for image in read_page(to_html(part.body)).images]
    return found


def alt_problem(src: str, alt: str | None, where: str) -> Finding | None:
    if alt is None:
        return None
    if not alt.strip():
        return Finding(ERROR, "image-missing-alt", where, f"image {src} has no alt text",
                       "add 'alt:' with a few words saying what the picture shows, "
                       "or 'decorative: true' if it only decorates")
    if GENERIC_ALT.match(alt):
        return Finding(WARNING, "image-generic-alt", where, f"alt text of {src} says nothing: {alt!r}",
                       "say what the picture shows (screen readers already say it is an image), "
                       "or mark it 'decorative: true'")
    return None


def check_content_images(issue: Issue) -> list[Finding]:
    findings = []
    for where, _, part in parts(issue):
        for src, alt, from_markdown in images_of(part):
            problem = alt_problem(src, alt, where)
            if problem:
                findings.append(problem)
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
