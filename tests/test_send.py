"""The send loop against the real `sendgrid` client and a local SendGrid server: record before you send."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from campaign import ledger
from campaign.checks import ERROR, Finding, decide
from campaign.errors import ChecksFailed
from campaign.audience import Recipient
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import Progress, RetryPolicy, SendOptions, StopSignal, plan_send, send_issue, send_test
from send_support import make_settings, people, small_issue
from servers.sendgrid_server import Fault, SendGridServer

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, rate_limit_jitter=0.01)


@pytest.fixture(scope="module")
def running_server():
    with SendGridServer() as running:
        yield running


@pytest.fixture
def server(running_server):
    running_server.clear()
    yield running_server
    running_server.clear()


@pytest.fixture
def settings(tmp_path, server):
    return make_settings(tmp_path, {"SENDGRID_API_URL": server.url})


@pytest.fixture
def connection(settings):
    db = open_ledger(settings.database)
    yield db
    db.close()


class Sleeps(list):
    """An injected sleep: remembers each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def send(connection, settings, recipients, *, options=SendOptions(batch_size=10), policy=FAST, sleeps=None,
         **kwargs):
    return send_issue(connection, small_issue(), recipients, SendGridProvider(settings), settings, options,
                      policy=policy, sleep=sleeps if sleeps is not None else Sleeps(),
                      rng=random.Random(1), **kwargs)


def test_rate_limits_and_server_errors_are_retried_and_everyone_is_accepted_once(server, settings, connection):
    server.script(Fault.rate_limited(retry_after=2), Fault.rate_limited(retry_after=None, reset_in=5),
                  Fault.server_error(503), Fault.server_error(503))
    sleeps = Sleeps()
    report = send(connection, settings, people(25), sleeps=sleeps)
    assert report.outcome == "completed"
    assert report.counts["accepted"] == 25
    assert Counter(server.delivered()) == Counter(r.email for r in people(25))
    assert len(server.mail_sends()) == 3 + 4
    assert len(sleeps) == 4
    assert 2 <= sleeps[0] <= 2.01                  # Retry-After, plus jitter
    assert 3 <= sleeps[1] <= 5.01                  # X-RateLimit-Reset is a Unix time, whole seconds
    assert all(0 <= wait <= 0.05 for wait in sleeps[2:])   # full jitter under the backoff ceiling
    first = ledger.deliveries(connection, 30, "real")[0]
    assert first.attempts == 5 and first.message_id and first.last_error == ""


def test_retries_give_up_within_the_bounds_and_the_send_goes_on(server, settings, connection):
    server.script(*[Fault.server_error(503)] * 3)
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
    report = send(connection, settings, people(20), policy=policy)
    counts = report.counts
    assert counts["failed"] == 10 and counts["accepted"] == 10
    failed = ledger.deliveries(connection, 30, "real", ["failed"])
    assert "gave up after 3 attempts" in failed[0].last_error and "503" in failed[0].last_error


def test_total_wait_is_bounded(server, settings, connection):
    server.script(Fault.rate_limited(retry_after=100))
    report = send(connection, settings, people(5), policy=RetryPolicy(max_total_wait=30))
    assert report.counts["failed"] == 5
    assert len(server.mail_sends()) == 1


def test_unauthorized_stops_at_once_with_nothing_accepted(server, settings, connection):
    server.script(Fault.unauthorized(401))
    report = send(connection, settings, people(30))
    assert report.outcome == "stopped"
    assert "401" in report.message and "SENDGRID_API_KEY" in report.message
    assert report.counts["accepted"] == 0
    assert len(server.mail_sends()) == 1
    run = ledger.runs(connection, 30)[-1]
    assert run.outcome == "stopped" and "401" in run.message
    # issue 15: nothing went out, so nobody is marked failed: every recipient stays pending, the
    # batch that met the refusal with the reason (it used to be marked failed)
    rows = ledger.deliveries(connection, 30, "real")
    assert {d.status for d in rows} == {"pending"}
    assert sum(1 for d in rows if "401" in d.last_error) == 10


