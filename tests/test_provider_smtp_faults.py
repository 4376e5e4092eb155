"""The SMTP provider against faults a production relay shows: 421, throttling, refusals, limits.

Every test talks to a real aiosmtpd server on loopback; backoff waits go through an
injected `sleep` that records them, so nothing here waits for real.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from campaign.config import load_settings
from campaign.errors import ProviderConfigError
from campaign.personalize import bounce_token
from campaign.providers import Batch, Status
from campaign.providers.smtp import SmtpProvider
from provider_support import envelopes, rendered_issue

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def settings_for(tmp_path, server, extra: str = "", **environ: str):
    config = tmp_path / "campaign.toml"
    config.write_text(f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\n{extra}\n',
                      encoding="utf-8")
    return load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": "test-secret", **environ})


class Waits(list):
    """The backoff waits the provider asked for, and a clock that moves only when it waits."""

    now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def provider_for(tmp_path, server, extra: str = "", **environ: str) -> tuple[SmtpProvider, Waits]:
    waits = Waits()
    provider = SmtpProvider(settings_for(tmp_path, server, extra, **environ), sleep=waits, clock=waits.clock,
                            rng=random.Random(7))
    return provider, waits


def send(provider: SmtpProvider, recipients) -> list:
    try:
        return provider.send(Batch(issue=rendered_issue(), envelopes=recipients, batch_id="b-1", lists=("members",)))
    finally:
        provider.close()


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_a_421_at_any_stage_reconnects_and_sends_that_message_once(tmp_path, smtp_server, stage):
    provider, waits = provider_for(tmp_path, smtp_server)
    smtp_server.reply_next(stage, "421 4.3.2 service shutting down")
    results = send(provider, envelopes(3))
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert smtp_server.received() == Counter(r.email for r in envelopes(3))
    assert len(smtp_server.peers) == 2 and waits == []


def test_452_backs_off_with_jitter_and_then_delivers_once(tmp_path, smtp_server):
    provider, waits = provider_for(tmp_path, smtp_server)
    smtp_server.refuse("person00001@example.org", 452, "4.5.3 too many messages, slow down", times=3)
    results = send(provider, envelopes(3))
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert smtp_server.received() == Counter(r.email for r in envelopes(3))
    assert len(waits) == 3
    assert all(0 <= wait <= 2 ** n for n, wait in enumerate(waits))       # full jitter under a doubling ceiling
    assert len(set(waits)) == 3


@pytest.mark.parametrize("code", [451, 454])
def test_throttling_that_never_ends_fails_that_recipient_after_the_tries(tmp_path, smtp_server, code):
    provider, waits = provider_for(tmp_path, smtp_server)
    smtp_server.refuse("person00000@example.org", code, "4.7.0 try later")
    results = send(provider, envelopes(2))
    assert [r.status for r in results] == [Status.FAILED, Status.ACCEPTED]
    assert f"{code} 4.7.0 try later" in results[0].error and "gave up after 5 attempts" in results[0].error
    assert len(waits) == 4


def test_no_such_mailbox_is_rejected_and_marked_bounced_a_policy_refusal_only_rejected(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server)
    smtp_server.refuse("person00000@example.org", 550, "5.1.1 <person00000@example.org>: user unknown")
    smtp_server.refuse("person00001@example.org", 550, "5.7.1 relaying denied")
    results = send(provider, envelopes(3))
    assert [(r.status, r.bounced) for r in results] == [
        (Status.REJECTED, True), (Status.REJECTED, False), (Status.ACCEPTED, False)]
    assert "550 5.1.1" in results[0].error and "550 5.7.1" in results[1].error
    assert smtp_server.recipients() == ["person00002@example.org"]


def test_a_5xx_to_mail_from_stops_naming_host_setting_and_reply(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server)
    smtp_server.reply_next("MAIL", "553 5.7.1 sender not allowed")
    with pytest.raises(ProviderConfigError) as raised:
        send(provider, envelopes(2))
    message = str(raised.value)
    assert f"127.0.0.1:{smtp_server.port}" in message and "envelope_from" in message
    assert "553 5.7.1 sender not allowed" in message and "\n" not in message
    assert smtp_server.messages == []


def test_envelope_from_and_verp_set_mail_from_while_from_stays_the_sender(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server, 'envelope_from = "bounces@wego.example.org"')
    send(provider, envelopes(1))
    provider, _ = provider_for(tmp_path, smtp_server, 'envelope_from = "bounces@wego.example.org"\nverp = true')
    send(provider, envelopes(1, start=1))
    plain, verp = smtp_server.messages
    assert plain.mail_from == "bounces@wego.example.org"
    token = bounce_token("person00001@example.org", "test-secret")
    assert verp.mail_from == f"bounces+{token}@wego.example.org"
    assert "person00001" not in verp.mail_from and token == token.lower()
    assert {stored.message["From"].addresses[0].addr_spec for stored in smtp_server.messages} == {
        "newsletter@wego.example.org"}


def test_the_envelope_sender_defaults_to_the_from_address(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server)
    send(provider, envelopes(1))
    assert smtp_server.messages[0].mail_from == "newsletter@wego.example.org"


def test_max_per_connection_reconnects_after_that_many_messages(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server, "max_per_connection = 2")
    results = send(provider, envelopes(5))
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert len(smtp_server.peers) == 3
    assert smtp_server.received() == Counter(r.email for r in envelopes(5))


def test_max_per_minute_waits_so_no_minute_carries_more(tmp_path, smtp_server):
    provider, waits = provider_for(tmp_path, smtp_server, "max_per_minute = 2")
    send(provider, envelopes(5))
    assert len(smtp_server.messages) == 5
    assert len(waits) == 2 and all(0 < wait <= 60 for wait in waits)


def test_a_slow_answer_after_the_message_waits_for_the_data_timeout_not_the_command_timeout(tmp_path, smtp_server):
    provider, _ = provider_for(tmp_path, smtp_server, "timeout = 0.2\ndata_timeout = 30.0")
    smtp_server.delay = 0.6   # the server stores the message and thinks before its "250"
    results = send(provider, envelopes(1))
    assert [r.status for r in results] == [Status.ACCEPTED]


def test_a_password_is_never_sent_in_the_clear_to_another_host(tmp_path, smtp_server):
    settings = settings_for(tmp_path, smtp_server, SMTP_HOST="smtp.example.org", SMTP_USERNAME="newsletter",
                            SMTP_PASSWORD="s3cret")
    with pytest.raises(ProviderConfigError, match="in the clear to smtp.example.org.*SMTP_SECURITY") as raised:
        SmtpProvider(settings)
    assert "s3cret" not in str(raised.value)
    for loopback in ("127.0.0.1", "localhost", "::1"):
        SmtpProvider(settings_for(tmp_path, smtp_server, SMTP_HOST=loopback, SMTP_USERNAME="newsletter"))


def test_a_5xx_to_ehlo_and_helo_stops_naming_host_setting_and_reply(tmp_path, smtp_server):
    provider, waits = provider_for(tmp_path, smtp_server)
    smtp_server.refuse_hello = "554 5.7.1 this relay is not for you"
    with pytest.raises(ProviderConfigError) as raised:
        send(provider, envelopes(1))
    message = str(raised.value)
    assert f"127.0.0.1:{smtp_server.port}" in message and "SMTP_HOST" in message
    assert "554 5.7.1 this relay is not for you" in message and waits == []
    assert smtp_server.messages == []


def test_a_message_waits_for_its_turn_under_max_per_minute_before_it_is_written_ahead(tmp_path, smtp_server):
    """A stop asked during that wait (up to a minute) then leaves the message pending, never sent
    and never unknown: the write-ahead (on_sending) comes after the wait, just before the message goes."""
    events: list[str] = []
    waits = Waits()
    provider = SmtpProvider(settings_for(tmp_path, smtp_server, "max_per_minute = 1"),
                            sleep=lambda seconds: (events.append("wait"), waits(seconds))[1], clock=waits.clock)
    batch = Batch(issue=rendered_issue(), envelopes=envelopes(2), batch_id="b-1", lists=("members",),
                  on_sending=lambda envelope: events.append("written ahead"),
                  on_result=lambda result: events.append("answered"))
    try:
        provider.send(batch)
    finally:
        provider.close()
    assert events == ["written ahead", "answered", "wait", "written ahead", "answered"]


def test_a_message_refused_for_now_is_reported_retrying_and_written_ahead_again_after_every_wait(tmp_path,
                                                                                                smtp_server):
    """451: the message did not go out. It is reported retrying (the send records it failed), waits its
    backoff and then its turn under max_per_minute, and only then is written ahead again."""
    first = envelopes(2)[0].email
    smtp_server.refuse(first, 451, "4.7.1 try again later", times=1)
    events: list[str] = []
    waits = Waits()
    provider = SmtpProvider(settings_for(tmp_path, smtp_server, "max_per_minute = 1"),
                            sleep=lambda seconds: (events.append("wait"), waits(seconds))[1], clock=waits.clock,
                            rng=random.Random(7))
    batch = Batch(issue=rendered_issue(), envelopes=envelopes(2), batch_id="b-1", lists=("members",),
                  on_sending=lambda envelope: events.append("written ahead"),
                  on_result=lambda result: events.append("answered"),
                  on_retrying=lambda envelope, reason: events.append("retrying"))
    try:
        results = provider.send(batch)
    finally:
        provider.close()
    assert [result.status for result in results] == [Status.ACCEPTED, Status.ACCEPTED]
    assert events == ["written ahead", "retrying", "wait", "wait", "written ahead", "answered",
                      "wait", "written ahead", "answered"]
    assert smtp_server.received()[first] == 1
