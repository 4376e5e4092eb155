"""What an HTML email is made of, read once: links, images, CSS and text, for the preflight checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)


@dataclass(frozen=True)
class PageLink:
    href: str
    text: str
    hidden: bool          # inside an element styled display:none


@dataclass
class Page:
    links: list[PageLink] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    style_blocks: list[str] = field(default_factory=list)   # the text of each <style> element
    styles: list[str] = field(default_factory=list)         # every style="" attribute
    text: str = ""                                          # all text of <body>, hidden included


def read_page(html: str) -> Page:
    parser = _Reader()
    parser.feed(html)
    parser.close()
    page = parser.page
    page.text = "".join(parser.text)
    return page


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.text: list[str] = []
        self.open: list[tuple[str, bool]] = []       # (tag, hidden) of open elements
        self.link: dict | None = None
        self.in_style = False
        self.in_body = False

    @property
    def hidden(self) -> bool:
        return any(hidden for _, hidden in self.open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "style" in values:
            self.page.styles.append(values["style"])
        if tag == "body":
            self.in_body = True
        elif tag == "style":
            self.in_style = True
            self.page.style_blocks.append("")
        elif tag == "img":
            self.page.images.append(values)
        elif tag == "a" and "href" in values:
            self.link = {"href": values["href"], "text": [], "hidden": self.hidden}
        if tag not in VOID:
            self.open.append((tag, bool(HIDDEN_STYLE.search(values.get("style", "")))))
        if tag not in ("a", "span", "strong", "em", "b", "i"):
            self.text.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        elif tag == "a" and self.link is not None:
            link = self.link
            self.page.links.append(PageLink(link["href"], re.sub(r"\s+", " ", "".join(link["text"])).strip(),
                                            link["hidden"]))
            self.link = None
        if any(name == tag for name, _ in self.open):
            while self.open and self.open.pop()[0] != tag:
                pass
        if tag not in ("a", "span", "strong", "em", "b", "i"):
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.page.style_blocks[-1] += data
            return
        if self.link is not None:
            self.link["text"].append(data)
        if self.in_body:
            self.text.append(data)
