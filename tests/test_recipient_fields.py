"""A loaded recipient's fields: a read-only mapping of the columns, values shared between rows, never mixed.

Rows keep their fields as `campaign.row_fields.RowFields` (issue 18: a million
recipients in little memory); merge code, the manifest and the checks read them
as the Mapping[str, str] a dict was.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import pickle
import random

import pytest

import campaign.row_fields
from campaign.audience import Recipient, load_recipients, resolve_lists, select_audience
from campaign.config import load_settings
from campaign.personalize import envelope_for


@pytest.fixture
def settings(tmp_path):
    config = tmp_path / "campaign.toml"
    config.write_text('recipients = "recipients.csv"\n'
                      '[lists.members]\ndescription = "m"\n[lists.embassies]\ndescription = "e"\n',
                      encoding="utf-8")
    return load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": "test-secret"})


def load(settings, text: str):
    settings.recipients.write_text(text, encoding="utf-8")
    return load_recipients(settings.recipients, settings)


def test_fields_read_as_a_mapping_of_every_column_but_email_and_lists_in_file_order(settings):
    loaded = load(settings, "City,email,Name,lists,Country\nLima,ana@example.org,Ana,members,Peru\n")
    fields = loaded.rows[0].fields
    assert list(fields) == ["city", "name", "country"] == list(fields.keys())
    assert list(fields.items()) == [("city", "Lima"), ("name", "Ana"), ("country", "Peru")]
    assert list(fields.values()) == ["Lima", "Ana", "Peru"]
    assert fields == {"city": "Lima", "name": "Ana", "country": "Peru"} == dict(fields)
    assert {"country": "Peru", "name": "Ana", "city": "Lima"} == fields
    assert fields != {"city": "Lima", "name": "Ana"}
    assert len(fields) == 3 and "city" in fields and "email" not in fields and "lists" not in fields
    assert fields["name"] == "Ana" == loaded.rows[0].name
    assert fields.get("organisation") is None and fields.get("organisation", "") == ""
    with pytest.raises(KeyError):
        fields["organisation"]
    assert repr(fields) == "{'city': 'Lima', 'name': 'Ana', 'country': 'Peru'}"
    assert {"city", "name", "language"} - fields.keys() == {"language"}


def test_fields_without_a_name_column_have_no_name_key(settings):
    loaded = load(settings, "email,lists,city\nana@example.org,members,Lima\n")
    assert dict(loaded.rows[0].fields) == {"city": "Lima"} and loaded.rows[0].name == ""
    assert "name" not in loaded.rows[0].fields


def test_fields_are_read_only(settings):
    fields = load(settings, "email,name,lists\nana@example.org,Ana,members\n").rows[0].fields
    with pytest.raises(TypeError):
        fields["name"] = "Bob"  # type: ignore[index]


@pytest.mark.parametrize("pool_limit", [2, 50_000])
def test_shared_values_never_mix_between_rows(settings, monkeypatch, pool_limit):
    """Rows share their repeated cities, countries and whole rows of values, even past the pools' limit,
    yet every row reads back exactly its own cells (cleaned)."""
    monkeypatch.setattr(campaign.row_fields, "POOL_LIMIT", pool_limit)
    rng = random.Random(18)
    written = io.StringIO()
    writer = csv.writer(written, lineterminator="\n")
    writer.writerow(["email", "name", "organisation", "city", "country", "lists", "language"])
    for number in range(300):
        city = rng.choice(["Lima", "Seoul", "  Lima ", "São Paulo", f"Town {number}"])
        writer.writerow([f"p{number}@example.org", rng.choice(["Ana", "Bo", f"Person {number}", ""]),
                         rng.choice(["City Hall", f"Org {number}"]), city, rng.choice(["Peru", "Korea"]),
                         rng.choice(["members", "embassies", "members;embassies"]), rng.choice(["en", "es"])])
    loaded = load(settings, written.getvalue())
    expected = list(csv.DictReader(io.StringIO(written.getvalue())))
    assert len(loaded.rows) == 300 and loaded.problems == ()
    for row, cells in zip(loaded.rows, expected):
        assert row.email == cells["email"] and row.name == cells["name"]
        assert dict(row.fields) == {"name": cells["name"], "organisation": cells["organisation"],
                                    "city": " ".join(cells["city"].split()), "country": cells["country"],
                                    "language": cells["language"]}


def test_a_selected_recipient_keeps_its_own_lists_and_the_file_its_rows(settings):
    loaded = load(settings, "email,name,lists\nana@example.org,Ana,members;embassies\n"
                            "bob@example.org,Bob,members\nAna@example.org,Ana,embassies\n")
    only_members = select_audience(loaded, resolve_lists(settings, ["members"]), {})
    everyone = select_audience(loaded, resolve_lists(settings, None), {})
    assert [(r.email, r.lists) for r in only_members.recipients] == [
        ("ana@example.org", ("members",)), ("bob@example.org", ("members",))]
    assert [(r.email, r.lists) for r in everyone.recipients] == [
        ("ana@example.org", ("members", "embassies")), ("bob@example.org", ("members",))]
    assert [(r.line, r.lists) for r in loaded.rows] == [
        (2, ("members", "embassies")), (3, ("members",)), (4, ("embassies",))]


def test_merge_values_of_a_loaded_recipient_hold_its_columns(settings):
    loaded = load(settings, "email,name,city,lists\nana@example.org,Ana,Lima,members\n")
    envelope = envelope_for(select_audience(loaded, ("members",), {}).recipients[0], settings, 30)
    assert envelope.fields["city"] == "Lima" and envelope.fields["name"] == "Ana"
    assert envelope.fields["email"] == "ana@example.org" and envelope.fields["unsubscribe_url"]


def test_a_loaded_recipient_is_still_a_frozen_dataclass_of_five_fields(settings):
    loaded = load(settings, "email,name,city,lists\nana@example.org,Ana,Lima,members\n")
    row = loaded.rows[0]
    made = Recipient(email="ana@example.org", name="Ana", lists=("members",), fields={"name": "Ana", "city": "Lima"},
                     line=2)
    assert row == made and made == row
    assert row != dataclasses.replace(made, fields={"name": "Ana", "city": "Lyon"})
    assert [field.name for field in dataclasses.fields(row)] == ["email", "name", "lists", "fields", "line"]
    assert repr(row) == repr(made) == ("Recipient(email='ana@example.org', name='Ana', lists=('members',), "
                                       "fields={'name': 'Ana', 'city': 'Lima'}, line=2)")
    moved = dataclasses.replace(row, email="bob@example.org", lists=())
    assert (moved.email, moved.lists, dict(moved.fields), moved.line) == ("bob@example.org", (), dict(made.fields), 2)
    assert copy.copy(row) == row == pickle.loads(pickle.dumps(row))
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.email = "eve@example.org"  # type: ignore[misc]


def test_a_recipients_plain_row_sent_to_another_process_builds_the_same_message(settings):
    from campaign.recipient import RecipientRow

    loaded = load(settings, "email,name,city,lists\nana@example.org,Ana,Lima,members;embassies\n")
    made = Recipient(email="bo@example.org", name="Bo", lists=("members",), fields={"name": "Bo", "city": "Oslo"})
    for recipient in (select_audience(loaded, ("members", "embassies"), {}).recipients[0], made):
        row = tuple.__new__(RecipientRow, pickle.loads(pickle.dumps(recipient.row())))
        assert (row.email, row.name, row.lists, row.line) == (recipient.email, recipient.name, recipient.lists,
                                                              recipient.line)
        assert dict(row.fields) == dict(recipient.fields)
        assert envelope_for(row, settings, 30, "id-1") == envelope_for(recipient, settings, 30, "id-1")


def test_a_person_listed_three_times_is_one_recipient_on_every_list_and_two_duplicates(settings):
    """Duplicates are found while loading (select_audience builds no {address: row} of everyone)."""
    loaded = load(settings, "email,name,lists\nana@example.org,Ana,members\nbob@example.org,Bob,members\n"
                            "ANA@example.org,Ana 2,members\nAna@Example.org,Ana 3,embassies\n")
    assert loaded.duplicate_of == {4: 2, 5: 2} and loaded.unique_count() == 2
    audience = select_audience(loaded, resolve_lists(settings, None), {})
    assert [(r.email, r.name, r.lists, r.line) for r in audience.recipients] == [
        ("ana@example.org", "Ana", ("members", "embassies"), 2), ("bob@example.org", "Bob", ("members",), 3)]
    assert [(e.line, e.kind, e.reason, e.name) for e in audience.exclusions] == [
        (4, "duplicate", "duplicate of line 2", "Ana 2"), (5, "duplicate", "duplicate of line 2", "Ana 3")]
    embassies = select_audience(loaded, ("embassies",), {})
    assert [(r.email, r.lists) for r in embassies.recipients] == [("ana@example.org", ("embassies",))]
