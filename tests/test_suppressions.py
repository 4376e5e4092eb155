"""The suppression list in the ledger database (campaign/suppressions.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from campaign.audience import load_recipients, select_audience
from campaign.config import load_settings
from campaign.errors import RecipientsError, UsageError
from campaign.ledger import open_ledger
from campaign.suppressions import (
    Suppression,
    add_suppression,
    import_suppressions,
    list_suppressions,
    record_unsubscribe,
    suppressed_emails,
    suppressed_emails_at,
)


@pytest.fixture
def settings(tmp_path):
    config = tmp_path / "campaign.toml"
    config.write_text('recipients = "recipients.csv"\ndatabase = "data/campaign.db"\n'
                      '[lists.members]\ndescription = "Member cities"\n', encoding="utf-8")
    return load_settings(config, environ={})


@pytest.fixture
def ledger(settings):
    connection = open_ledger(settings.database)
    yield connection
    connection.close()


def test_added_suppression_is_stored_normalised_with_reason_and_date(ledger):
    suppression, added = add_suppression(ledger, " Ana@Example.ORG ", "unsubscribed", "2026-05-02")
    assert added
    assert suppression == Suppression("ana@example.org", "unsubscribed", "2026-05-02")
    assert suppressed_emails(ledger) == {"ana@example.org": ("unsubscribed", "2026-05-02")}


def test_suppression_without_a_date_is_dated_today(ledger):
    suppression, _ = add_suppression(ledger, "ana@example.org", "bounced")
    assert date.fromisoformat(suppression.date) >= date(2026, 1, 1)


def test_suppressing_an_address_again_keeps_the_first_suppression(ledger):
    add_suppression(ledger, "ana@example.org", "bounced", date(2026, 3, 1))
    suppression, added = add_suppression(ledger, "ANA@example.org", "unsubscribed", date(2026, 5, 2))
    assert not added
    assert (suppression.reason, suppression.date) == ("bounced", "2026-03-01")
    assert len(list_suppressions(ledger)) == 1


@pytest.mark.parametrize("email, reason, on, message", [
    ("ana@example.org", "spam", None, "unknown reason 'spam'; use one of unsubscribed, bounced"),
    ("not an address", "manual", None, "invalid address 'not an address'"),
    ("ana@example.org", "manual", "May 2nd", "date 'May 2nd' is not a date; write it as YYYY-MM-DD"),
])
def test_bad_suppression_is_refused_with_a_usage_error(ledger, email, reason, on, message):
    with pytest.raises(UsageError, match=message):
        add_suppression(ledger, email, reason, on)
    assert list_suppressions(ledger) == []


def test_suppressions_survive_closing_and_reopening_the_database(settings, ledger):
    add_suppression(ledger, "ana@example.org", "complained", "2026-04-01", note="ticket 12")
    ledger.close()
    assert suppressed_emails_at(settings.database) == {"ana@example.org": ("complained", "2026-04-01")}
    reopened = open_ledger(settings.database)
    assert list_suppressions(reopened) == [Suppression("ana@example.org", "complained", "2026-04-01", "ticket 12")]
    reopened.close()


def test_no_database_yet_means_no_suppressions_and_creates_nothing(settings):
    assert suppressed_emails_at(settings.database) == {}
    assert not settings.database.exists()


def test_import_adds_good_rows_and_reports_bad_ones_by_line(ledger, tmp_path):
    source = tmp_path / "bounces.csv"
    source.write_text(
        "\ufeffEmail,Reason,Date\n"
        "ana@example.org,bounced,2026-04-30\n"           # line 2
        "bob@example.org,Unsubscribed,\n"                # line 3: no date, today
        "carla@,bounced,2026-04-30\n"                    # line 4: invalid address
        "dan@example.org,angry,2026-04-30\n"             # line 5: unknown reason
        "eve@example.org,bounced\n"                      # line 6: missing column
        "ANA@example.org,complained,2026-05-01\n",       # line 7: already suppressed
        encoding="utf-8")
    result = import_suppressions(ledger, source)
    assert (result.added, result.already) == (2, 1)
    assert [(problem.line, problem.email) for problem in result.problems] == [
        (4, "carla@"), (5, "dan@example.org"), (6, "eve@example.org")]
    suppressed = suppressed_emails(ledger)
    assert suppressed["ana@example.org"] == ("bounced", "2026-04-30")
    assert suppressed["bob@example.org"][0] == "unsubscribed"
    assert set(suppressed) == {"ana@example.org", "bob@example.org"}


def test_importing_the_same_file_twice_adds_nothing_new(ledger, tmp_path):
    source = tmp_path / "unsubscribes.csv"
    source.write_text("email,reason,date\nana@example.org,unsubscribed,2026-05-02\n", encoding="utf-8")
    assert import_suppressions(ledger, source).added == 1
    again = import_suppressions(ledger, source)
    assert (again.added, again.already) == (0, 1)


def test_import_file_without_reason_column_is_an_error_naming_it(ledger, tmp_path):
    source = tmp_path / "bounces.csv"
    source.write_text("email\nana@example.org\n", encoding="utf-8")
    with pytest.raises(RecipientsError, match="bounces.csv: the header has no 'reason' column"):
        import_suppressions(ledger, source)
    assert list_suppressions(ledger) == []


def test_suppression_survives_the_address_being_added_to_the_recipients_file_again(settings, ledger):
    settings.recipients.write_text("email,name,lists\nana@example.org,Ana,members\n", encoding="utf-8")
    add_suppression(ledger, "ana@example.org", "unsubscribed", "2026-05-02")
    # Someone re-imports an old contact export with the address in another case.
    settings.recipients.write_text("email,name,lists\nbob@example.org,Bob,members\n"
                                   "ANA@EXAMPLE.ORG,Ana Silva,members\n", encoding="utf-8")
    recipient_file = load_recipients(settings.recipients, settings)
    audience = select_audience(recipient_file, ("members",), suppressed_emails_at(settings.database))
    assert [recipient.email for recipient in audience.recipients] == ["bob@example.org"]
    assert [(exclusion.line, exclusion.reason) for exclusion in audience.exclusions] == [
        (3, "suppressed: unsubscribed on 2026-05-02")]


def test_an_unsubscribe_records_its_source_and_time_and_the_first_one_stands(ledger):
    first = datetime(2026, 11, 25, 20, 1, 2, tzinfo=timezone.utc)
    suppression, added = record_unsubscribe(ledger, "Ana@Example.org", "one-click", at=first)
    assert added and (suppression.email, suppression.reason) == ("ana@example.org", "unsubscribed")
    again, added_again = record_unsubscribe(ledger, "ana@example.org", "web")
    assert not added_again
    assert (again.source, again.at, again.date) == ("one-click", "2026-11-25T20:01:02Z", "2026-11-25")
    assert [(s.email, s.source, s.at) for s in list_suppressions(ledger)] == [
        ("ana@example.org", "one-click", "2026-11-25T20:01:02Z")]


def test_an_unsubscribe_from_an_unknown_source_is_refused(ledger):
    with pytest.raises(UsageError, match="unknown unsubscribe source"):
        record_unsubscribe(ledger, "ana@example.org", "carrier-pigeon")
    assert list_suppressions(ledger) == []
