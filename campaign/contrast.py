"""WCAG 2.x contrast of every text in a finished email, in the light and the dark scheme.

Pure functions over the final HTML (after premailer, so every colour is inline)
and the theme: `texts()` walks the body and gives, for each run of visible text,
its colour, the background it sits on, its size and weight, and where each
colour comes from (a theme role such as `colors.brand` or `dark.link`, or the
layouts). The dark scheme applies the `@media (prefers-color-scheme: dark)`
rules found in the HTML's <style> blocks, as a client in dark mode would.
`contrast_ratio()` and `required_ratio()` are WCAG 2.x's formulas.

The CSS understood is what the layouts write: inline `color`,
`background-color`/`background`, `font-size` in px, `font-weight`, `display:none`,
the `bgcolor` attribute, and dark rules whose selectors are tags and classes
joined by spaces or `>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from html.parser import HTMLParser

AA_NORMAL, AA_LARGE = 4.5, 3.0
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
BOLD_TAGS = {"b", "strong", "h1", "h2", "h3", "h4", "h5", "h6", "th"}
HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
DARK_MEDIA = re.compile(r"@media[^{]*prefers-color-scheme\s*:\s*dark[^{]*\{", re.IGNORECASE)
RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
DEFAULT_TEXT, DEFAULT_BACKGROUND = "#000000", "#FFFFFF"


def normalise(colour: str) -> str:
    """`#abc` -> `#AABBCC`."""
    digits = colour.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.upper()


def relative_luminance(colour: str) -> float:
    digits = normalise(colour)[1:]
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def is_large(size_px: float, bold: bool) -> bool:
    """WCAG's large text: 18 pt (24 px), or 14 pt (18.67 px) bold."""
    return size_px >= 24 or (bold and size_px >= 18.66)


def required_ratio(size_px: float, bold: bool) -> float:
    return AA_LARGE if is_large(size_px, bold) else AA_NORMAL


@dataclass(frozen=True)
class TextColour:
    """One run of visible text and the colours it is drawn with."""

    scheme: str            # "light" or "dark"
    text: str              # the text, whitespace collapsed
    tag: str               # the element that holds it
    colour: str            # #RRGGBB
    background: str        # #RRGGBB: the nearest background behind it
    size_px: float
    bold: bool
    colour_from: str = ""      # "colors.text", "dark.link (.t a)", or "" when no theme role has it
    background_from: str = ""

    @property
    def ratio(self) -> float:
        return contrast_ratio(self.colour, self.background)

    @property
    def required(self) -> float:
        return required_ratio(self.size_px, self.bold)


@dataclass(frozen=True)
class DarkRule:
    selector: tuple[tuple[str, str, frozenset[str]], ...]   # (combinator, tag, classes), left to right
    source: str                                              # the selector as written
    declarations: tuple[tuple[str, str], ...]


def texts(html: str, theme: dict) -> list[TextColour]:
    """Every visible text run, in the light scheme and then in the dark one."""
    light = _walk(html, ())
    dark = _walk(html, dark_rules(html))
    return _named(light, theme, "light") + _named(dark, theme, "dark")


def below_aa(found: list[TextColour]) -> list[TextColour]:
    return [text for text in found if text.ratio < text.required - 1e-9]


def dark_rules(html: str) -> tuple[DarkRule, ...]:
    """The rules inside `@media (prefers-color-scheme: dark)` of every <style> block."""
    rules: list[DarkRule] = []
    for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL | re.IGNORECASE):
        for match in DARK_MEDIA.finditer(block):
            body = _balanced(block, match.end())
            for selectors, declarations in RULE.findall(body):
                pairs = tuple(_declarations(declarations))
                for selector in selectors.split(","):
                    parsed = _selector(selector.strip())
                    if parsed:
                        rules.append(DarkRule(parsed, selector.strip(), pairs))
    return tuple(rules)


def _balanced(text: str, start: int) -> str:
    depth = 1
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    return text[start:]


def _declarations(text: str) -> list[tuple[str, str]]:
    pairs = []
    for declaration in text.split(";"):
        if ":" in declaration:
            name, value = declaration.split(":", 1)
            pairs.append((name.strip().lower(), value.replace("!important", "").strip()))
    return pairs


def _selector(text: str) -> tuple[tuple[str, str, frozenset[str]], ...]:
    """`.pb > table` -> ((" ", "", {"pb"}), (">", "table", {})); () for what is not tags and classes."""
    parts: list[tuple[str, str, frozenset[str]]] = []
    combinator = " "
    for token in text.replace(">", " > ").split():
        if token == ">":
            combinator = ">"
            continue
        match = re.fullmatch(r"([a-z][a-z0-9]*)?((?:\.[A-Za-z0-9_-]+)*)", token)
        if not match or not token:
            return ()
        classes = frozenset(name for name in match.group(2).split(".") if name)
        parts.append((combinator, match.group(1) or "", classes))
        combinator = " "
    return tuple(parts)


