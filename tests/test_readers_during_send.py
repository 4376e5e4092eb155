"""Unsubscribes that arrive while a send runs: the readers' service and `campaign send` on one ledger.

The people first got issue 29 through the local SendGrid stand-in; its messages carry
their unsubscribe links (List-Unsubscribe, per personalization). Issue 30 then goes
through the same stand-in while one-click POSTs reach the service under real uvicorn.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

from typer.testing import CliRunner

from campaign import ledger
from campaign.cli import app as cli
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import RetryPolicy, SendOptions, send_issue
from campaign.suppressions import list_suppressions
from campaign.web.readers import create_app
from send_support import make_settings, people, small_issue
from web_support import Served, on_local_host, one_click


def earlier_issue(settings, server, recipients) -> dict[str, str]:
    """Issue 29 sent to `recipients`; returns {address: the https URL of its List-Unsubscribe header}."""
    already = len(server.mail_sends())
    report = real_send(settings, recipients, 1000, lambda progress: None, issue=29)
    assert report.outcome == "completed", report.message
    urls = {}
    for request in server.mail_sends()[already:]:
        for personalization in request.body["personalizations"]:
            header = personalization["headers"]["List-Unsubscribe"]
            urls[personalization["to"][0]["email"]] = re.search(r"<(https://[^>]+)>", header).group(1)
    server.clear()
    return urls


def real_send(settings, recipients, batch_size: int, on_progress, issue: int = 30):
    connection = open_ledger(settings.database)
    try:
        return send_issue(connection, small_issue(issue), recipients, SendGridProvider(settings), settings,
                          SendOptions(batch_size=batch_size), policy=RetryPolicy(base_delay=0.01, max_delay=0.05),
                          sleep=lambda seconds: None, on_progress=on_progress)
    finally:
        connection.close()


def statuses(settings) -> dict[str, str]:
    connection = open_ledger(settings.database)
    try:
        return ledger.status_by_email(connection, 30, "real")
    finally:
        connection.close()


def test_a_send_of_5000_never_mails_anyone_who_unsubscribed_between_batches(tmp_path, sendgrid_server):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url})
    everyone = people(5000)
    urls = earlier_issue(settings, sendgrid_server, everyone)
    batch_size, unsubscribed_after = 500, {}     # {address: batches answered before the unsubscribe}
    with Served(create_app(settings)) as base_url:
        def between_batches(progress) -> None:
            answered = len(sendgrid_server.mail_sends())
            if answered in unsubscribed_after.values() or answered == 10:
                return
            # Three people of later batches unsubscribe now, by one-click on the service.
            for n in (answered * batch_size + 7, answered * batch_size + 250, 4999 - answered):
                address = everyone[n].email
                if address not in unsubscribed_after:
                    assert one_click(on_local_host(urls[address], base_url)).status == 200
                    unsubscribed_after[address] = answered

        report = real_send(settings, everyone, batch_size, between_batches)
    assert report.outcome == "completed", report.message
    requests = sendgrid_server.mail_sends()
    assert len(requests) == 10
    for address, before in unsubscribed_after.items():
        later = [index for index, request in enumerate(requests, start=1)
                 if index > before and address in request.recipients]
        assert not later, f"{address} unsubscribed after batch {before} and was in request(s) {later}"
    assert len(unsubscribed_after) >= 20
    final = statuses(settings)
    assert {final[address] for address in unsubscribed_after} == {"skipped"}
    assert sum(1 for status in final.values() if status == "accepted") == 5000 - len(unsubscribed_after)
    assert len(sendgrid_server.delivered()) == 5000 - len(unsubscribed_after)


def test_status_shows_who_was_skipped_and_why(tmp_path, sendgrid_server):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url})
    everyone = people(30)
    urls = earlier_issue(settings, sendgrid_server, everyone)
    with Served(create_app(settings)) as base_url:
        def after_first_batch(progress) -> None:
            if progress.done == 10 and not list_suppressions(open_ledger(settings.database)):
                assert one_click(on_local_host(urls[everyone[25].email], base_url)).status == 200

        assert real_send(settings, everyone, 10, after_first_batch).outcome == "completed"
    assert everyone[25].email not in sendgrid_server.delivered()
    result = CliRunner().invoke(cli, ["status", "--issue", "30", "--config", str(tmp_path / "campaign.toml")],
                                env={"CAMPAIGN_TOKEN_SECRET": "test-secret"})
    assert result.exit_code == 0, result.output
    assert "skipped 1" in result.stdout
    assert re.search(r"1 x suppressed during the send: unsubscribed \(one-click\) at \S+Z: person00025@example.org",
                     result.stdout), result.stdout


def test_50_concurrent_one_click_posts_while_a_send_runs_are_all_recorded(tmp_path):
    from servers.sendgrid_server import SendGridServer

    with SendGridServer(delay=0.05) as slow_sendgrid:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": slow_sendgrid.url})
        everyone = people(3000)
        urls = earlier_issue(settings, slow_sendgrid, everyone)
        clickers = [everyone[n].email for n in range(0, 3000, 60)]
        assert len(clickers) == 50
        sending = threading.Event()
        with Served(create_app(settings)) as base_url:
            sender = threading.Thread(target=lambda: real_send(
                settings, everyone, 50, lambda progress: progress.done and sending.set()))
            sender.start()
            assert sending.wait(60), "the send did not start"
            with ThreadPoolExecutor(max_workers=50) as pool:
                answers = list(pool.map(lambda address: one_click(on_local_host(urls[address], base_url)), clickers))
            still_sending = sender.is_alive()
            sender.join(300)
        assert not sender.is_alive()
    assert still_sending, "the POSTs must overlap the send"
    assert [answer.status for answer in answers] == [200] * 50
    assert all("locked" not in answer.text for answer in answers)
    connection = open_ledger(settings.database)
    recorded = {s.email: s.source for s in list_suppressions(connection)}
    connection.close()
    assert recorded == {address: "one-click" for address in clickers}
    final = statuses(settings)
    assert {final[address] for address in clickers} <= {"accepted", "skipped"}
    assert set(final.values()) <= {"accepted", "skipped"} and len(final) == 3000


def test_links_sent_after_the_service_started_work_at_once(tmp_path, sendgrid_server):
    """The service indexes older ledgers at start; later sends keep their tokens when they freeze their audience."""
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url})
    with Served(create_app(settings)) as base_url:
        urls = earlier_issue(settings, sendgrid_server, people(20))
        assert all(one_click(on_local_host(url, base_url)).status == 200 for url in urls.values())
    connection = open_ledger(settings.database)
    assert {s.email for s in list_suppressions(connection)} == set(urls)
    connection.close()


def test_a_suppress_add_during_the_send_also_stops_later_batches(tmp_path, sendgrid_server):
    from campaign.suppressions import add_suppression

    settings = make_settings(tmp_path, {"SENDGRID_API_URL": sendgrid_server.url})
    everyone = people(40)

    def after_first_batch(progress) -> None:
        if progress.done == 10:
            connection = open_ledger(settings.database)
            add_suppression(connection, everyone[35].email, "complained")
            connection.close()

    assert real_send(settings, everyone, 10, after_first_batch).outcome == "completed"
    assert everyone[35].email not in sendgrid_server.delivered() and len(sendgrid_server.delivered()) == 39
    assert statuses(settings)[everyone[35].email] == "skipped"
