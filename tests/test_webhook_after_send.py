"""End to end: a real send through the SendGrid stand-in leaves some deliveries unknown; SendGrid's events,
built from the custom_args the stand-in received, come back through the signed webhook and settle them."""

from __future__ import annotations

import json
import random

from campaign import ledger
from campaign.freeze import freeze_audience
from campaign.ledger import ACCEPTED, REJECTED, UNKNOWN, open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import RetryPolicy, SendOptions, send_issue
from campaign.suppressions import list_suppressions
from campaign.web.readers import create_app
from campaign.web.webhook import WEBHOOK_PATH
from send_support import make_settings, people, small_issue
from servers.sendgrid_server import Fault, SendGridServer
from web_support import Served, fetch
from webhook_support import Signer, body_of, event


def events_from(requests, kind: str) -> list[dict]:
    """What SendGrid would post for each personalization it took: its custom_args as top-level fields."""
    found = []
    for request in requests:
        for personalization in request.body["personalizations"]:
            args = personalization["custom_args"]
            found.append(event(kind, personalization["to"][0]["email"], issue=None, **args))
    return found


def test_events_from_the_send_settle_unknown_deliveries_by_their_custom_args(tmp_path):
    signer = Signer()
    with SendGridServer() as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url,
                                            "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
        server.script(Fault.drop(delivered=True))           # SendGrid took the first batch; the answer was lost
        connection = open_ledger(settings.database)
        try:
            send_issue(connection, small_issue(), people(6), SendGridProvider(settings), settings,
                       SendOptions(batch_size=3), policy=RetryPolicy(base_delay=0.01, max_delay=0.05),
                       sleep=lambda seconds: None, rng=random.Random(1))
            before = ledger.status_by_email(connection, 30, "real")
        finally:
            connection.close()
        taken = [request for request in server.mail_sends() if request.delivered]
    assert sorted(before.values()) == [ACCEPTED] * 3 + [UNKNOWN] * 3
    assert all("campaign_delivery" in p["custom_args"] for r in taken for p in r.body["personalizations"])

    events = events_from(taken, "delivered")
    bounced = events_from(taken[-1:], "bounce")[:1]
    body = body_of(events + bounced)
    with Served(create_app(settings)) as base_url:
        answer = fetch(base_url + WEBHOOK_PATH, "POST", body, signer.headers(body))
    assert answer.status == 200, answer.text
    counts = json.loads(answer.text)
    assert (counts["stored"], counts["unmatched"], counts["resolved"], counts["suppressed"]) == (7, 0, 3, 1)
    connection = open_ledger(settings.database)
    try:
        after = ledger.status_by_email(connection, 30, "real")
        suppressed = [(s.email, s.reason, s.source) for s in list_suppressions(connection)]
    finally:
        connection.close()
    assert set(after.values()) == {ACCEPTED}
    assert suppressed == [(bounced[0]["email"], "bounced", "sendgrid-event")]


def test_events_that_came_while_a_dead_send_had_its_batch_open_settle_it_when_the_send_resumes(tmp_path):
    # A send is killed between writing a batch ahead and its answer; SendGrid had taken the batch,
    # and its events arrive before anyone resumes: then there is nothing unknown to settle. The resume
    # turns the batch's rows unknown, and the events already stored must settle them at once
    # (before this, they stayed unknown and `--resend-unknown` mailed those people a second time).
    signer = Signer()
    taken, lost = people(6)[:3], people(6)[3:]
    with SendGridServer() as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url,
                                            "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
        connection = open_ledger(settings.database)
        try:   # the ledger exactly as the killed process left it
            run_id = ledger.start_run(connection, 30, "real", "sendgrid")
            freeze_audience(connection, 30, "real", ((r.email, r.name, r.lists) for r in taken + lost), run_id)
            ids = dict(zip([r.email for r in taken + lost], ledger.new_delivery_ids(6)))
            ledger.write_batch_ahead(connection, 30, "real", "sendgrid", "30-1-1", run_id, ids)
        finally:
            connection.close()
        delivered = [event("delivered", r.email, campaign_delivery=ids[r.email]) for r in taken[:2]]
        dropped = [event("dropped", taken[2].email, campaign_delivery=ids[taken[2].email], reason="Invalid")]
        earlier = [event("dropped", lost[0].email, campaign_delivery="an-earlier-attempt", reason="Invalid")]
        body = body_of(delivered + dropped + earlier)
        with Served(create_app(settings)) as base_url:
            answer = fetch(base_url + WEBHOOK_PATH, "POST", body, signer.headers(body))
        assert answer.status == 200 and json.loads(answer.text)["resolved"] == 0   # nothing unknown yet
        connection = open_ledger(settings.database)
        try:
            report = send_issue(connection, small_issue(), taken + lost, SendGridProvider(settings), settings,
                                SendOptions(batch_size=3))
            after = ledger.status_by_email(connection, 30, "real")
        finally:
            connection.close()
        assert server.mail_sends() == []   # a plain resume never resends unknown rows
    assert after == {taken[0].email: ACCEPTED, taken[1].email: ACCEPTED, taken[2].email: REJECTED,
                     lost[0].email: UNKNOWN, lost[1].email: UNKNOWN, lost[2].email: UNKNOWN}
    assert sorted(report.recovered) == sorted(r.email for r in lost)   # still unknown, and said so