def _matches(rule: DarkRule, path: list[tuple[str, frozenset[str]]]) -> bool:
    """Whether the last element of `path` (root first) matches the rule's selector."""
    return _match_from(rule.selector, len(rule.selector) - 1, path, len(path) - 1)


def _match_from(selector, part: int, path, element: int) -> bool:
    combinator, tag, classes = selector[part]
    element_tag, element_classes = path[element]
    if (tag and tag != element_tag) or not classes <= element_classes:
        return False
    if part == 0:
        return True
    if selector[part][0] == ">":
        return element > 0 and _match_from(selector, part - 1, path, element - 1)
    return any(_match_from(selector, part - 1, path, ancestor) for ancestor in range(element - 1, -1, -1))


@dataclass(frozen=True)
class _State:
    colour: str = DEFAULT_TEXT
    background: str = DEFAULT_BACKGROUND
    size_px: float = 16.0
    bold: bool = False
    hidden: bool = False
    colour_rule: str = ""
    background_rule: str = ""


def _walk(html: str, rules: tuple[DarkRule, ...]) -> list[TextColour]:
    walker = _Walker(rules)
    walker.feed(html)
    walker.close()
    return walker.found


class _Walker(HTMLParser):
    def __init__(self, rules: tuple[DarkRule, ...]) -> None:
        super().__init__(convert_charrefs=True)
        self.rules = rules
        self.in_body = False
        self.stack: list[tuple[str, _State]] = []
        self.path: list[tuple[str, frozenset[str]]] = []
        self.found: list[TextColour] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "body":
            self.in_body = True
        if not self.in_body:
            return
        state = self.stack[-1][1] if self.stack else _State()
        path = self.path + [(tag, frozenset(values.get("class", "").split()))]
        state = self._styled(tag, values, state, path)
        if tag not in VOID:
            self.stack.append((tag, state))
            self.path = path

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                self.path = self.path[:index]
                return

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if not text or not self.stack:
            return
        tag, state = self.stack[-1]
        if state.hidden:
            return
        self.found.append(TextColour("", text, tag, state.colour, state.background, state.size_px, state.bold,
                                     state.colour_rule, state.background_rule))

    def _styled(self, tag: str, values: dict[str, str], state: _State, path) -> _State:
        changes: dict = {"bold": state.bold or tag in BOLD_TAGS}
        if values.get("bgcolor") and HEX.fullmatch(values["bgcolor"].strip()):
            changes.update(background=normalise(values["bgcolor"]), background_rule="")
        declarations = _declarations(values.get("style", ""))
        for rule in self.rules:
            if _matches(rule, path):
                declarations += [(name, value + "\0" + rule.source) for name, value in rule.declarations]
        for name, value in declarations:
            value, _, rule_source = value.partition("\0")
            _apply(name, value, rule_source, changes)
        return replace(state, **changes)


def _apply(name: str, value: str, rule_source: str, changes: dict) -> None:
    colour = HEX.search(value)
    if name == "color" and colour:
        changes.update(colour=normalise(colour.group(0)), colour_rule=rule_source)
    elif name in ("background-color", "background") and colour:
        changes.update(background=normalise(colour.group(0)), background_rule=rule_source)
    elif name == "font-size" and value.endswith("px"):
        try:
            changes["size_px"] = float(value[:-2])
        except ValueError:
            pass
    elif name == "font-weight":
        changes["bold"] = value in ("bold", "bolder") or (value.isdigit() and int(value) >= 600)
    elif name == "display" and value == "none":
        changes["hidden"] = True


def _roles(theme: dict, group: str) -> dict[str, str]:
    """#RRGGBB -> its theme roles, e.g. "colors.surface/colors.on_brand"."""
    roles: dict[str, list[str]] = {}
    for role, value in theme.get(group, {}).items():
        roles.setdefault(normalise(value), []).append(f"{group}.{role}")
    return {colour: "/".join(names) for colour, names in roles.items()}


def _named(found: list[TextColour], theme: dict, scheme: str) -> list[TextColour]:
    """Each colour with the theme role it comes from (a dark rule's colour from `dark`, else `colors`)."""
    light, dark = _roles(theme, "colors"), _roles(theme, "dark")

    def origin(colour: str, rule: str) -> str:
        role = (dark.get(colour) if rule else None) or light.get(colour) or ""
        return f"{role} ({rule})" if role and rule else role

    return [replace(text, scheme=scheme, colour_from=origin(text.colour, text.colour_from),
                    background_from=origin(text.background, text.background_from)) for text in found]