def test_a_bad_request_naming_no_recipient_refuses_the_batch_with_sendgrids_message(server, settings, connection):
    server.script(Fault.bad_request("Invalid type. Expected: string", "content.0.value"))
    report = send(connection, settings, people(20))
    assert report.counts == {**report.counts, "refused": 10, "accepted": 10}
    refused = ledger.deliveries(connection, 30, "real", ["refused"])[0]
    assert "Invalid type. Expected: string" in refused.last_error
    assert "content.0.value" in refused.last_error


def test_a_bad_request_naming_one_recipient_rejects_only_that_one(server, settings, connection):
    server.script(Fault.bad_request("Invalid type. Expected: string", "personalizations.0.substitutions"))
    report = send(connection, settings, people(20))
    assert report.counts == {**report.counts, "rejected": 1, "accepted": 19}
    rejected = ledger.deliveries(connection, 30, "real", ["rejected"])[0]
    assert rejected.email == people(1)[0].email
    assert "Invalid type. Expected: string (field: personalizations.0.substitutions)" in rejected.last_error


def test_a_refused_batch_is_sent_again_only_when_asked_and_nobody_twice(server, settings, connection):
    server.script(Fault.bad_request("The from email is invalid", "from.email"))
    send(connection, settings, people(20))
    again = send(connection, settings, people(20))
    assert again.attempted == 0, "rejected is final for a plain resume"
    retried = send(connection, settings, people(20), options=SendOptions(batch_size=10, retry_rejected=True))
    assert retried.attempted == 10 and retried.counts["accepted"] == 20
    assert sorted(Counter(server.delivered()).values()) == [1] * 20


def test_resume_sends_only_to_those_not_yet_accepted(server, settings, connection):
    stop = StopSignal()

    def stop_after_two_batches(progress: Progress) -> None:
        if progress.done >= 20:
            stop.request()

    first = send(connection, settings, people(50), stop=stop, on_progress=stop_after_two_batches)
    assert first.outcome == "interrupted"
    assert "before batch 3 of 5" in first.message and "campaign send --issue 30" in first.message
    assert first.counts["accepted"] == 20 and first.counts["pending"] == 30
    second = send(connection, settings, people(50))
    assert second.outcome == "completed" and second.attempted == 30
    assert Counter(server.delivered()) == Counter(r.email for r in people(50))
    third = send(connection, settings, people(50), options=SendOptions(resend_unknown=True, retry_failed=True))
    assert third.attempted == 0
    assert len(server.delivered()) == 50


def test_timeout_after_sending_is_unknown_and_resent_only_when_asked(server, tmp_path):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url})
    settings = settings.__class__(**{**settings.__dict__,
                                     "sendgrid": settings.sendgrid.__class__(api_url=server.url, api_key="SG.test-key-not-secret", timeout=0.3)})
    connection = open_ledger(settings.database)
    server.script(Fault.timeout(seconds=1.0, delivered=False))
    first = send(connection, settings, people(20))
    assert first.counts["unknown"] == 10 and first.counts["accepted"] == 10
    assert len(first.unknown) == 10
    assert "may or may not" in ledger.deliveries(connection, 30, "real", ["unknown"])[0].last_error
    again = send(connection, settings, people(20))
    assert again.attempted == 0
    completed = send(connection, settings, people(20), options=SendOptions(batch_size=10, resend_unknown=True))
    assert completed.attempted == 10 and completed.counts["accepted"] == 20
    assert Counter(server.delivered()) == Counter(r.email for r in people(20))


def test_dropped_connection_is_unknown_never_guessed(server, settings, connection):
    server.script(Fault.drop(delivered=True))
    report = send(connection, settings, people(10))
    assert report.counts["unknown"] == 10


