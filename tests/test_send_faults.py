"""Bad input and faults around a real send (issue 11): each case counts what reached a real local server.

The project and its helpers are test_send_cli's: issue 30 from this repository, a
small recipients file, a local SendGrid stand-in and a local aiosmtpd server.
"""

from __future__ import annotations

from collections import Counter

import pytest

from test_send_cli import campaign, deliveries, project  # noqa: F401  (project is a fixture)


@pytest.mark.parametrize("environ, appended, fragment", [
    ({"SENDGRID_API_URL": "api.sendgrid.com"}, "", "environment variable SENDGRID_API_URL 'api.sendgrid.com'"),
    ({}, '\n[sendgrid]\ntimeout = "30s"\n', "[sendgrid] timeout '30s' is not a number"),
    ({"CAMPAIGN_PROVIDER": "smtp"}, '\n[smtp]\ntimeout = "30s"\n', "[smtp] timeout '30s' is not a number"),
])
def test_a_configuration_typo_stops_the_send_before_anyone_is_marked(
        project, sendgrid_server, smtp_server, monkeypatch, environ, appended, fragment):  # noqa: F811
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with (project / "campaign.toml").open("a", encoding="utf-8") as config:
        config.write(appended)
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert deliveries(project) == {}
    assert Counter(sendgrid_server.delivered()) == Counter() and smtp_server.received() == Counter()
