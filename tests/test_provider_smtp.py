"""The SMTP provider with smtplib against a real aiosmtpd server on loopback."""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import replace

import pytest

from campaign.errors import ProviderAuthError, ProviderConfigError
from campaign.providers import Batch, Status, batches, make_provider
from campaign.providers.smtp import SmtpProvider
from provider_support import INJECTION_NAME, TRICKY_NAME, envelope, envelopes, provider_settings, rendered_issue
from servers.smtp_server import SmtpServer

# the test server asks for a login over plain TCP on loopback, on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def smtp_settings(tmp_path, server, **environ):
    return provider_settings(tmp_path, SMTP_HOST=server.host, SMTP_PORT=str(server.port),
                             SMTP_SECURITY="none", **environ)


@pytest.fixture
def provider(tmp_path, smtp_server):
    provider = SmtpProvider(smtp_settings(tmp_path, smtp_server), sleep=lambda seconds: None)
    yield provider
    provider.close()


def batch(recipients, batch_id="b-1"):
    return Batch(issue=rendered_issue(), envelopes=recipients, batch_id=batch_id, lists=("members",))


def test_each_recipient_gets_one_complete_message_and_is_accepted_with_its_message_id(smtp_server, provider):
    recipients = [envelope("ana@example.org", TRICKY_NAME), envelope("kim@example.org", "Kim")]
    results = provider.send(batch(recipients))
    assert [stored.rcpt_tos for stored in smtp_server.messages] == [["ana@example.org"], ["kim@example.org"]]
    assert {stored.mail_from for stored in smtp_server.messages} == {"newsletter@wego.example.org"}
    ana = smtp_server.messages[0].message
    assert [part.get_content_type() for part in ana.iter_parts()] == ["text/plain", "text/html"]
    text, html = (part.get_content() for part in ana.iter_parts())
    assert "Dear Ana & <b>Bob</b>," in text and "Dear Ana &amp; &lt;b&gt;Bob&lt;/b&gt;," in html
    assert [(r.email, r.status) for r in results] == [(r.email, Status.ACCEPTED) for r in recipients]
    assert [r.message_id for r in results] == [s.message["Message-ID"] for s in smtp_server.messages]


def test_every_message_carries_date_message_id_list_id_and_both_unsubscribe_headers(smtp_server, provider):
    recipients = envelopes(12)
    provider.send(batch(recipients))
    for recipient, stored in zip(recipients, smtp_server.messages):
        message = stored.message
        assert message["Date"] and message["Message-ID"]
        assert message["List-Id"] == '"WeGO e-Newsletter" <newsletter.wego.example.org>'  # issue 16: stable
        assert message["Feedback-ID"] == "issue-30:newsletter.wego.example.org:wego.example.org"
        assert message["List-Unsubscribe"].startswith(f"<{recipient.unsubscribe_url}>, <mailto:")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["To"].addresses[0].addr_spec == recipient.email
    assert len({stored.message["Message-ID"] for stored in smtp_server.messages}) == 12


def test_one_connection_serves_many_messages_and_many_batches(smtp_server, provider):
    for chunk in batches(envelopes(30), 10):
        provider.send(batch(chunk))
    assert len(smtp_server.messages) == 30
    assert len(smtp_server.peers) == 1


def test_a_recipient_refused_with_5xx_is_rejected_and_the_batch_goes_on(smtp_server, provider):
    smtp_server.refuse("person00001@example.org", 550)
    results = provider.send(batch(envelopes(3)))
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert "550" in results[1].error and f"127.0.0.1:{smtp_server.port}" in results[1].error
    assert smtp_server.recipients() == ["person00000@example.org", "person00002@example.org"]


def test_a_recipient_refused_with_4xx_is_failed(smtp_server, provider):
    smtp_server.refuse("person00000@example.org", 451)
    results = provider.send(batch(envelopes(2)))
    assert [r.status for r in results] == [Status.FAILED, Status.ACCEPTED]
    assert "451" in results[0].error


def test_a_connection_dropped_before_the_message_is_reopened_and_the_message_sent_once(smtp_server, provider):
    provider.send(batch(envelopes(2)))
    smtp_server.drop_next("MAIL")
    results = provider.send(batch(envelopes(3, start=2)))
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert Counter(smtp_server.recipients()) == Counter(r.email for r in envelopes(5))
    assert len(smtp_server.peers) == 2


