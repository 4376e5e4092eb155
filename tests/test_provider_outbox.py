"""The outbox: a rehearsal that writes standard mbox, and the provider factory."""

from __future__ import annotations

import email.policy
import mailbox

import pytest

from campaign.errors import ProviderAuthError, UsageError
from campaign.providers import Batch, Status, batches, make_provider, provider_info
from provider_support import TRICKY_NAME, envelope, envelopes, provider_settings, rendered_issue


@pytest.fixture
def settings(tmp_path):
    return provider_settings(tmp_path)


def batch(recipients, batch_id="b-1"):
    return Batch(issue=rendered_issue(), envelopes=recipients, batch_id=batch_id, lists=("members",))


def read_mbox(path):
    box = mailbox.mbox(path, create=False)
    try:
        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]
    finally:
        box.close()


def test_outbox_is_a_rehearsal(settings, tmp_path):
    provider = make_provider("outbox", settings, outbox_path=tmp_path / "outbox.mbox")
    assert provider.info.rehearsal is True
    assert provider_info("outbox").rehearsal is True
    assert provider_info("sendgrid").rehearsal is provider_info("smtp").rehearsal is False


def test_every_recipient_lands_in_the_mbox_once_and_is_accepted_with_its_message_id(settings, tmp_path):
    path = tmp_path / "build" / "issue-30" / "outbox.mbox"
    provider = make_provider("outbox", settings, outbox_path=path)
    results = []
    for chunk in batches(envelopes(25), 10):
        results += provider.send(batch(chunk))
    provider.close()
    messages = read_mbox(path)
    assert [m["To"].addresses[0].addr_spec for m in messages] == [r.email for r in envelopes(25)]
    assert [r.message_id for r in results] == [m["Message-ID"] for m in messages]
    assert {r.status for r in results} == {Status.ACCEPTED}


def test_the_mbox_holds_complete_messages_a_mail_program_can_open(settings, tmp_path):
    path = tmp_path / "outbox.mbox"
    provider = make_provider("outbox", settings, outbox_path=path)
    provider.send(batch([envelope("ana@example.org", TRICKY_NAME)]))
    provider.close()
    raw = path.read_bytes()
    assert raw.startswith(b"From newsletter@wego.example.org ")
    assert b"\r\n" not in raw  # mbox uses plain newlines
    (message,) = read_mbox(path)
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt;," in message.get_body(("html",)).get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_second_provider_appends_to_the_same_outbox(settings, tmp_path):
    path = tmp_path / "outbox.mbox"
    for start in (0, 3):
        provider = make_provider("outbox", settings, outbox_path=path)
        provider.send(batch(envelopes(3, start=start)))
        provider.close()
    assert len(read_mbox(path)) == 6


def test_a_body_line_starting_with_from_does_not_split_the_message(settings, tmp_path):
    issue = rendered_issue()
    issue = issue.__class__(30, issue.subject, issue.html, issue.text.__class__("Hello\nFrom the secretariat\n"), "")
    path = tmp_path / "outbox.mbox"
    provider = make_provider("outbox", settings, outbox_path=path)
    provider.send(Batch(issue=issue, envelopes=envelopes(2), batch_id="b"))
    provider.close()
    assert len(read_mbox(path)) == 2


def test_an_unknown_provider_name_lists_the_choices(settings):
    with pytest.raises(UsageError, match="outbox, smtp, sendgrid"):
        make_provider("mailchimp", settings)
    with pytest.raises(UsageError):
        provider_info("mailchimp")


def test_provider_limits_live_in_the_providers(settings):
    assert provider_info("sendgrid").max_batch_size == 1000
    assert provider_info("smtp").max_batch_size == 100
    assert make_provider("smtp", settings).info == provider_info("smtp")


def test_sendgrid_without_a_key_fails_at_construction(settings):
    with pytest.raises(ProviderAuthError, match="SENDGRID_API_KEY"):
        make_provider("sendgrid", settings)


def test_batches_split_in_order_and_refuse_a_size_below_one():
    assert [len(chunk) for chunk in batches(range(2500), 1000)] == [1000, 1000, 500]
    assert list(batches(iter([1, 2, 3]), 2)) == [[1, 2], [3]]
    assert list(batches([], 5)) == []
    with pytest.raises(UsageError):
        list(batches([1], 0))
