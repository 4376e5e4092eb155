"""Validated addresses are remembered between loads, and a damaged memory changes nothing."""

from __future__ import annotations

import json

from campaign.addresses import CACHE_NAME, AddressBook
from campaign.audience import CACHE_FOLDER, load_recipients
from campaign.config import load_settings

RECIPIENTS = """email,name,lists
Ana.Souza@Example.ORG,Ana,members
bad@@example.org,Bad,members
jorge@bücher.example,Jorge,members
"""


def project(tmp_path):
    (tmp_path / "campaign.toml").write_text('recipients = "r.csv"\n[lists.members]\ndescription = "m"\n',
                                            encoding="utf-8")
    (tmp_path / "r.csv").write_text(RECIPIENTS, encoding="utf-8")
    settings = load_settings(tmp_path / "campaign.toml", environ={"CAMPAIGN_TOKEN_SECRET": "s"})
    return settings, settings.build_dir / CACHE_FOLDER / CACHE_NAME


def test_a_second_load_reuses_the_validated_addresses_and_gives_the_same_result(tmp_path):
    settings, cache = project(tmp_path)
    first = load_recipients(settings.recipients, settings)
    assert json.loads(cache.read_text(encoding="utf-8")) == {
        "Ana.Souza@Example.ORG": "ana.souza@example.org", "jorge@bücher.example": "jorge@xn--bcher-kva.example"}
    second = load_recipients(settings.recipients, settings)
    assert (second.rows, second.problems) == (first.rows, first.problems)
    assert [problem.line for problem in second.problems] == [3], "invalid addresses are checked every time"


def test_a_tampered_cache_can_never_let_a_malformed_address_through(tmp_path):
    settings, cache = project(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"Ana.Souza@Example.ORG": "ana@example.org\r\nBcc: x@example.org",
                                 "jorge@bücher.example": 42}), encoding="utf-8")
    loaded = load_recipients(settings.recipients, settings)
    assert [row.email for row in loaded.rows] == ["ana.souza@example.org", "jorge@xn--bcher-kva.example"]


def test_an_unreadable_cache_is_ignored_and_replaced(tmp_path):
    settings, cache = project(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", encoding="utf-8")
    assert len(load_recipients(settings.recipients, settings).rows) == 2
    assert json.loads(cache.read_text(encoding="utf-8"))


def test_without_a_cache_folder_addresses_are_simply_validated():
    book = AddressBook(None)
    assert book.normalise("Ana@Example.org") == "ana@example.org"
    book.save()