def test_a_connection_dropped_after_the_whole_message_is_unknown_not_sent_twice(smtp_server, provider):
    smtp_server.drop_next("DATA")  # the server stores the message, then hangs up before "250"
    results = provider.send(batch(envelopes(3)))
    assert [r.status for r in results] == [Status.UNKNOWN, Status.ACCEPTED, Status.ACCEPTED]
    assert "may or may not" in results[0].error
    assert Counter(smtp_server.recipients()) == Counter(r.email for r in envelopes(3))


def test_a_connection_dropped_twice_is_reopened_and_the_message_sent_once(smtp_server, provider):
    # issue 15: a 421 at any stage reconnects and retries that message (it used to fail after two drops)
    smtp_server.drop_next("MAIL")
    smtp_server.drop_next("MAIL")
    results = provider.send(batch(envelopes(2)))
    assert [r.status for r in results] == [Status.ACCEPTED, Status.ACCEPTED]
    assert smtp_server.received() == Counter(r.email for r in envelopes(2))


def test_a_connection_dropped_at_every_try_fails_that_recipient_only(smtp_server, provider):
    for _ in range(5):
        smtp_server.drop_next("MAIL")
    results = provider.send(batch(envelopes(2)))
    assert [r.status for r in results] == [Status.FAILED, Status.ACCEPTED]
    assert "gave up after 5 attempts" in results[0].error
    assert smtp_server.recipients() == ["person00001@example.org"]


def test_a_name_with_crlf_injects_no_header(smtp_server, provider):
    provider.send(batch([envelope("eve@example.org", INJECTION_NAME)]))
    (stored,) = smtp_server.messages
    assert stored.rcpt_tos == ["eve@example.org"]
    assert stored.message["Bcc"] is None
    assert b"\nBcc:" not in stored.data.split(b"\r\n\r\n", 1)[0]


def test_login_with_the_configured_credentials(tmp_path):
    with SmtpServer(login=("newsletter", "s3cret-pass")) as server:
        provider = make_provider("smtp", smtp_settings(tmp_path, server, SMTP_USERNAME="newsletter",
                                                       SMTP_PASSWORD="s3cret-pass"))
        results = provider.send(batch(envelopes(2)))
        provider.close()
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert server.logins == ["newsletter"]


def test_a_refused_login_stops_with_a_message_that_never_shows_the_password(tmp_path):
    with SmtpServer(login=("newsletter", "right")) as server:
        provider = make_provider("smtp", smtp_settings(tmp_path, server, SMTP_USERNAME="newsletter",
                                                       SMTP_PASSWORD="wrong-SECRET"))
        with pytest.raises(ProviderAuthError, match="SMTP_USERNAME and SMTP_PASSWORD") as raised:
            provider.send(batch(envelopes(1)))
    assert "wrong-SECRET" not in str(raised.value)
    assert server.messages == []


def test_no_connection_after_the_retries_is_a_configuration_fault_naming_host_and_port(tmp_path):
    # issue 15: it used to be a transient error the send loop retried batch after batch
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = provider_settings(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_SECURITY="none")
    waits: list[float] = []
    with pytest.raises(ProviderConfigError, match=f"cannot reach SMTP server 127.0.0.1:{port} after 5 attempts") as raised:
        SmtpProvider(settings, sleep=waits.append).send(batch(envelopes(1)))
    assert "SMTP_HOST" in str(raised.value) and "SMTP_PORT" in str(raised.value)
    assert len(waits) == 4 and all(0 <= wait <= 2.0 * 2 ** n for n, wait in enumerate(waits))


def test_a_server_gone_half_way_keeps_what_was_sent_and_stops(smtp_server, tmp_path):
    # issue 15: the rest of the batch used to be marked failed; now nothing more is tried and the
    # send loop leaves them pending
    provider = SmtpProvider(smtp_settings(tmp_path, smtp_server), sleep=lambda seconds: None)
    smtp_server.drop_next("DATA", for_good=True)  # takes the first message, then goes away
    answered = []
    with pytest.raises(ProviderConfigError, match=f"cannot reach SMTP server 127.0.0.1:{smtp_server.port}"):
        provider.send(replace(batch(envelopes(4)), on_result=answered.append))
    assert [r.status for r in answered] == [Status.UNKNOWN]
    assert smtp_server.recipients() == ["person00000@example.org"]


def test_starttls_against_a_server_without_it_says_what_to_check(tmp_path, smtp_server):
    settings = provider_settings(tmp_path, SMTP_HOST=smtp_server.host, SMTP_PORT=str(smtp_server.port),
                                 SMTP_SECURITY="starttls")
    with pytest.raises(ProviderConfigError, match="does not offer STARTTLS.*SMTP_SECURITY"):
        make_provider("smtp", settings).send(batch(envelopes(1)))
    assert smtp_server.messages == []
