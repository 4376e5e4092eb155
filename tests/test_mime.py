"""One complete message per recipient: headers right, parts in order, nothing injectable."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import replace
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.mime import UnusableAddress, build_message
from campaign.personalize import Envelope, sample_envelope
from campaign.render import render_issue
from provider_support import INJECTION_NAME, TRICKY_NAME, envelope, provider_settings, rendered_issue


@pytest.fixture
def settings(tmp_path):
    return provider_settings(tmp_path)


def parsed(message):
    """What a receiving server would see: the bytes as sent, parsed again."""
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def build(settings, recipient, **kwargs):
    return build_message(rendered_issue(), recipient, sender=settings.sender, links=settings.links, **kwargs)


def test_message_is_multipart_alternative_with_text_first_then_html_in_utf8(settings):
    message = parsed(build(settings, envelope("ana@example.org", "Ana")))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert "Dear Ana," in parts[0].get_content()
    assert "<p>Dear Ana,</p>" in parts[1].get_content()


def test_headers_name_sender_recipient_reply_to_date_and_list(settings):
    message = parsed(build(settings, envelope("ana@example.org", "Ana Kim")))
    assert message["From"].addresses[0].display_name == "WeGO Secretariat"
    assert message["From"].addresses[0].addr_spec == "newsletter@wego.example.org"
    assert message["To"].addresses[0].display_name == "Ana Kim"
    assert message["To"].addresses[0].addr_spec == "ana@example.org"
    assert message["Reply-To"].addresses[0].addr_spec == "secretariat@wego.example.org"
    assert message["Subject"] == "WeGO Newsletter 30 for Ana Kim"
    assert email.utils.parsedate_to_datetime(message["Date"]) is not None
    # Issue 16: one List-Id for the newsletter (was <issue-30.wego.example.org>, new every issue).
    # These settings have no list_id: the default from the From address applies; the name is newsletter_name.
    assert message["List-Id"] == '"WeGO e-Newsletter" <newsletter.wego.example.org>'
    assert message["Feedback-ID"] == "issue-30:newsletter.wego.example.org:wego.example.org"


def test_every_message_gets_a_unique_message_id_at_the_sender_domain(settings):
    ids = {build(settings, envelope("ana@example.org", "Ana"))["Message-ID"] for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"<[^<>@\s]+@wego\.example\.org>", message_id) for message_id in ids)


def test_unsubscribe_headers_carry_the_token_url_then_the_mailto_unencoded(settings):
    recipient = envelope("ana@example.org", "Ana")
    raw = build(settings, recipient).as_bytes().decode("ascii")
    assert "=?" not in raw.split("List-Unsubscribe:", 1)[1].split("List-Unsubscribe-Post")[0]
    message = parsed(build(settings, recipient))
    assert message["List-Unsubscribe"] == (
        f"<{recipient.unsubscribe_url}>, <mailto:unsubscribe@wego.example.org?subject=unsubscribe>"
    )
    assert "ana@example.org" not in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_test_sends_keep_the_unsubscribe_headers_and_take_a_subject_prefix(settings):
    message = parsed(build(settings, envelope("ana@example.org", "Ana"), subject_prefix="[TEST] "))
    assert message["Subject"].startswith("[TEST] WeGO Newsletter 30")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_html_part_escapes_a_name_and_the_text_part_keeps_it(settings):
    message = parsed(build(settings, envelope("ana@example.org", TRICKY_NAME)))
    text, html = (part.get_content() for part in message.iter_parts())
    assert "Dear Ana & <b>Bob</b>," in text
    assert "Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt;," in html
    assert message["To"].addresses[0].display_name == TRICKY_NAME


def test_a_name_with_crlf_cannot_inject_a_header(settings):
    recipient = envelope("eve@example.org", INJECTION_NAME)
    raw = build(settings, recipient).as_bytes()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^bcc:", header_block)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.org"]
    assert "\n" not in message["Subject"] and "Bcc: x@example.com" in message["Subject"]


def test_non_ascii_names_are_encoded_and_read_back(settings):
    message = build(settings, envelope("jose@example.org", "José Müller 김민수"))
    raw = message.as_bytes()
    raw.decode("ascii")  # headers and bodies are 7-bit on the wire
    assert parsed(message)["To"].addresses[0].display_name == "José Müller 김민수"


def test_long_headers_are_folded_under_78_columns(settings):
    recipient = envelope("ana@example.org", "Ana " + "Very-Long-Family-Name " * 6)
    raw = build(settings, recipient).as_bytes().split(b"\r\n\r\n", 1)[0]
    long_lines = [line for line in raw.split(b"\r\n") if len(line) > 78]
    assert all(line.startswith(b"List-Unsubscribe:") for line in long_lines)  # a URL is never split
    assert parsed(build(settings, recipient))["Subject"].endswith("Very-Long-Family-Name")


@pytest.mark.parametrize("address", ["eve@example.org\r\nBcc: x@example.com", "no-domain", "a@b@c"])
def test_an_address_that_cannot_go_in_a_header_is_refused(settings, address):
    with pytest.raises(UnusableAddress):
        build(settings, Envelope(email=address, name="X", fields=envelope("x@example.org").fields))


def test_the_mailto_subject_carries_the_recipients_token_never_the_address(settings):
    from campaign.personalize import envelope_for
    from campaign.audience import Recipient

    recipient = envelope_for(Recipient(email="ana@example.org", name="Ana", lists=("members",), fields={"city": "Lima"}, line=2),
                             settings, 30)
    message = parsed(build(settings, recipient))
    mailto = re.search(r"<mailto:([^>]+)>", message["List-Unsubscribe"]).group(1)
    assert mailto == f"unsubscribe@wego.example.org?subject=unsubscribe%20{recipient.token}"
    assert recipient.token and "ana@example.org" not in message["List-Unsubscribe"]


def test_list_id_comes_from_configuration_and_is_the_same_for_every_issue(settings):
    configured = replace(settings.sender, list_id="news.example.org", list_name="City News")
    ids = {parsed(build_message(rendered_issue(number), envelope("ana@example.org"), sender=configured,
                                links=settings.links))["List-Id"] for number in (30, 31, 99)}
    assert ids == {'"City News" <news.example.org>'}
    feedback = parsed(build_message(rendered_issue(31), envelope("ana@example.org"), sender=configured,
                                    links=settings.links))["Feedback-ID"]
    assert feedback == "issue-31:news.example.org:wego.example.org"


def test_issue_30_and_fixture_issue_99_carry_the_same_list_id():
    root = Path(__file__).resolve().parents[1]
    project = replace(load_settings(root / "campaign.toml"), token_secret="test-secret")
    fixtures = replace(project, content_dir=root / "tests" / "fixtures")
    headers = [parsed(build_message(render_issue(settings, number), sample_envelope(settings, number),
                                    sender=settings.sender, links=settings.links))
               for settings, number in ((project, 30), (fixtures, 99))]
    assert headers[0]["List-Id"] == headers[1]["List-Id"] == '"WeGO e-Newsletter" <newsletter.wego.example.org>'
    assert [h["Feedback-ID"] for h in headers] == ["issue-30:newsletter.wego.example.org:wego.example.org",
                                                   "issue-99:newsletter.wego.example.org:wego.example.org"]


@pytest.mark.parametrize("template", ["https://wego.example.org/u/{issue}?t={token}", "https://x.example/{token}/{token}",
                                      "https://x.example/u?t={token!r}", "https://x.example/{token:>30}", "https://x.example/none"])
def test_a_link_in_the_merge_values_is_what_the_configured_template_formats_to(template):
    from campaign.personalize import merge_values

    class Links:
        unsubscribe_url = view_url = template

    values = merge_values("ana@example.org", "Ana", {}, issue_number=30, links=Links(), token_secret="s")
    expected = template.format(issue=30, token=values["token"])
    assert values["unsubscribe_url"] == values["view_url"] == expected
