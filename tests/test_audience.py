"""Loading the recipients file and choosing who a send reaches (campaign/audience.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from campaign.audience import (
    load_recipients,
    resolve_lists,
    select_audience,
    write_manifest,
)
from campaign.config import load_settings
from campaign.errors import RecipientsError, UsageError
from campaign.spreadsheet import spreadsheet_safe

HEADER = "email,name,organisation,city,country,lists\n"


@pytest.fixture
def settings(tmp_path):
    config = tmp_path / "campaign.toml"
    config.write_text(
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\n'
        '[lists.members]\ndescription = "Member cities"\n'
        '[lists.embassies]\ndescription = "Embassy contacts"\n',
        encoding="utf-8",
    )
    return load_settings(config, environ={})


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def load(settings, text: str, **options):
    return load_recipients(write(settings.recipients, text, **options), settings)


def test_file_with_byte_order_mark_reads_the_email_column(settings):
    recipients = load(settings, HEADER + "ana@example.org,Ana,City of Lima,Lima,Peru,members\n", bom=True)
    assert recipients.problems == ()
    assert recipients.columns[0] == "email"
    assert recipients.rows[0].email == "ana@example.org"


def test_non_ascii_names_and_cities_are_kept(settings):
    recipients = load(settings, HEADER + "dorde@example.org,Đorđe Petrović,Grad,São Paulo,Brazil,members\n")
    row = recipients.rows[0]
    assert row.name == "Đorđe Petrović"
    assert row.fields["city"] == "São Paulo"


def test_line_numbers_are_physical_lines_with_header_as_line_1(settings):
    text = (HEADER
            + 'ana@example.org,"Ana\nSilva",Lima,Lima,Peru,members\n'   # lines 2-3
            + "\n"                                                      # line 4 (blank)
            + "not-an-address,Bob,Org,City,Country,members\n")          # line 5
    recipients = load(settings, text)
    assert recipients.rows[0].line == 2
    assert [(problem.line, problem.email) for problem in recipients.problems] == [(5, "not-an-address")]
    assert recipients.row_count == 2


def test_address_is_normalised_to_lower_case(settings):
    recipients = load(settings, HEADER + " Ana.Silva@EXAMPLE.org ,Ana,Org,City,Peru,members\n")
    assert recipients.rows[0].email == "ana.silva@example.org"


def test_invalid_address_is_a_problem_for_that_row_with_the_reason(settings):
    recipients = load(settings, HEADER + "ana@@example.org,Ana,Org,City,Peru,members\n"
                                         "bob@example.org,Bob,Org,City,Peru,members\n")
    [problem] = recipients.problems
    assert problem.line == 2 and problem.email == "ana@@example.org"
    assert problem.reason.startswith("invalid address: ")
    assert [row.email for row in recipients.rows] == ["bob@example.org"]


def test_empty_email_is_a_problem(settings):
    recipients = load(settings, HEADER + ",Nobody,Org,City,Peru,members\n")
    assert [(problem.line, problem.reason) for problem in recipients.problems] == [(2, "empty email")]


def test_unknown_list_is_a_problem_for_that_row_naming_the_known_lists(settings):
    recipients = load(settings, HEADER + "ana@example.org,Ana,Org,City,Peru,members;newsletter\n"
                                         "bob@example.org,Bob,Org,City,Peru,Embassies\n")
    [problem] = recipients.problems
    assert problem.line == 2
    assert problem.reason == "unknown list 'newsletter'; known lists: members, embassies"
    assert recipients.rows[0].lists == ("embassies",)


def test_row_without_any_list_is_a_problem(settings):
    recipients = load(settings, HEADER + "ana@example.org,Ana,Org,City,Peru, \n")
    assert recipients.problems[0].reason.startswith("no list named")


def test_row_with_a_missing_column_is_a_problem_for_that_row(settings):
    recipients = load(settings, HEADER + "ana@example.org,Ana,Org,City,members\n"
                                         "bob@example.org,Bob,Org,City,Peru,members\n")
    [problem] = recipients.problems
    assert (problem.line, problem.email) == (2, "ana@example.org")
    assert problem.reason == "has 5 columns, the header has 6"
    assert len(recipients.rows) == 1


def test_line_breaks_in_a_name_are_removed_and_reported(settings):
    text = HEADER + 'ana@example.org,"Ana\r\nBcc: x@example.com",Org,City,Peru,members\n'
    recipients = load(settings, text)
    assert recipients.rows[0].name == "Ana Bcc: x@example.com"
    assert recipients.problems == ()
    [warning] = recipients.warnings
    assert warning.line == 2 and "name" in warning.reason


def test_control_characters_in_any_field_become_spaces(settings):
    recipients = load(settings, HEADER + 'ana@example.org,Ana\x00\x1b[31m,"Org\u202e",City\x7f,Peru,members\n')
    fields = recipients.rows[0].fields
    assert fields["name"] == "Ana [31m"
    assert all(value.isprintable() for value in fields.values())


def test_extra_columns_become_merge_fields_under_normalised_names(settings):
    recipients = load(settings, "email,lists,Name,Preferred Language\n"
                                "ana@example.org,members,Ana,es\n")
    assert dict(recipients.rows[0].fields) == {"name": "Ana", "preferred_language": "es"}


def test_name_column_is_optional(settings):
    recipients = load(settings, "email,lists\nana@example.org,members\n")
    assert recipients.rows[0].name == ""


@pytest.mark.parametrize("missing", ["email", "lists"])
def test_missing_required_column_is_an_error_naming_the_file(settings, missing):
    header = ",".join(column for column in ("email", "name", "lists") if column != missing)
    with pytest.raises(RecipientsError, match=f"recipients.csv: the header has no '{missing}' column"):
        load(settings, header + "\nx,y\n")


def test_empty_file_is_an_error(settings):
    with pytest.raises(RecipientsError, match="the file is empty"):
        load(settings, "")


def test_missing_file_is_an_error_naming_it(settings, tmp_path):
    with pytest.raises(RecipientsError, match="nowhere.csv: no such recipients file"):
        load_recipients(tmp_path / "nowhere.csv", settings)


def test_file_that_is_not_utf8_is_an_error_naming_it(settings):
    settings.recipients.write_bytes((HEADER + "jorge@example.org,Jorge Muñoz,Org,Lima,Peru,members\n")
                                    .encode("latin-1"))
    with pytest.raises(RecipientsError, match=r"recipients.csv: not UTF-8 text"):
        load_recipients(settings.recipients, settings)


def test_every_bad_row_is_reported_in_one_pass_among_10000_valid_rows(settings):
    rows = [f"person{i}@example.org,Person {i},Org,City,Country,members" for i in range(10_000)]
    rows[100] = "broken@,Bad,Org,City,Country,members"
    rows[5000] = ",Empty,Org,City,Country,members"
    rows[9999] = "last@example.org,Last,Org,City,Country,nope"
    recipients = load(settings, HEADER + "\n".join(rows) + "\n")
    assert [problem.line for problem in recipients.problems] == [102, 5002, 10_001]
    assert len(recipients.rows) == 9_997


def _select(settings, text, lists=None, suppressions=None):
    recipients = load(settings, text)
    return select_audience(recipients, resolve_lists(settings, lists), suppressions or {})


def test_person_on_both_lists_is_one_recipient_on_both(settings):
    audience = _select(settings, HEADER + "ana@example.org,Ana,Org,City,Peru,embassies;members\n")
    assert [(recipient.email, recipient.lists) for recipient in audience.recipients] == [
        ("ana@example.org", ("members", "embassies"))]


def test_duplicate_differing_in_case_is_one_recipient_merging_its_lists(settings):
    text = (HEADER + "ana@example.org,Ana,Org,City,Peru,members\n"
            "bob@example.org,Bob,Org,City,Peru,members\n"
            "ANA@Example.ORG,Ana S.,Org,City,Peru,embassies\n")
    recipients = load(settings, text)
    assert [(warning.line, warning.reason) for warning in recipients.warnings] == [
        (4, "duplicate of line 2 (one copy is sent)")]
    audience = select_audience(recipients, ("members", "embassies"), {})
    assert [recipient.email for recipient in audience.recipients] == ["ana@example.org", "bob@example.org"]
    assert audience.recipients[0].lists == ("members", "embassies")
    assert audience.recipients[0].name == "Ana" and audience.recipients[0].line == 2
    assert [(exclusion.line, exclusion.reason) for exclusion in audience.exclusions] == [
        (4, "duplicate of line 2")]


def test_duplicate_on_an_unselected_list_still_reaches_the_person_once(settings):
    text = HEADER + "ana@example.org,Ana,Org,City,Peru,members\nAna@example.org,Ana,Org,City,Peru,embassies\n"
    audience = _select(settings, text, ["embassies"])
    assert [(recipient.line, recipient.lists) for recipient in audience.recipients] == [(2, ("embassies",))]


def test_rows_not_on_a_selected_list_are_excluded_with_that_reason(settings):
    text = HEADER + "ana@example.org,Ana,Org,City,Peru,members\nbob@example.org,Bob,Org,City,Peru,embassies\n"
    audience = _select(settings, text, ["embassies"])
    assert [recipient.email for recipient in audience.recipients] == ["bob@example.org"]
    assert [(exclusion.email, exclusion.reason) for exclusion in audience.exclusions] == [
        ("ana@example.org", "not on a selected list")]


def test_suppressed_address_is_excluded_with_reason_and_date(settings):
    text = HEADER + "Ana@Example.org,Ana,Org,City,Peru,members\n"
    audience = _select(settings, text, suppressions={"ana@example.org": ("unsubscribed", "2026-05-02")})
    assert audience.recipients == ()
    assert [(exclusion.line, exclusion.reason, exclusion.kind) for exclusion in audience.exclusions] == [
        (2, "suppressed: unsubscribed on 2026-05-02", "suppressed")]


def test_invalid_rows_appear_as_exclusions_in_line_order(settings):
    text = (HEADER + "bad@,Bad,Org,City,Peru,members\n"
            "ana@example.org,Ana,Org,City,Peru,members\n"
            "ana@example.org,Ana,Org,City,Peru,members\n")
    audience = _select(settings, text)
    assert [(exclusion.line, exclusion.kind) for exclusion in audience.exclusions] == [
        (2, "invalid"), (4, "duplicate")]
    assert audience.exclusions[0].reason.startswith("invalid address: ")


def test_selected_lists_default_to_every_list_in_config_order(settings):
    assert resolve_lists(settings, None) == ("members", "embassies")
    assert resolve_lists(settings, ["embassies", "Members"]) == ("members", "embassies")


def test_unknown_selected_list_is_a_usage_error_naming_the_known_ones(settings):
    with pytest.raises(UsageError, match="unknown list 'newsletter'; known lists: members, embassies"):
        resolve_lists(settings, ["newsletter"])


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "\0x"])
def test_spreadsheet_safe_prefixes_formula_starts_with_a_quote(value):
    assert spreadsheet_safe(value) == "'" + value


def test_spreadsheet_safe_leaves_ordinary_text_alone():
    assert spreadsheet_safe("Jorge Muñoz") == "Jorge Muñoz"


def test_manifest_lists_every_row_with_its_outcome_and_no_cell_a_spreadsheet_would_run(settings, tmp_path):
    text = (HEADER + 'ana@example.org,Ana,"=HYPERLINK(""http://evil.example.com"",""x"")",Lima,Peru,members\n'
            "+bob@example.org,Bob,Org,City,Peru,members\n"
            "ana@example.org,-Ana,@Org,City,Peru,members\n")
    audience = _select(settings, text)
    manifest = tmp_path / "manifest.csv"
    assert write_manifest(audience, manifest) == 3
    with manifest.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["line"], row["status"]) for row in rows] == [("2", "included"), ("3", "included"),
                                                              ("4", "excluded")]
    assert rows[0]["organisation"] == "'=HYPERLINK(\"http://evil.example.com\",\"x\")"
    assert rows[2]["reason"] == "duplicate of line 2"
    assert rows[2]["name"] == "'-Ana" and rows[2]["organisation"] == "'@Org"
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r", "\0")) for value in row.values())


def test_project_example_recipients_file_is_clean_and_has_people_on_both_lists():
    root = Path(__file__).resolve().parents[1]
    settings = load_settings(root / "campaign.toml", environ={})
    recipients = load_recipients(root / "recipients.example.csv", settings)
    assert recipients.problems == () and recipients.warnings == ()
    assert 35 <= len(recipients.rows) <= 50
    both = [row for row in recipients.rows if set(row.lists) == {"members", "embassies"}]
    assert both
    assert any(not row.name.isascii() for row in recipients.rows)


def test_folder_instead_of_a_file_is_an_error_naming_it(settings, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(RecipientsError, match="folder.csv: is a folder"):
        load_recipients(tmp_path / "folder.csv", settings)


def test_address_with_a_display_name_is_invalid(settings):
    recipients = load(settings, HEADER + '"Ana <ana@example.org>",Ana,Org,City,Peru,members\n')
    assert recipients.problems[0].reason.startswith("invalid address: ")


def test_list_names_may_be_separated_by_commas_and_spaces_inside_quotes(settings):
    recipients = load(settings, HEADER + 'ana@example.org,Ana,Org,City,Peru," embassies , members "\n')
    assert recipients.rows[0].lists == ("members", "embassies")


def test_row_with_an_invalid_address_and_an_unknown_list_reports_both(settings):
    recipients = load(settings, HEADER + "ana@,Ana,Org,City,Peru,newsletter\n")
    [problem] = recipients.problems
    assert problem.reason.startswith("invalid address: ") and "unknown list 'newsletter'" in problem.reason


# -- issue 11 item 4: a stray quote never silently swallows the rest of the file ----------------

def _people(first: int, count: int) -> str:
    return "".join(f"p{n}@example.org,Person {n},Org,City,Country,members\n" for n in range(first, first + count))


def test_an_unclosed_quote_is_an_error_naming_its_line_and_the_lines_it_swallowed(settings):
    text = (HEADER + _people(1, 2)                                             # lines 2-3
            + 'minji.kim@example.org,"Kim Min-ji,Seoul,Korea,members\n'       # line 4: the quote never closes
            + _people(3, 6))                                                  # lines 5-10
    recipients = load(settings, text)
    [problem] = recipients.problems
    assert (problem.line, problem.email) == (4, "minji.kim@example.org")
    assert "quote" in problem.reason and "6 lines" in problem.reason and "line 4" not in problem.reason
    assert [row.line for row in recipients.rows] == [2, 3, 5, 6, 7, 8, 9, 10]
    assert recipients.row_count == 9


def test_a_stray_quote_closed_by_a_later_quoted_field_still_leaves_every_other_row_read(settings):
    text = (HEADER + _people(1, 1)                                              # line 2
            + 'minji.kim@example.org,"Kim Min-ji,Seoul,Korea,members\n'        # line 3
            + _people(2, 3)                                                    # lines 4-6
            + 'eve@example.org,"Eve, Jr.",Org,City,Country,members\n'          # line 7
            + _people(5, 2))                                                   # lines 8-9
    recipients = load(settings, text)
    assert [problem.line for problem in recipients.problems] == [3]
    assert [row.line for row in recipients.rows] == [2, 4, 5, 6, 7, 8, 9]
    assert next(row for row in recipients.rows if row.line == 7).name == "Eve, Jr."


def test_a_quoted_field_with_a_line_break_is_still_one_field(settings):
    text = HEADER + 'ana@example.org,Ana,"Org\nSecond line",City,Country,members\n' + _people(1, 1)
    recipients = load(settings, text)
    assert recipients.problems == () and [row.line for row in recipients.rows] == [2, 4]


# -- issue 11 item 16: what Excel writes in much of Europe --------------------------------------

def test_a_semicolon_delimited_file_is_read_by_its_header(settings):
    text = ("email;name;organisation;city;country;lists\n"
            'ana@example.org;Ana;City of Lima;Lima;Peru;"members,embassies"\n'
            "bo@example.org;Bo;Seoul City;Seoul;Korea;members\n")
    recipients = load(settings, text)
    assert recipients.problems == ()
    assert [(row.email, row.lists) for row in recipients.rows] == [
        ("ana@example.org", ("members", "embassies")), ("bo@example.org", ("members",))]
    assert recipients.rows[0].fields["city"] == "Lima"


def test_a_tab_delimited_file_is_read_by_its_header(settings):
    recipients = load(settings, "email\tname\tlists\nana@example.org\tAna\tmembers\n")
    assert recipients.problems == () and recipients.rows[0].name == "Ana"


def test_a_header_in_no_known_delimiter_says_what_was_found(settings):
    with pytest.raises(RecipientsError) as error:
        load(settings, "email|name|lists\nana@example.org|Ana|members\n")
    message = str(error.value)
    assert "'email|name|lists'" in message and "comma" in message and "semicolon" in message


def test_a_value_holding_placeholder_brackets_is_a_problem_and_the_row_is_left_out(settings):
    recipients = load(settings, HEADER + "ana@example.org,Ana [[unsubscribe_url]],Org,City,Peru,members\n"
                                         "bob@example.org,Bob,Org ]],City,Peru,members\n"
                                         "kim@example.org,Kim [1],Org,City,Korea,members\n")
    assert [(p.line, p.email) for p in recipients.problems] == [(2, "ana@example.org"), (3, "bob@example.org")]
    assert recipients.problems[0].reason.startswith("name: holds '[[' or ']]'")
    assert recipients.problems[1].reason.startswith("organisation: holds '[[' or ']]'")
    assert [row.email for row in recipients.rows] == ["kim@example.org"]
    audience = _select(settings, HEADER + "ana@example.org,Ana [[x]],Org,City,Peru,members\n")
    assert [(e.line, e.kind) for e in audience.exclusions] == [(2, "invalid")] and not audience.recipients
