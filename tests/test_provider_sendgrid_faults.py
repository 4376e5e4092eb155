"""SendGrid's answers, taken strictly: for each fault, what arrived per address at the stand-in.

The real `sendgrid` client talks to tests/servers/sendgrid_server.py, which
validates every body against the vendored OpenAPI schema (when ../shared is
there) and counts what SendGrid would have mailed, per address.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from campaign.errors import ProviderError, TransientProviderError
from campaign.providers import Batch, Status
from campaign.providers import sendgrid_payload
from campaign.providers.sendgrid_payload import MAX_SUBSTITUTIONS_BYTES, Payload
from provider_support import envelope, envelopes, rendered_issue
from servers.sendgrid_server import Fault


def batch(recipients, **kwargs):
    return Batch(issue=rendered_issue(), envelopes=recipients, batch_id="b-1", lists=("members",), **kwargs)


def statuses(results):
    return {result.email: result.status for result in results}


# --- 504 after accepting, and the other ambiguous answers ---------------------------------------

@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_error_after_the_batch_was_accepted_is_unknown_and_never_posted_again(sendgrid_server, sendgrid_provider, status):
    recipients = envelopes(20)
    sendgrid_server.script(Fault.accepted_then(status))
    results = sendgrid_provider.send(batch(recipients))
    assert set(statuses(results).values()) == {Status.UNKNOWN}
    assert f"answered {status} after the batch was sent" in results[0].error
    assert len(sendgrid_server.mail_sends()) == 1
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients}


@pytest.mark.parametrize("fault, said", [
    (Fault("status", 200), "answered 200, not 202"),
    (Fault("status", 202), "202 without an X-Message-Id"),
    (Fault("status", 204), "answered 204"),
])
def test_a_success_that_is_not_sendgrids_own_counts_nobody_as_accepted(sendgrid_server, sendgrid_provider, fault, said):
    sendgrid_server.script(fault)
    results = sendgrid_provider.send(batch(envelopes(3)))
    assert set(statuses(results).values()) == {Status.UNKNOWN}
    assert said in results[0].error


def test_a_sandbox_batch_is_accepted_only_on_200_and_delivers_nothing(sendgrid_server, sendgrid_provider):
    assert set(statuses(sendgrid_provider.send(batch(envelopes(3), sandbox=True))).values()) == {Status.ACCEPTED}
    assert sendgrid_server.mail_sends()[0].answer == 200 and sendgrid_server.delivered() == []
    sendgrid_server.script(Fault("status", 202, {"X-Message-Id": "m-1"}))  # sandbox mode ignored: really sent?
    assert set(statuses(sendgrid_provider.send(batch(envelopes(3), sandbox=True))).values()) == {Status.UNKNOWN}


# --- redirects ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307])
def test_a_redirect_is_never_followed_and_nobody_is_accepted(sendgrid_server, sendgrid_provider, status):
    sendgrid_server.script(Fault.redirect(status))
    with pytest.raises(ProviderError, match=f"answered {status}, a redirect to /moved.*SENDGRID_API_URL"):
        sendgrid_provider.send(batch(envelopes(5)))
    assert [(r.method, r.path) for r in sendgrid_server.requests] == [("POST", "/v3/mail/send")]
    assert sendgrid_server.delivered() == []


# --- a 400 naming one recipient -------------------------------------------------------------------

def test_a_400_naming_one_address_rejects_it_and_the_other_999_go_out_at_once(sendgrid_server, sendgrid_provider):
    recipients = envelopes(1000)
    bad = recipients[523].email
    sendgrid_server.refuse_address(bad)
    results = statuses(sendgrid_provider.send(batch(recipients)))
    first, second = sendgrid_server.mail_sends()
    assert (first.answer, second.answer) == (400, 202)
    assert first.errors[0]["field"] == "personalizations.523.to.0.email"
    assert results.pop(bad) == Status.REJECTED
    assert set(results.values()) == {Status.ACCEPTED} and len(results) == 999
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients if r.email != bad}


def test_the_rejected_recipient_carries_sendgrids_message_and_field(sendgrid_server, sendgrid_provider):
    recipients = envelopes(4)
    sendgrid_server.refuse_address(recipients[2].email, "Does not contain a valid address.")
    rejected = [r for r in sendgrid_provider.send(batch(recipients)) if r.status == Status.REJECTED]
    assert [r.error for r in rejected] == [
        "SendGrid refused this recipient (400): Does not contain a valid address. "
        "(field: personalizations.2.to.0.email)"]


def test_several_bad_addresses_each_cost_only_themselves(sendgrid_server, sendgrid_provider):
    recipients = envelopes(50)
    bad = {recipients[0].email, recipients[17].email, recipients[49].email}
    for address in bad:
        sendgrid_server.refuse_address(address)
    results = statuses(sendgrid_provider.send(batch(recipients)))
    assert {email for email, status in results.items() if status == Status.REJECTED} == bad
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients if r.email not in bad}
    assert len(sendgrid_server.mail_sends()) == 2


def test_a_429_when_posting_the_rest_again_leaves_the_whole_batch_to_the_retry(sendgrid_server, sendgrid_provider):
    sendgrid_server.script(Fault.bad_request("Does not contain a valid address.", "personalizations.3.to.0.email"),
                           Fault.rate_limited(retry_after=1))
    with pytest.raises(TransientProviderError):
        sendgrid_provider.send(batch(envelopes(10)))   # nothing of it went out: retrying all of it mails nobody twice
    assert sendgrid_server.delivered() == []


# --- 413 and the sizes checked before sending -------------------------------------------------------

def test_a_413_splits_the_batch_in_halves_until_each_part_fits(sendgrid_server, sendgrid_provider, sendgrid_settings):
    recipients = envelopes(1000)
    whole = len(json.dumps(Payload(batch(recipients), sendgrid_settings).body(recipients)).encode())
    sendgrid_server.max_body_bytes = whole // 3
    results = sendgrid_provider.send(batch(recipients))
    assert set(statuses(results).values()) == {Status.ACCEPTED}
    answers = [request.answer for request in sendgrid_server.mail_sends()]
    assert answers.count(413) == 3 and answers.count(202) == 4     # 1000 -> 500 -> 250 x 4
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients}


def test_after_part_of_a_batch_went_out_a_failure_of_the_rest_never_raises(sendgrid_server, sendgrid_provider):
    recipients = envelopes(10)
    sendgrid_server.script(Fault.server_error(413), Fault("status", 202, {"X-Message-Id": "m-1"}, delivered=True),
                           Fault.rate_limited(retry_after=1))
    results = statuses(sendgrid_provider.send(batch(recipients)))
    assert [results[r.email] for r in recipients] == [Status.ACCEPTED] * 5 + [Status.FAILED] * 5
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients[:5]}


def test_a_batch_over_the_request_size_limit_is_split_before_sending(sendgrid_server, sendgrid_provider, sendgrid_settings,
                                                                     monkeypatch):
    recipients = envelopes(40)
    payload = Payload(batch(recipients), sendgrid_settings)
    monkeypatch.setattr(sendgrid_payload, "MAX_REQUEST_BYTES", payload.size(recipients[:12]))
    results = sendgrid_provider.send(batch(recipients))
    assert set(statuses(results).values()) == {Status.ACCEPTED}
    assert [len(r.recipients) for r in sendgrid_server.mail_sends()] == [10] * 4   # 40 -> 20 -> 10, no 413
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients}


def test_the_size_measured_before_sending_is_the_size_sent(sendgrid_settings):
    recipients = envelopes(7) + [envelope("ana@example.org", "Ana Muñoz & Co")]
    payload = Payload(batch(recipients), sendgrid_settings)
    assert payload.size(recipients) == len(json.dumps(payload.body(recipients)).encode("utf-8"))


def test_the_body_joined_from_pieces_is_the_body_json_dumps_writes(sendgrid_settings, sendgrid_server,
                                                                   sendgrid_provider):
    recipients = envelopes(7) + [envelope("ana@example.org", "Ana Muñoz & Co <x@y>\r\nBcc: z@y")]
    payload = Payload(batch(recipients), sendgrid_settings)
    sent = payload.body_json(recipients)
    assert sent == json.dumps(payload.body(recipients)) and len(sent.encode("utf-8")) == payload.size(recipients)
    assert sent.isascii()
    sendgrid_provider.send(batch(recipients))
    (request,) = sendgrid_server.mail_sends()
    assert json.loads(request.raw) == payload.body(recipients)


def test_a_recipient_over_a_sendgrid_limit_is_refused_by_line_and_the_rest_go_out(sendgrid_server, sendgrid_provider):
    recipients = envelopes(5)
    long_city = replace(recipients[2], fields={**recipients[2].fields, "city": "x" * MAX_SUBSTITUTIONS_BYTES},
                        line=7)
    recipients[2] = long_city
    results = sendgrid_provider.send(batch(recipients))
    refused = [r for r in results if r.status == Status.REFUSED]
    assert [r.email for r in refused] == [long_city.email]
    assert refused[0].error.startswith(f"recipients line 7 ({long_city.email}): its merge values take")
    assert "over SendGrid's 10,000 per recipient" in refused[0].error
    assert sendgrid_server.delivered_count() == {r.email: 1 for r in recipients if r is not long_city}
    assert sendgrid_server.mail_sends()[0].answer == 202
