"""A placeholder's fallback is plain words, escaped once for where it lands (issue 13).

`[[name|compañero & amiga]]` in a layout is HTML source once rendered
(`compa&#241;ero &amp; amiga`); filling it must not escape it a second time.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.merge import MergeTemplate, escape_html
from campaign.personalize import personalize, sample_envelope
from campaign.providers.base import Batch
from campaign.providers.sendgrid_payload import Payload
from campaign.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = "compañero & amiga"


@pytest.fixture(scope="module")
def rendered_with_fallback(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    for name in ("campaign.toml", "recipients.example.csv"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "content", project / "content")
    shutil.copytree(ROOT / "layouts", project / "layouts")
    for layout in ("base.mjml.j2", "issue.txt.j2"):
        path = project / "layouts" / layout
        path.write_text(path.read_text(encoding="utf-8").replace("[[name|colleague]]", f"[[name|{FALLBACK}]]"),
                        encoding="utf-8")
    settings = load_settings(project / "campaign.toml", environ={"CAMPAIGN_TOKEN_SECRET": "test-secret"})
    return settings, render_issue(settings, 30)


def test_an_empty_name_reads_the_fallback_words_in_html_and_text(rendered_with_fallback):
    settings, rendered = rendered_with_fallback
    envelope = sample_envelope(settings, 30)
    message = personalize(rendered, replace(envelope, fields={**envelope.fields, "name": ""}))
    greeting = re.search(r"Dear ([^<]*),</p>", message.html)
    assert greeting is not None and html.unescape(greeting.group(1)) == FALLBACK
    assert f"Dear {FALLBACK}," in message.text


def test_sendgrid_gets_the_fallback_escaped_once(rendered_with_fallback):
    settings, rendered = rendered_with_fallback
    envelope = sample_envelope(settings, 30)
    envelope = replace(envelope, fields={**envelope.fields, "name": ""})
    (personalization,) = Payload(Batch(rendered, [envelope], "b"), settings).body([envelope])["personalizations"]
    (html_tag,) = [p.token for p in rendered.html.placeholders if p.name == "name"]
    assert personalization["substitutions"][html_tag] == escape_html(FALLBACK) == "compa&#241;ero &amp; amiga"
    assert personalization["substitutions"][f"[[name|{FALLBACK}:t]]"] == FALLBACK


def test_only_markup_templates_read_their_fallback_as_html():
    assert MergeTemplate("[[name|a &amp; b]]", markup=True).placeholders[0].fallback == "a & b"
    assert MergeTemplate("[[name|a &amp; b]]").placeholders[0].fallback == "a &amp; b"
