"""The dry run's promises, held against the plain way of doing it: personalise every message in full.

The dry run does not build every message (see campaign/dry_run.py): these tests hold
what it reports to what building every message would report. The manifest of a
fixture is compared byte for byte with tests/golden/dry-run-manifest.csv, written by
the dry run that built every message (update only with CAMPAIGN_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import csv
import email
import email.policy
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.audience import Audience, Recipient, load_recipients, select_audience
from campaign.dry_run import dry_run
from campaign.errors import ContentError
from campaign.merge import MergeTemplate, escape_html
from campaign.personalize import envelope_for, personalize, recipient_token
from campaign.render import RenderedIssue
from campaign.send.plan import SendOptions
from send_support import make_settings

GOLDEN = Path(__file__).parent / "golden" / "dry-run-manifest.csv"
UPDATE_GOLDEN = os.environ.get("CAMPAIGN_UPDATE_GOLDEN") == "1"

RECIPIENTS = '''\
email,name,organisation,city,country,lists
ana@example.org,Ana & <b>Bob</b>,City of Lima,Lima,Peru,members;embassies
bo@example.org,Bo Lee,"City of Seoul, ""Capital""",Seoul,Korea,members
=cmd@example.org,=HYPERLINK(""x""),Evil,Nowhere,None,members
carla@example.org,Carla Díaz,Embassy of Chile,Seoul,Chile,embassies
dan@example.org,Dan Suppressed,City of Oslo,Oslo,Norway,members
bo@example.org,Bo Lee,City of Seoul,Seoul,Korea,embassies
not-an-address,Nobody,None,None,None,members
eve@example.org,+Eve -Minus @At,Ville de Montréal,Montréal,Canada,members
fay@example.org,,Ciudad de México,,México,members
gus@example.org,Gus O'Neil,Đà Nẵng People's Committee,Đà Nẵng,Việt Nam,embassies
hal@example.org,Hal,City,Town,Land,nobody-list
ida@example.org,Ida 🌆 Ünal,İstanbul Büyükşehir Belediyesi,İstanbul,Türkiye,members
jo@example.org,Jo,Seoul,Seoul,Korea,members
kim@example.org,Kim,Seoul,Seoul,Korea,members
lee@example.org,Lee,Seoul,Seoul,Korea,members
'''
# What the ledger says about some of them (every status the manifest explains).
STATUSES = {"bo@example.org": "accepted", "carla@example.org": "unknown", "eve@example.org": "failed",
            "gus@example.org": "rejected", "ida@example.org": "in_flight", "jo@example.org": "refused",
            "kim@example.org": "skipped", "lee@example.org": "pending"}


def rich_issue() -> RenderedIssue:
    """Every kind of merge field in the HTML: built-in, link, column, with and without a fallback."""
    return RenderedIssue(
        number=30,
        subject=MergeTemplate("News for [[name|colleague]] in [[city|your city]]"),
        html=MergeTemplate('<html><body><a href="[[view_url]]">View</a><p>Dear [[name|colleague]] '
                           '([[email]]), [[organisation]] – [[city|your city]] ✓</p>'
                           '<a href="[[unsubscribe_url]]">Unsubscribe</a> [[token]]</body></html>', markup=True),
        text=MergeTemplate("Dear [[name|colleague]] of [[country]]\n[[unsubscribe_url]]\n"),
        preheader="Smart cities news",
    )


@pytest.fixture
def settings(tmp_path):
    settings = make_settings(tmp_path)
    # '&' and '"' in the links are escaped in the HTML: the sizes must count them
    links = replace(settings.links, unsubscribe_url='https://x.example/u?a=1&b="2"&t={token}',
                    view_url="https://x.example/v/{issue}/{token}?x=<y>")
    return replace(settings, links=links)


def fixture_audience(settings, tmp_path) -> Audience:
    path = tmp_path / "recipients.csv"
    path.write_text(RECIPIENTS, encoding="utf-8")
    return select_audience(load_recipients(path, settings), ("members", "embassies"),
                           {"dan@example.org": ("unsubscribed", "2026-05-02")})


def largest_built(settings, issue: RenderedIssue, audience: Audience) -> int:
    """The plain way: every message personalised in full, its HTML encoded and measured."""
    return max(len(personalize(issue, envelope_for(recipient, settings, issue.number)).html.encode("utf-8"))
               for recipient in audience.recipients)


def test_the_manifest_is_byte_for_byte_the_one_of_building_every_message(settings, tmp_path):
    report = dry_run(settings, rich_issue(), fixture_audience(settings, tmp_path), STATUSES)
    actual = report.manifest.read_bytes()
    if UPDATE_GOLDEN:
        GOLDEN.write_bytes(actual)
    assert GOLDEN.exists(), f"{GOLDEN} missing: run CAMPAIGN_UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == GOLDEN.read_bytes()
    assert (report.would_send, report.skipped, report.excluded) == (6, 5, 4)


def test_the_largest_html_is_the_size_of_the_largest_message_built(settings, tmp_path):
    issue, audience = rich_issue(), fixture_audience(settings, tmp_path)
    assert dry_run(settings, issue, audience, STATUSES).largest_html == largest_built(settings, issue, audience)


def test_the_largest_html_is_exact_for_random_values_the_file_could_not_hold(settings):
    """Values built by hand (control characters, '[[', every escaped character): the size still matches."""
    generator = random.Random(18)
    alphabet = "aZ9 &<>\"'–ñ🌆\u202e\r\n\t.@-=+é"
    recipients = tuple(
        Recipient(email=f"p{n}@example.org", name="".join(generator.choices(alphabet, k=generator.randrange(12))),
                  lists=("members",), line=n + 2,
                  fields={column: "".join(generator.choices(alphabet, k=generator.randrange(30)))
                          for column in ("organisation", "city", "country", "email", "token")})
        for n in range(300))
    audience = Audience(lists=("members",), recipients=recipients, exclusions=())
    issue = rich_issue()
    assert dry_run(settings, issue, audience, {}).largest_html == largest_built(settings, issue, audience)


@pytest.mark.parametrize("template", ["subject", "html", "text"])
def test_a_merge_field_missing_for_one_recipient_fails_the_dry_run_naming_their_line(settings, template):
    """Wherever the field is (subject, HTML or text only), a send would fail on it: so does the dry run."""
    issue = rich_issue()
    issue = replace(issue, **{template: MergeTemplate(getattr(issue, template).source + " [[region]]")})
    recipients = [Recipient(email=f"p{n}@example.org", name=f"P {n}", lists=("members",), line=n + 2,
                            fields={"organisation": "O", "city": "C", "country": "K", "region": "R"})
                  for n in range(5)]
    recipients[3] = replace(recipients[3], fields={"organisation": "O", "city": "C", "country": "K"})
    audience = Audience(lists=("members",), recipients=tuple(recipients), exclusions=())
    with pytest.raises(ContentError, match=r"\[\[region\]\].*p3@example\.org \(recipients line 5\)"):
        dry_run(settings, issue, audience, {})
    assert not (settings.issue_build_dir(30) / "dry-run" / "manifest.csv").exists()


def test_the_samples_are_complete_messages_of_the_first_people_sent(settings, tmp_path):
    report = dry_run(settings, rich_issue(), fixture_audience(settings, tmp_path), STATUSES,
                     SendOptions(resend_unknown=True))
    messages = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in report.samples]
    assert [message["To"].addresses[0].addr_spec for message in messages] == [
        "ana@example.org", "=cmd@example.org", "carla@example.org"]
    html = messages[0].get_body(("html",)).get_content()
    assert "Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt; (ana@example.org), City of Lima" in html
    assert messages[0]["Subject"] == "News for Ana & <b>Bob</b> in Lima"
    assert "Dear Ana & <b>Bob</b> of Peru" in messages[0].get_body(("plain",)).get_content()


def test_every_token_has_the_same_length_and_needs_no_escaping():
    """What largest_html stands on: the link fields differ between people only by a token like this."""
    generator = random.Random(7)
    for _ in range(2000):
        address = "".join(generator.choices("abcXYZ09.+-_ñ", k=generator.randrange(1, 30))) + "@example.org"
        secret = "".join(generator.choices("abc123-_ !ü", k=generator.randrange(1, 40)))
        token = recipient_token(address, secret)
        assert len(token) == 24 and escape_html(token) == token and token.isascii()


def test_with_resend_unknown_the_dry_run_sends_to_rows_a_dead_send_left_in_flight(settings, tmp_path):
    """A send first turns rows left in flight into unknown (RunRecord.start), so --resend-unknown sends them:
    the dry run says so too, as the plan's count (plan_send) does."""
    report = dry_run(settings, rich_issue(), fixture_audience(settings, tmp_path), STATUSES,
                     SendOptions(resend_unknown=True))
    with report.manifest.open(encoding="utf-8-sig") as stream:
        actions = {row[1]: row[4] for row in csv.reader(stream)}
    assert actions["ida@example.org"] == "send" and actions["carla@example.org"] == "send"   # in_flight; unknown
    assert report.would_send == 8