def test_a_run_of_failed_batches_pauses_the_send(server, settings, connection):
    server.script(*[Fault.server_error(503)] * 20)
    report = send(connection, settings, people(100), policy=RetryPolicy(max_attempts=2, pause_after=3,
                                                                        base_delay=0.01))
    assert report.outcome == "paused"
    assert "3 batches in a row" in report.message and "503" in report.message
    assert "campaign send --issue 30" in report.message
    assert len(server.mail_sends()) == 6
    assert report.counts["failed"] == 30 and report.counts["pending"] == 70


def test_retry_failed_resends_only_the_failed(server, settings, connection):
    server.script(*[Fault.server_error(503)] * 2)
    stop = StopSignal()
    first = send(connection, settings, people(30), policy=RetryPolicy(max_attempts=2, base_delay=0.01),
                 stop=stop, on_progress=lambda p: p.done >= 20 and stop.request())
    assert first.counts == {**first.counts, "failed": 10, "accepted": 10, "pending": 10}
    retried = send(connection, settings, people(30), options=SendOptions(retry_failed=True))
    assert retried.attempted == 10
    assert retried.counts == {**retried.counts, "accepted": 20, "pending": 10}
    assert len(server.delivered()) == 20


def test_accepted_recipients_are_never_sent_again_whatever_the_flags(server, settings, connection):
    send(connection, settings, people(10))
    for options in (SendOptions(resend_unknown=True), SendOptions(retry_failed=True),
                    SendOptions(resend_unknown=True, retry_failed=True, force=True)):
        assert send(connection, settings, people(10), options=options).attempted == 0
    assert len(server.delivered()) == 10


def test_sandbox_sends_are_rehearsals_that_never_make_the_real_send_skip_anyone(server, settings, connection):
    rehearsal = send(connection, settings, people(10), options=SendOptions(sandbox=True))
    assert rehearsal.kind == "sandbox" and rehearsal.counts["accepted"] == 10
    assert all(r.body["mail_settings"]["sandbox_mode"]["enable"] for r in server.mail_sends())
    real = send(connection, settings, people(10))
    assert real.kind == "real" and real.attempted == 10 and real.counts["accepted"] == 10


def test_new_recipients_added_after_a_send_are_sent_on_the_next_run(server, settings, connection):
    send(connection, settings, people(10))
    report = send(connection, settings, people(15))
    assert report.attempted == 5
    assert Counter(server.delivered()) == Counter(r.email for r in people(15))


def test_plan_counts_what_a_send_would_do_and_changes_nothing(server, settings, connection):
    send(connection, settings, people(10))
    statuses = ledger.status_by_email(connection, 30, "real")
    plan = plan_send(statuses, 30, people(25), SendGridProvider.info, SendOptions())
    assert (plan.audience, plan.to_send, plan.accepted, plan.batch_size) == (25, 15, 10, 1000)
    assert ledger.counts(connection, 30, "real")["pending"] == 0


def test_batch_size_above_the_provider_limit_is_refused(settings, connection):
    from campaign.errors import UsageError

    with pytest.raises(UsageError, match="between 1 and 1,000"):
        send(connection, settings, people(3), options=SendOptions(batch_size=5000))


