"""The SendGrid provider with the real `sendgrid` client, against a local mail/send server.

Every request body is validated by the server against the vendored OpenAPI
schema (skipped, with the reason recorded, only where ../shared is absent).
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import time
from collections import Counter

import pytest

from campaign.errors import ProviderAuthError, ProviderError, TransientProviderError
from campaign.providers import Batch, Status, batches, make_provider
from campaign.providers.sendgrid import retry_after
from provider_support import (
    INJECTION_NAME,
    TRICKY_NAME,
    envelope,
    envelopes,
    provider_settings,
    rendered_issue,
)
from servers import sendgrid_server as sendgrid_server_module
from servers.sendgrid_server import Fault, SendGridServer


@pytest.fixture
def settings(sendgrid_settings):
    return sendgrid_settings


@pytest.fixture
def provider(sendgrid_provider):
    return sendgrid_provider


def batch(recipients, batch_id="b-1", **kwargs):
    return Batch(issue=rendered_issue(), envelopes=recipients, batch_id=batch_id, lists=("members",), **kwargs)


def only_request(server):
    (request,) = server.mail_sends()
    assert request.answer in (200, 202), request.errors
    return request.body


def assert_valid(server):
    """Every request the server saw passed the schema (when the schema is there)."""
    assert all(not request.errors for request in server.mail_sends())


# --- what goes out -------------------------------------------------------------------------

def test_each_recipient_is_one_personalization_and_all_are_accepted_with_the_message_id(sendgrid_server, provider):
    recipients = envelopes(5)
    results = provider.send(batch(recipients))
    body = only_request(sendgrid_server)
    assert [p["to"] for p in body["personalizations"]] == [
        [{"email": r.email, "name": r.name}] for r in recipients
    ]
    assert all(set(p) <= {"to", "substitutions", "headers", "custom_args"} for p in body["personalizations"])
    message_id = sendgrid_server.mail_sends()[0].message_id
    assert [(r.email, r.status, r.message_id) for r in results] == [
        (r.email, Status.ACCEPTED, message_id) for r in recipients
    ]


def test_2500_recipients_go_in_3_requests_with_no_address_twice(sendgrid_server, provider):
    recipients = envelopes(2500)
    results = []
    for number, chunk in enumerate(batches(recipients, provider.info.max_batch_size)):
        results += provider.send(batch(chunk, batch_id=f"b-{number}"))
    requests = sendgrid_server.mail_sends()
    assert [len(r.body["personalizations"]) for r in requests] == [1000, 1000, 500]
    for request in requests:
        assert len(request.recipients) == len(set(request.recipients))
        assert all(len(p["to"]) == 1 for p in request.body["personalizations"])
    assert Counter(sendgrid_server.delivered()) == Counter(r.email for r in recipients)
    assert [r.status for r in results] == [Status.ACCEPTED] * 2500
    assert_valid(sendgrid_server)


def test_content_goes_once_with_separate_tags_for_html_text_and_subject(sendgrid_server, provider):
    provider.send(batch([envelope("ana@example.org", TRICKY_NAME), envelope("kim@example.org", "")]))
    body = only_request(sendgrid_server)
    text, html = body["content"]
    assert (text["type"], html["type"]) == ("text/plain", "text/html")
    assert html["value"] == rendered_issue().html.source
    assert "Dear [[name|colleague:t]]," in text["value"] and "[[name|colleague]]" not in text["value"]
    assert body["subject"] == "WeGO Newsletter 30 for [[name|colleague:s]]"
    ana, kim = (p["substitutions"] for p in body["personalizations"])
    assert ana["[[name|colleague]]"] == "Ana &amp; &lt;b&gt;Bob&lt;/b&gt;"
    assert ana["[[name|colleague:t]]"] == TRICKY_NAME
    assert ana["[[name|colleague:s]]"] == TRICKY_NAME
    assert kim["[[name|colleague]]"] == kim["[[name|colleague:t]]"] == "colleague"
    assert all(isinstance(value, str) for value in ana.values())


def test_filling_the_tags_the_way_sendgrid_does_gives_each_recipient_their_own_message(sendgrid_server, provider):
    provider.send(batch([envelope("ana@example.org", TRICKY_NAME, city="Seoul & Busan")]))
    body = only_request(sendgrid_server)
    substitutions = body["personalizations"][0]["substitutions"]

    def fill(value):
        for tag, replacement in substitutions.items():
            value = value.replace(tag, replacement)
        return value

    text, html = (fill(part["value"]) for part in body["content"])
    assert "Dear Ana & <b>Bob</b>,\n\nNews from Seoul & Busan." in text
    assert "<p>Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt;,</p><p>News from Seoul &amp; Busan.</p>" in html
    assert 'href="https://wego.example.org/newsletter/unsubscribe?t=tok-ana"' in html
    assert fill(body["subject"]) == "WeGO Newsletter 30 for Ana & <b>Bob</b>"
    assert "[[" not in text + html


def test_every_personalization_carries_both_unsubscribe_headers(sendgrid_server, provider):
    recipients = envelopes(20)
    provider.send(batch(recipients))
    for recipient, personalization in zip(recipients, only_request(sendgrid_server)["personalizations"]):
        assert personalization["headers"] == {
            "List-Unsubscribe": f"<{recipient.unsubscribe_url}>, "
                                "<mailto:unsubscribe@wego.example.org?subject=unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }


def test_categories_and_custom_args_carry_ids_never_addresses(sendgrid_server, provider):
    recipients = envelopes(3)
    provider.send(batch(recipients, batch_id="issue-30-batch-0007"))
    body = only_request(sendgrid_server)
    assert "custom_args" not in body  # the batch's union of lists was wrong for most of its recipients
    assert [p["custom_args"] for p in body["personalizations"]] == [
        {"campaign_issue": "30", "campaign_lists": "members"}] * 3
    assert body["categories"] == ["issue-30"]
    tracking = json.dumps([[p["custom_args"] for p in body["personalizations"]], body["categories"]])
    assert "@" not in tracking
    assert body["from"] == {"email": "newsletter@wego.example.org", "name": "WeGO Secretariat"}
    assert body["reply_to"] == {"email": "secretariat@wego.example.org"}
    assert body["headers"] == {"List-Id": '"WeGO e-Newsletter" <newsletter.wego.example.org>',
                               "Feedback-ID": "issue-30:newsletter.wego.example.org:wego.example.org"}
    assert "mail_settings" not in body


def test_sandbox_batches_ask_for_sendgrid_sandbox_mode(sendgrid_server, provider):
    provider.send(batch(envelopes(2), sandbox=True))
    assert only_request(sendgrid_server)["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_names_lose_separators_and_line_breaks_and_inject_nothing(sendgrid_server, provider):
    provider.send(batch([envelope("eve@example.org", INJECTION_NAME),
                         envelope("kim@example.org", "Kim, Min-su; Seoul")]))
    eve, kim = (p["to"][0] for p in only_request(sendgrid_server)["personalizations"])
    assert eve == {"email": "eve@example.org", "name": "Eve Bcc: x@example.com"}
    assert kim == {"email": "kim@example.org", "name": "Kim Min-su Seoul"}
    subject = only_request(sendgrid_server)["personalizations"][0]["substitutions"]["[[name|colleague:s]]"]
    assert "\r" not in subject and "\n" not in subject


def test_a_batch_with_one_address_twice_is_refused_before_any_request(sendgrid_server, provider):
    with pytest.raises(ProviderError, match="appears twice"):
        provider.send(batch([envelope("ana@example.org", "Ana"), envelope("ANA@example.org", "Ana")]))
    assert sendgrid_server.mail_sends() == []


def test_a_batch_over_1000_is_refused_before_any_request(sendgrid_server, provider):
    with pytest.raises(ProviderError, match="at most 1000"):
        provider.send(batch(envelopes(1001)))
    assert sendgrid_server.mail_sends() == []


# --- answers and failures --------------------------------------------------------------------

def test_a_400_naming_no_recipient_refuses_the_request_for_everyone_with_sendgrid_own_message(sendgrid_server,
                                                                                             provider):
    sendgrid_server.script(Fault.bad_request("The from email does not contain a valid address.", "from.email"))
    results = provider.send(batch(envelopes(3)))
    assert {r.status for r in results} == {Status.REFUSED}  # the request, not the addresses: safe to resend
    assert all("The from email does not contain a valid address. (field: from.email)" in r.error
               for r in results)


def test_an_invalid_body_is_rejected_by_the_schema_with_its_field(sendgrid_server, provider, settings):
    if sendgrid_server.validation_skipped:
        pytest.skip(sendgrid_server.validation_skipped)
    issue = rendered_issue()
    empty_subject = Batch(issue=issue.__class__(30, issue.subject.__class__(""), issue.html, issue.text, ""),
                          envelopes=envelopes(1), batch_id="b")
    (result,) = provider.send(empty_subject)
    assert result.status == Status.REFUSED
    assert "field: subject" in result.error


def test_401_stops_with_a_message_about_the_key_that_never_shows_the_key(sendgrid_server, tmp_path):
    secret = "SG.wrong-key-SECRET-VALUE-123"
    settings = provider_settings(tmp_path, SENDGRID_API_URL=sendgrid_server.url, SENDGRID_API_KEY=secret)
    with pytest.raises(ProviderAuthError) as raised:
        make_provider("sendgrid", settings).send(batch(envelopes(2)))
    assert "SendGrid rejected the API key (401): check SENDGRID_API_KEY" in str(raised.value)
    assert secret not in str(raised.value) and "SECRET" not in repr(raised.value)
    assert sendgrid_server.delivered() == []


def test_403_stops_too(sendgrid_server, provider):
    sendgrid_server.script(Fault.unauthorized(403))
    with pytest.raises(ProviderAuthError, match=r"\(403\)"):
        provider.send(batch(envelopes(1)))


def test_a_missing_api_key_stops_before_any_request(sendgrid_server, tmp_path):
    settings = provider_settings(tmp_path, SENDGRID_API_URL=sendgrid_server.url)
    with pytest.raises(ProviderAuthError, match="SENDGRID_API_KEY is not set"):
        make_provider("sendgrid", settings)
    assert sendgrid_server.requests == []


def test_429_is_transient_with_the_wait_from_retry_after(sendgrid_server, provider):
    sendgrid_server.script(Fault.rate_limited(retry_after=7))
    with pytest.raises(TransientProviderError, match="429") as raised:
        provider.send(batch(envelopes(2)))
    assert raised.value.retry_after == 7


def test_429_without_retry_after_waits_until_the_rate_limit_reset(sendgrid_server, provider):
    sendgrid_server.script(Fault.rate_limited(retry_after=None, reset_in=30))
    with pytest.raises(TransientProviderError) as raised:
        provider.send(batch(envelopes(2)))
    assert 27 <= raised.value.retry_after <= 31


def test_retry_after_reads_seconds_http_dates_and_unix_resets():
    now = 1_800_000_000.0
    assert retry_after({"Retry-After": "12"}, now=lambda: now) == 12
    http_date = email.utils.formatdate(now + 10, usegmt=True)
    assert retry_after({"Retry-After": http_date}, now=lambda: now) == pytest.approx(10)
    assert retry_after({"X-RateLimit-Reset": str(int(now) + 42)}, now=lambda: now) == 42
    assert retry_after({"X-RateLimit-Reset": str(int(now) - 5)}, now=lambda: now) == 0
    assert retry_after({}, now=lambda: now) is None


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_transient(sendgrid_server, provider, status):
    sendgrid_server.script(Fault.server_error(status))
    with pytest.raises(TransientProviderError, match=f"{status}"):
        provider.send(batch(envelopes(2)))
    sendgrid_server.script()
    assert {r.status for r in provider.send(batch(envelopes(2)))} == {Status.ACCEPTED}


def test_a_timeout_after_sending_is_unknown_for_every_recipient_and_names_the_host(sendgrid_server, tmp_path):
    settings = provider_settings(tmp_path, sendgrid_timeout=0.3, SENDGRID_API_URL=sendgrid_server.url,
                                 SENDGRID_API_KEY=sendgrid_server.api_key)
    sendgrid_server.script(Fault.timeout(seconds=1.5))
    started = time.monotonic()
    results = make_provider("sendgrid", settings).send(batch(envelopes(3)))
    assert time.monotonic() - started < 1.2  # the [sendgrid] timeout setting is used
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert all(f"127.0.0.1:{sendgrid_server.port}" in r.error for r in results)


def test_a_dropped_connection_after_sending_is_unknown(sendgrid_server, provider):
    sendgrid_server.script(Fault.drop(delivered=True))
    results = provider.send(batch(envelopes(4)))
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert all("may or may not" in r.error for r in results)


def test_connection_refused_is_transient_and_names_the_host(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = provider_settings(tmp_path, SENDGRID_API_URL=f"http://127.0.0.1:{port}",
                                 SENDGRID_API_KEY="SG.some-key")
    with pytest.raises(TransientProviderError, match=f"cannot reach SendGrid at 127.0.0.1:{port}"):
        make_provider("sendgrid", settings).send(batch(envelopes(1)))


def test_an_unknown_host_is_transient_and_names_the_host(tmp_path):
    settings = provider_settings(tmp_path, SENDGRID_API_URL="https://sendgrid.invalid",
                                 SENDGRID_API_KEY="SG.some-key")
    with pytest.raises(TransientProviderError, match="sendgrid.invalid"):
        make_provider("sendgrid", settings).send(batch(envelopes(1)))


def test_a_wrong_api_url_says_so(sendgrid_server, tmp_path):
    settings = provider_settings(tmp_path, SENDGRID_API_URL=sendgrid_server.url + "/wrong",
                                 SENDGRID_API_KEY=sendgrid_server.api_key)
    with pytest.raises(ProviderError, match="404.*SENDGRID_API_URL"):
        make_provider("sendgrid", settings).send(batch(envelopes(1)))


# --- the key never leaks -----------------------------------------------------------------------

def test_the_api_key_never_reaches_the_log_even_at_debug(sendgrid_server, tmp_path, caplog):
    secret = sendgrid_server.api_key
    settings = provider_settings(tmp_path, SENDGRID_API_URL=sendgrid_server.url, SENDGRID_API_KEY=secret)
    caplog.set_level(logging.DEBUG)
    provider = make_provider("sendgrid", settings)
    provider.send(batch(envelopes(2)))
    sendgrid_server.script(Fault.bad_request(field_name="from.email"), Fault.server_error(503), Fault.unauthorized())
    provider.send(batch(envelopes(2)))
    for _ in range(2):
        with pytest.raises(ProviderError) as raised:
            provider.send(batch(envelopes(2)))
        assert secret not in str(raised.value)
    assert sendgrid_server.mail_sends()[0].headers["Authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text


def test_the_api_key_is_redacted_even_when_the_http_logger_is_forced_to_debug(sendgrid_server, settings, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="python_http_client.client")
    provider = make_provider("sendgrid", settings)
    logging.getLogger("python_http_client.client").setLevel(logging.DEBUG)
    provider.send(batch(envelopes(1)))
    assert "HEADERS" in caplog.text  # the library did log at DEBUG...
    assert sendgrid_server.api_key not in caplog.text  # ...but not the key
    assert "Bearer [redacted]" in caplog.text


def test_the_body_reaches_the_http_log_as_its_size_never_as_the_addresses(sendgrid_server, settings, caplog):
    # python-http-client formats every request's data into a DEBUG message, even when nothing logs
    # it: the repr of a megabyte body, ~3 ms a request. The body it is given formats as its size.
    caplog.set_level(logging.DEBUG, logger="python_http_client.client")
    provider = make_provider("sendgrid", settings)
    logging.getLogger("python_http_client.client").setLevel(logging.DEBUG)
    sent = envelopes(3)
    provider.send(batch(sent))
    arrived = sendgrid_server.mail_sends()[0]
    payload = [record.getMessage() for record in caplog.records if record.getMessage().startswith("PAYLOAD")]
    assert payload == [f"PAYLOAD: <{len(arrived.raw)} bytes of JSON>"]
    assert not any(envelope.email in caplog.text for envelope in sent)
    assert arrived.recipients == [envelope.email for envelope in sent]


def test_the_test_server_validates_against_the_vendored_schema_or_says_why_not(monkeypatch, tmp_path):
    with SendGridServer() as server:
        if server.validator is None:
            assert "../shared is absent" in server.validation_skipped
        else:
            assert server.validation_skipped == ""
    monkeypatch.setattr(sendgrid_server_module, "SCHEMA_FILE", tmp_path / "absent.json")
    validator, reason = sendgrid_server_module.load_validator.__wrapped__()
    assert validator is None and "NOT schema-validated" in reason
