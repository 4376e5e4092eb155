"""The mail/send personalization is written straight to JSON (PersonalizationJson) for speed; it must be
byte for byte what json.dumps makes of the personalization dict, whatever a recipients file holds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from campaign.personalize import Envelope
from campaign.providers import Batch
from campaign.providers.sendgrid_payload import Payload
from provider_support import INJECTION_NAME, TRICKY_NAME, envelope, provider_settings, rendered_issue

AWKWARD_NAMES = ["", TRICKY_NAME, INJECTION_NAME, 'Quote " and back\\slash', "Muñoz; García, Ω", "Emoji 😀 name",
                 "tab\there", "  spaced   out  ", "\u2028line separator\u202e", "[x]"]


def awkward_envelopes() -> list[Envelope]:
    result = []
    for number, name in enumerate(AWKWARD_NAMES):
        person = envelope(f"person{number}@example.org", name, city=name or "Séoul",
                          lists=(("members", "embassies"), ("members",), ())[number % 3])
        fields = dict(person.fields)
        if number % 2:
            fields["token"] = f"tok_{number}-A"
        if number == 3:
            fields["token"] = "not a plain token/é"
        if number == 4:
            fields["unsubscribe_url"] = ""
        result.append(replace(person, fields=fields, delivery_id="" if number == 5 else f"d{number:020x}"))
    return result


@pytest.mark.parametrize("mailto", ["", "mailto:unsubscribe@wego.example.org"])
def test_each_personalization_is_exactly_what_json_dumps_makes_of_the_dict(tmp_path, mailto):
    settings = provider_settings(tmp_path)
    settings = replace(settings, links=replace(settings.links, unsubscribe_mailto=mailto))
    people = awkward_envelopes()
    payload = Payload(Batch(issue=rendered_issue(), envelopes=people, batch_id="b-1"), settings)
    for person in people:
        assert payload._json_of(person) == json.dumps(payload.personalization(person)), person.name


def test_the_body_is_exactly_what_json_dumps_makes_of_the_whole_body(tmp_path):
    settings = provider_settings(tmp_path)
    people = awkward_envelopes()
    payload = Payload(Batch(issue=rendered_issue(), envelopes=people, batch_id="b-1", lists=("members",)), settings)
    assert payload.body_json(people) == json.dumps(payload.body(people))
    assert payload.size(people) == len(payload.body_json(people))
