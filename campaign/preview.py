"""The local preview: the issue's HTML and text, personalised, in output/issue-N/."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .audience import find_recipient
from .config import Settings
from .errors import LayoutError
from .files import make_folder, write_text_atomic
from .personalize import Envelope, envelope_for, personalize, sample_envelope
from .render import RenderedIssue, render_issue

PREVIEW_IMAGES = "images/"


@dataclass(frozen=True)
class PreviewFiles:
    html: Path
    text: Path
    images: Path
    size_bytes: int


def write_preview(settings: Settings, number: int, envelope: Envelope | None = None) -> PreviewFiles:
    """Render issue `number` once and write it, personalised, as index.html and index.txt."""
    rendered = render_issue(settings, number, images_base=PREVIEW_IMAGES)
    # With sample values the files are 0644, for a web server; personalised (--as) they stay private.
    return write_personalized(settings, rendered, envelope or sample_envelope(settings, number),
                              public=envelope is None)


def write_personalized(settings: Settings, rendered: RenderedIssue, envelope: Envelope, *,
                       public: bool = False) -> PreviewFiles:
    folder = settings.issue_build_dir(rendered.number)
    message = personalize(rendered, envelope)
    html_path, text_path = folder / "index.html", folder / "index.txt"
    write_text_atomic(html_path, message.html, public=public)
    write_text_atomic(text_path, message.text, public=public)
    images = copy_images(rendered.content().images_dir, folder / "images")
    return PreviewFiles(html=html_path, text=text_path, images=images,
                        size_bytes=len(message.html.encode("utf-8")))


def copy_images(source: Path, target: Path) -> Path:
    make_folder(target)
    if source.is_dir():
        for image in source.iterdir():
            if image.is_file():
                shutil.copy2(image, target / image.name)
    return target


def write_web_copy(settings: Settings, number: int) -> Path:
    """The issue for the "view in browser" address: no merge field, nothing personal.

    Upload output/issue-N/web/ (index.html and images/) to `links.view_url`.
    """
    rendered = render_issue(settings, number, images_base=PREVIEW_IMAGES, web=True)
    left = rendered.html.field_names()
    if left:  # a layout put a merge field outside `{% if not web %}`: it would show as [[...]]
        raise LayoutError(f"{settings.layouts_dir}: the web copy still has merge fields "
                          f"{', '.join(sorted(left))}; wrap them in {{% if not web %}} in the layouts")
    folder = settings.issue_build_dir(number) / "web"
    write_text_atomic(folder / "index.html", rendered.html.source, public=True)
    copy_images(rendered.content().images_dir, folder / "images")
    return folder / "index.html"


def recipient_envelope(settings: Settings, email: str, number: int) -> Envelope:
    """The envelope of one person in the recipients file, for `--as EMAIL`."""
    return envelope_for(find_recipient(settings, email), settings, number)
