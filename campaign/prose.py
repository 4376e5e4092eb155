"""Markdown bodies, written by the editor, as HTML for the email and as plain text for its twin.

Raw HTML in Markdown is not allowed (markdown-it escapes it), so content can
never inject markup. The plain text keeps the structure a reader needs:
paragraphs, list items, and each link's URL written out after its text.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

TEXT_WIDTH = 72


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def to_html(markdown: str) -> Markup:
    """HTML for a Markdown body; safe to place in an autoescaped template."""
    return Markup(_parser().render(markdown).strip())


def to_text(markdown: str, width: int = TEXT_WIDTH) -> str:
    """Readable plain text for a Markdown body: wrapped paragraphs, '- ' items, 'text (url)' links."""
    blocks: list[tuple[str, str]] = []   # (kind, text): kind is "item" or "block"
    lists: list[list] = []               # per open list: [marker, next number]
    item_prefix = ""
    in_heading = False
    for token in _parser().parse(markdown):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            ordered = token.type == "ordered_list_open"
            lists.append(["#" if ordered else "-", int(token.attrs.get("start") or 1)])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "list_item_open":
            marker = lists[-1]
            item_prefix = f"{marker[1]}. " if marker[0] == "#" else "- "
            marker[1] += 1
        elif token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline":
            text = _inline_text(token)
            if in_heading:
                blocks.append(("block", text.upper()))
            elif lists:
                indent = "  " * (len(lists) - 1)
                lead = indent + (item_prefix or "  ")
                blocks.append(("item", _wrap(text, width, lead, indent + " " * len(lead.lstrip(" ")))))
                item_prefix = ""
            else:
                blocks.append(("block", _wrap(text, width, "", "")))
        elif token.type in ("fence", "code_block"):
            blocks.append(("block", token.content.rstrip("\n")))
        elif token.type == "hr":
            blocks.append(("block", "-" * 20))
    return _join_blocks(blocks)


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    link_stack: list[tuple[str, int]] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content or str(child.attrs.get("alt", "")))
        elif child.type == "link_open":
            link_stack.append((str(child.attrs.get("href", "")), len(parts)))
        elif child.type == "link_close" and link_stack:
            href, start = link_stack.pop()
            label = "".join(parts[start:]).strip()
            if href and href != label:
                parts.append(f" ({href})")
    return "".join(parts).strip()


def _wrap(text: str, width: int, first: str, rest: str) -> str:
    lines = []
    for index, line in enumerate(text.split("\n")):
        lines.append(textwrap.fill(
            line, width=width,
            initial_indent=first if index == 0 else rest, subsequent_indent=rest,
            break_long_words=False, break_on_hyphens=False,
        ))
    return "\n".join(lines)


def _join_blocks(blocks: list[tuple[str, str]]) -> str:
    """Blocks apart by a blank line; consecutive list items stay together."""
    out: list[str] = []
    previous = ""
    for kind, text in blocks:
        if out and not (kind == "item" and previous == "item"):
            out.append("")
        out.append(text)
        previous = kind
    return "\n".join(out)
