"""End to end: a real send through the SendGrid stand-in leaves some deliveries unknown; SendGrid's events,
built from the custom_args the stand-in received, come back through the signed webhook and settle them."""

from __future__ import annotations

import json
import random

from campaign import ledger
from campaign.ledger import ACCEPTED, UNKNOWN, open_ledger
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
