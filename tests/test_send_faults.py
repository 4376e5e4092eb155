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


def test_a_stray_quote_in_the_recipients_file_costs_one_row_not_the_rest_of_the_file(project, smtp_server,  # noqa: F811
                                                                                  monkeypatch):
    people = [f"p{n}@example.org" for n in range(1, 9)]
    rows = [f"{address},Person,Org,City,Country,members" for address in people]
    rows.insert(3, 'minji.kim@example.org,"Kim Min-ji,Seoul,Korea,members')          # line 5
    (project / "recipients.csv").write_text("email,name,organisation,city,country,lists\n"
                                            + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_PROVIDER", "smtp")
    audience = campaign(project, "audience")
    assert "line 5" in audience.output and "never closed" in audience.output and "5 lines" in audience.output
    result = campaign(project, "send", "--issue", "30", "--yes", "--force")
    assert "Traceback" not in result.output
    assert smtp_server.received() == Counter(people)            # everyone else once; minji not at all
    assert set(deliveries(project)) == set(people)
