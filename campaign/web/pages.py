"""The readers' pages: small, readable at 375 px, no JavaScript, every value escaped.

Each page is one Jinja2 template rendered with autoescape on. No page ever shows
a full address: the confirmation page shows it masked (`j•••@example.org`).
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }} · {{ newsletter }}</title>
<style>
  html { -webkit-text-size-adjust: 100%; }
  body { margin: 0; font: 1.0625rem/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
         color: #1b1b1b; background: #f4f6f6; }
  main { box-sizing: border-box; max-width: 36rem; margin: 0 auto; padding: 2rem 1.25rem; background: #fff;
         min-height: 100vh; overflow-wrap: anywhere; }
  .newsletter { margin: 0 0 1.5rem; font-size: .95rem; font-weight: 600; color: #00695f; }
  h1 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 1rem; }
  p { margin: 0 0 1rem; }
  .address { font-weight: 600; }
  button { font: inherit; font-weight: 600; color: #fff; background: #00695f; border: 0; border-radius: 4px;
           padding: .75rem 1.5rem; min-height: 44px; cursor: pointer; }
  button:focus-visible, a:focus-visible { outline: 3px solid #1b3a5c; outline-offset: 2px; }
  a { color: #00695f; }
  ul.issues { list-style: none; padding: 0; margin: 0; }
  ul.issues li { padding: .75rem 0; border-top: 1px solid #d9e0e0; }
  @media (prefers-color-scheme: dark) {
    body { color: #eceff1; background: #101414; } main { background: #182020; }
    .newsletter, a { color: #6fd3c6; } button { background: #00897b; }
  }
</style>
</head>
<body>
<main>
<p class="newsletter">{{ newsletter }}</p>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

_TEMPLATES = {
    "base.html": _BASE,
    "confirm.html": """{% extends "base.html" %}{% block content %}
{% if already %}
<h1>Already unsubscribed</h1>
<p>The address <span class="address">{{ address }}</span> is already unsubscribed. It gets no more issues.</p>
{% else %}
<h1>Unsubscribe?</h1>
<p>Stop sending the {{ newsletter }} to <span class="address">{{ address }}</span>?</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="confirm" value="unsubscribe">
<button type="submit">Unsubscribe</button>
</form>
{% endif %}
{% endblock %}""",
    "done.html": """{% extends "base.html" %}{% block content %}
<h1>You are unsubscribed</h1>
<p><span class="address">{{ address }}</span> will get no more issues of the {{ newsletter }}.</p>
<p>Changed your mind? Reply to any issue and we will add you again.</p>
{% endblock %}""",
    "problem.html": """{% extends "base.html" %}{% block content %}
<h1>{{ title }}</h1>
<p>{{ text }}</p>
{% endblock %}""",
    "archive.html": """{% extends "base.html" %}{% block content %}
<h1>Past issues</h1>
{% if issues %}
<ul class="issues">
{% for issue in issues %}<li><a href="{{ issue.href }}">{{ issue.title }}</a></li>
{% endfor %}</ul>
{% else %}
<p>No issue has been published here yet.</p>
{% endif %}
{% endblock %}""",
}

_ENVIRONMENT = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True))


@dataclass(frozen=True)
class ArchiveEntry:
    number: int
    title: str
    href: str


def confirm_page(newsletter: str, address: str, action: str, already: bool) -> str:
    """The page a GET of an unsubscribe link shows: `address` must already be masked."""
    return _render("confirm.html", title="Unsubscribe", newsletter=newsletter, address=address,
                   action=action, already=already)


def done_page(newsletter: str, address: str) -> str:
    return _render("done.html", title="Unsubscribed", newsletter=newsletter, address=address)


def problem_page(newsletter: str, title: str, text: str) -> str:
    return _render("problem.html", title=title, newsletter=newsletter, text=text)


def archive_page(newsletter: str, issues: list[ArchiveEntry]) -> str:
    return _render("archive.html", title="Past issues", newsletter=newsletter, issues=issues)


def _render(name: str, **values: object) -> str:
    return _ENVIRONMENT.get_template(name).render(**values)
