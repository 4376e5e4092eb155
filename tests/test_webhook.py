"""POST /webhooks/sendgrid on `campaign serve`'s app under real uvicorn, signed like SendGrid signs.

The ledger holds a real send of issue 30 (some deliveries accepted, some unknown); the events are
signed with a P-256 key made here and posted over HTTP, then the ledger file is read back.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from campaign import ledger
from campaign.config import load_settings
from campaign.errors import ConfigError
from campaign.ledger import ACCEPTED, REJECTED, UNKNOWN, open_ledger
from campaign.suppressions import list_suppressions
from campaign.web.readers import create_app
from campaign.web.webhook import BODY_LIMIT, WEBHOOK_PATH
from web_support import Served, fetch
from webhook_support import Signer, body_of, event, record_send

SECRET = "webhook-test-secret"
@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def project(tmp_path):
    (tmp_path / "campaign.toml").write_text('database = "campaign.db"\n', encoding="utf-8")
    record_send(tmp_path / "campaign.db")
    return tmp_path


def settings_for(project: Path, public_key: str | None):
    environ = {"CAMPAIGN_TOKEN_SECRET": SECRET}
    if public_key is not None:
        environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = public_key
    return load_settings(project / "campaign.toml", environ=environ)


@pytest.fixture
def served(project, signer):
    with Served(create_app(settings_for(project, signer.public_key))) as base_url:
        yield base_url + WEBHOOK_PATH


def post(url: str, body: bytes, headers: dict[str, str]):
    return fetch(url, "POST", body, headers)


def ledger_state(project: Path) -> tuple[dict[str, str], dict[str, str], int]:
    """({email: status}, {email: suppression reason}, events stored)."""
    connection = open_ledger(project / "campaign.db")
    try:
        statuses = ledger.status_by_email(connection, 30, "real")
        suppressed = {s.email: s.reason for s in list_suppressions(connection)}
        stored = connection.execute("SELECT count(*) FROM provider_events").fetchone()[0]
    finally:
        connection.close()
    return statuses, suppressed, stored


EVENTS = [
    event("processed", "bo@example.org"),
    event("delivered", "bo@example.org"),
    event("dropped", "carla@example.org", reason="Bounced Address"),
    event("deferred", "eve@example.org", response="451 try later"),
    event("bounce", "ana@example.org", type="bounce", reason="550 5.1.1 no such user", status="5.1.1"),
    event("bounce", "dan@example.org", type="blocked", reason="554 blocked by policy", status="5.7.1"),
    event("spamreport", "fay@example.org"),
    event("unsubscribe", "zed@example.org", issue=None),
    event("group_unsubscribe", "Dan@Example.org", asm_group_id=42),
    event("open", "ana@example.org", sg_machine_open=False),
    event("click", "ana@example.org", url="https://wego.example.org/"),
]


def test_signed_events_suppress_and_resolve_unknown_deliveries(served, project, signer):
    body = body_of(EVENTS)
    answer = post(served, body, signer.headers(body))
    assert answer.status == 200, answer.text
    assert json.loads(answer.text) == {"received": 11, "stored": 11, "duplicates": 0, "unmatched": 1,
                                       "suppressed": 5, "resolved": 3, "unreadable": 0}
    statuses, suppressed, stored = ledger_state(project)
    assert statuses["bo@example.org"] == ACCEPTED      # processed: it was sent after all
    assert statuses["carla@example.org"] == REJECTED   # dropped: SendGrid never sent it
    assert statuses["eve@example.org"] == ACCEPTED     # deferred: SendGrid has it and is trying
    assert suppressed == {"carla@example.org": "bounced", "ana@example.org": "bounced",
                          "fay@example.org": "complained", "zed@example.org": "unsubscribed",
                          "dan@example.org": "unsubscribed"}   # the block suppressed nobody
    assert stored == 11
    assert "@" not in answer.text


def test_an_event_finds_its_delivery_by_the_delivery_id_it_carries(served, project, signer):
    record_send(project / "campaign.db", issue=31, statuses={"bo@example.org": UNKNOWN, "carla@example.org": UNKNOWN},
                delivery_ids={"bo@example.org": "d-bo-2", "carla@example.org": "d-carla-2"})
    events = [event("processed", "bo@example.org", issue=None, campaign_delivery="d-bo-2"),   # no issue: the id says
              event("dropped", "carla@example.org", issue=31, campaign_delivery="d-carla-1",   # an earlier attempt
                    reason="Bounced Address")]
    body = body_of(events)
    answer = json.loads(post(served, body, signer.headers(body)).text)
    assert (answer["unmatched"], answer["resolved"], answer["suppressed"]) == (0, 1, 1)
    connection = open_ledger(project / "campaign.db")
    try:
        statuses = ledger.status_by_email(connection, 31, "real")
    finally:
        connection.close()
    assert statuses == {"bo@example.org": ACCEPTED,     # sent after all
                        "carla@example.org": UNKNOWN}   # the drop was of an earlier attempt: the latest is unknown


def test_a_replayed_post_stores_nothing_twice(served, project, signer):
    body = body_of(EVENTS)
    assert post(served, body, signer.headers(body)).status == 200
    before = ledger_state(project)
    again = post(served, body, signer.headers(body))          # SendGrid retries: at least once
    assert again.status == 200
    assert json.loads(again.text)["duplicates"] == 11 and json.loads(again.text)["stored"] == 0
    assert ledger_state(project) == before


def test_one_tampered_byte_is_refused_and_nothing_is_stored(served, project, signer):
    body = body_of(EVENTS)
    headers = signer.headers(body)
    tampered = body.replace(b"carla@example.org", b"carlo@example.org", 1)
    assert len(tampered) == len(body) and tampered != body
    before = ledger_state(project)
    assert post(served, tampered, headers).status == 403
    late = dict(headers, **{"X-Twilio-Email-Event-Webhook-Timestamp": str(int(headers[
        "X-Twilio-Email-Event-Webhook-Timestamp"]) + 1)})
    assert post(served, body, late).status == 403              # the timestamp is signed too
    assert post(served, body, {"Content-Type": "application/json"}).status == 403
    assert post(served, body, Signer().headers(body)).status == 403   # someone else's key
    garbage = dict(headers, **{"X-Twilio-Email-Event-Webhook-Signature": "not base64!"})
    assert post(served, body, garbage).status == 403
    assert ledger_state(project) == before


def test_a_signed_body_that_is_not_events_is_a_400(served, signer):
    for body in (b'{"event": "open"}', b"not json", b"[1, 2"):
        assert post(served, body, signer.headers(body)).status == 400


def test_an_unreadable_event_is_left_out_and_spoils_no_batch(served, project, signer):
    events = [event("dropped", "no-domain@", reason="Invalid"), {"event": "open"},
              event("spamreport", "dan@example.org")]
    body = body_of(events)
    answer = post(served, body, signer.headers(body))
    assert answer.status == 200, answer.text
    counts = json.loads(answer.text)
    assert counts["unreadable"] == 2 and counts["stored"] == 1
    assert ledger_state(project)[1] == {"dan@example.org": "complained"}


def test_a_body_over_the_cap_is_refused_unread(served, signer):
    parts = urlsplit(served)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:   # only the headers are sent: the answer comes before any of the body
        connection.putrequest("POST", parts.path)
        for name, value in signer.headers(b"[]").items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(BODY_LIMIT + 1))
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_without_a_public_key_the_route_does_not_exist(project):
    with Served(create_app(settings_for(project, None))) as base_url:
        body = body_of(EVENTS)
        assert post(base_url + WEBHOOK_PATH, body, Signer().headers(body)).status == 404
    assert ledger_state(project)[2] == 0


def test_a_public_key_that_is_not_one_stops_the_service_at_start(project):
    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        create_app(settings_for(project, "bm90IGEga2V5"))