def test_connection_refused_is_retried_then_failed_and_the_send_pauses(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": f"http://127.0.0.1:{closed_port}"})
    connection = open_ledger(settings.database)
    sleeps = Sleeps()
    report = send(connection, settings, people(50), sleeps=sleeps,
                  policy=RetryPolicy(max_attempts=3, base_delay=0.01, pause_after=2))
    assert report.outcome == "paused"
    assert report.counts["failed"] == 20 and report.counts["pending"] == 30
    assert len(sleeps) == 4                                 # 2 waits per batch, then given up
    failed = ledger.deliveries(connection, 30, "real", ["failed"])[0]
    assert f"127.0.0.1:{closed_port}" in failed.last_error and "gave up after 3 attempts" in failed.last_error


def test_the_gate_decision_refuses_once_or_is_recorded_as_forced(server, settings, connection):
    error = Finding(ERROR, "link-placeholder", "issue-30/index.md", "a link still points to '#'", "put the address")
    with pytest.raises(ChecksFailed):
        send(connection, settings, people(5), gate=decide([error], 30, force=False, rehearsal=False))
    assert ledger.runs(connection, 30) == [] and server.mail_sends() == []
    forced = decide([error], 30, force=True, rehearsal=False)
    report = send(connection, settings, people(5), options=SendOptions(force=True), gate=forced)
    assert report.counts["accepted"] == 5
    run = ledger.runs(connection, 30)[-1]
    assert run.forced and run.findings == forced.forced_over and "link still points" in run.findings


# --- SendGrid faults, counted per address at the stand-in (issue 13) ---------------------------------

def assert_nobody_twice_and_nobody_accepted_unmailed(server, connection):
    delivered = server.delivered_count()
    assert [email for email, times in delivered.items() if times > 1] == []
    accepted = {d.email for d in ledger.deliveries(connection, 30, "real", ["accepted"])}
    assert accepted <= set(delivered), "marked accepted but never mailed"
    assert all(not request.errors or request.answer == 400 for request in server.mail_sends())


# --- each fault, counted per address ----------------------------------------------------------------

def test_a_504_after_accepting_leaves_that_batch_unknown_and_nobody_gets_two_copies(server, settings, connection):
    server.script(Fault.accepted_then(504))
    first = send(connection, settings, people(30))
    assert first.counts == {**first.counts, "unknown": 10, "accepted": 20}
    again = send(connection, settings, people(30))
    assert again.attempted == 0
    assert server.delivered_count() == {r.email: 1 for r in people(30)}
    assert_nobody_twice_and_nobody_accepted_unmailed(server, connection)


def test_a_302_marks_nobody_accepted_and_a_resume_delivers_each_once(server, settings, connection):
    server.script(Fault.redirect(302))
    first = send(connection, settings, people(20))
    assert first.counts == {**first.counts, "failed": 10, "accepted": 10}
    assert "redirect" in ledger.deliveries(connection, 30, "real", ["failed"])[0].last_error
    assert [r for r in server.requests if r.method == "GET"] == []
    assert_nobody_twice_and_nobody_accepted_unmailed(server, connection)
    send(connection, settings, people(20))
    assert server.delivered_count() == {r.email: 1 for r in people(20)}


def test_one_bad_address_in_1000_costs_only_itself_and_the_other_999_arrive_in_the_same_run(server, settings,
                                                                                            connection):
    recipients = people(1000)
    bad = recipients[523].email
    server.refuse_address(bad)
    report = send(connection, settings, recipients, options=SendOptions())
    assert report.outcome == "completed"
    assert report.counts == {**report.counts, "accepted": 999, "rejected": 1, "in_flight": 0, "pending": 0}
    assert server.delivered_count() == {r.email: 1 for r in recipients if r.email != bad}
    (rejected,) = ledger.deliveries(connection, 30, "real", ["rejected"])
    assert rejected.email == bad and "personalizations.523.to.0.email" in rejected.last_error
    assert send(connection, settings, recipients, options=SendOptions(retry_rejected=True)).attempted == 0
    assert_nobody_twice_and_nobody_accepted_unmailed(server, connection)


def test_a_413_splits_until_it_fits_and_a_resume_repeats_nothing(server, settings, connection):
    recipients = people(1000)
    server.max_body_bytes = 120_000   # about 300 of these personalizations fit
    report = send(connection, settings, recipients, options=SendOptions())
    assert report.counts["accepted"] == 1000
    assert [request.answer for request in server.mail_sends()].count(413) >= 2
    assert send(connection, settings, recipients, options=SendOptions()).attempted == 0
    assert server.delivered_count() == {r.email: 1 for r in recipients}
    assert_nobody_twice_and_nobody_accepted_unmailed(server, connection)


# --- what each request says --------------------------------------------------------------------------

OFF = {"click_tracking": {"enable": False, "enable_text": False}, "open_tracking": {"enable": False},
       "subscription_tracking": {"enable": False}, "ganalytics": {"enable": False}}


def mixed_lists() -> list[Recipient]:
    lists = [("members",), ("embassies",), ("members", "embassies")]
    return [Recipient(email=f"p{n}@example.org", name=f"P {n}", lists=lists[n % 3], fields={"name": f"P {n}"},
                      line=n + 2) for n in range(6)]


def test_a_real_send_asks_for_no_tracking_counts_under_the_issue_and_tags_each_recipient(server, settings,
                                                                                         connection):
    recipients = mixed_lists()
    send(connection, settings, recipients)
    (request,) = server.mail_sends()
    body = request.body
    assert body["tracking_settings"] == OFF
    assert body["categories"] == ["issue-30"]
    assert "custom_args" not in body
    args = [p["custom_args"] for p in body["personalizations"]]
    assert [a["campaign_lists"] for a in args] == [",".join(r.lists) for r in recipients]
    assert {a["campaign_issue"] for a in args} == {"30"}
    assert "@" not in json.dumps(args)
    rows = {d.email: d.delivery_id for d in ledger.deliveries(connection, 30, "real")}
    assert [a["campaign_delivery"] for a in args] == [rows[r.email] for r in recipients]
    assert len(set(rows.values())) == len(recipients) and "" not in rows.values()


def test_every_send_attempt_has_its_own_delivery_id_and_the_ledger_keeps_the_latest(server, settings, connection):
    server.script(Fault.accepted_then(504))
    send(connection, settings, people(3))
    first = {d.email: d.delivery_id for d in ledger.deliveries(connection, 30, "real")}
    send(connection, settings, people(3), options=SendOptions(resend_unknown=True))
    sent = [{p["to"][0]["email"]: p["custom_args"]["campaign_delivery"] for p in r.body["personalizations"]}
            for r in server.mail_sends()]
    assert sent[0] == first and set(sent[1].values()).isdisjoint(first.values())
    assert {d.email: d.delivery_id for d in ledger.deliveries(connection, 30, "real")} == sent[1]


def test_a_test_send_and_a_sandbox_run_never_count_under_the_issue(server, settings, connection):
    send_test(small_issue(), ["editor@example.org"], SendGridProvider(settings), settings, policy=FAST,
              sleep=lambda seconds: None)
    send(connection, settings, people(3), options=SendOptions(sandbox=True))
    test_body, sandbox_body = (request.body for request in server.mail_sends())
    assert test_body["categories"] == ["test"] and sandbox_body["categories"] == ["sandbox"]
    assert test_body["tracking_settings"] == sandbox_body["tracking_settings"] == OFF
    assert [p["custom_args"] for p in test_body["personalizations"]] == [{"campaign_issue": "30"}]
    sandbox_rows = {d.email: d.delivery_id for d in ledger.deliveries(connection, 30, "sandbox")}
    assert [p["custom_args"] for p in sandbox_body["personalizations"]] == [
        {"campaign_issue": "30", "campaign_delivery": sandbox_rows[r.email], "campaign_lists": "members"}
        for r in people(3)]
    assert server.delivered_count() == {"editor@example.org": 1}


def test_click_and_open_tracking_follow_the_settings(server, tmp_path):
    (tmp_path / "campaign.toml").write_text(
        'recipients = "recipients.csv"\n[lists.members]\ndescription = "m"\n'
        '[sendgrid]\ntrack_clicks = true\ntrack_opens = true\n', encoding="utf-8")
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url})
    connection = open_ledger(settings.database)
    send(connection, settings, people(2))
    tracking = server.mail_sends()[0].body["tracking_settings"]
    assert tracking == {**OFF, "click_tracking": {"enable": True, "enable_text": False},
                        "open_tracking": {"enable": True}}
