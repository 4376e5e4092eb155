"""Exit codes of `campaign send` for SendGrid and the outbox, as the README's table says (issue 11 item 7),
and the reason for what is left in the send's own output (issue 11 item 12). SMTP: test_send_smtp_cli.py."""

from __future__ import annotations

from collections import Counter

import test_send_cli
from servers.sendgrid_server import Fault
from test_send_cli import AUDIENCE, campaign, deliveries

project = test_send_cli.project   # the same small project, with local SendGrid and SMTP servers

EXIT_LEFT, EXIT_STOPPED = 4, 5


def test_sendgrid_unknown_deliveries_exit_4_with_the_reason_and_so_does_a_resume(project, sendgrid_server):
    sendgrid_server.script(Fault.drop(delivered=True))   # SendGrid took it; the answer was lost
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == EXIT_LEFT, result.output
    assert "unknown (may or may not have been delivered):" in result.output
    assert f"{len(AUDIENCE)} x " in result.output                    # one reason, for the whole batch
    again = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert again.exit_code == EXIT_LEFT, again.output
    assert "Nothing to send" in again.output and f"{len(AUDIENCE)} unknown" in again.output
    assert Counter(sendgrid_server.delivered()) == Counter(AUDIENCE)   # nobody twice


def test_sendgrid_refused_request_exits_4_and_prints_sendgrids_message(project, sendgrid_server):
    sendgrid_server.script(Fault.bad_request("The from email is invalid", "from.email"))
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == EXIT_LEFT, result.output
    assert "refused (the request was refused" in result.output and "The from email is invalid" in result.output
    assert set(deliveries(project).values()) == {"refused"}


def test_sendgrid_one_rejected_address_is_not_a_failure_of_the_run(project, sendgrid_server):
    sendgrid_server.script(Fault.bad_request("Invalid type. Expected: string", "personalizations.0.substitutions"))
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert "rejected (the address was refused" in result.output and "personalizations.0" in result.output
    assert sorted(deliveries(project).values()) == ["accepted"] * (len(AUDIENCE) - 1) + ["rejected"]


def test_an_outbox_rehearsal_that_completes_exits_0(project):
    result = campaign(project, "send", "--issue", "30", "--provider", "outbox", "--yes", "--force")
    assert result.exit_code == 0, result.output
