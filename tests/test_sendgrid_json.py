"""The mail/send personalization is written straight to JSON (PersonalizationJson) for speed; it must be
byte for byte what json.dumps makes of the personalization dict, whatever a recipients file holds."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from campaign.audience import Recipient
from campaign.merge import MergeTemplate
from campaign.personalize import Envelope, envelope_for
from campaign.providers import Batch
from campaign.providers import sendgrid_payload
from campaign.providers.sendgrid_payload import Payload
from campaign.render import RenderedIssue
from provider_support import (INJECTION_NAME, TRICKY_NAME, envelope, provider_settings, random_values,
                              rendered_issue)

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


def random_recipients(count: int, seed: int) -> list[Recipient]:
    """Recipients whose name, columns, address and lists are random awkward text (often empty, so the
    fallbacks are used)."""
    rng = random.Random(seed)
    texts = random_values(count * 4, seed) + ["", "Ana", "https://x.example/?a=1&b=<2>"]
    return [
        Recipient(email=rng.choice(texts) + f"{number}@example.org", name=rng.choice(texts),
                  lists=tuple(rng.sample(("members", "embassies", "Ω,list"), rng.randrange(0, 4))),
                  fields={"name": rng.choice(texts), "city": rng.choice(texts), "organisation": rng.choice(texts)},
                  line=number + 2)
        for number in range(count)
    ]


EVERY_PLACE = RenderedIssue(
    number=30,
    subject=MergeTemplate("News for [[name|colleague]] in [[city|your city]] [[email]]"),
    html=MergeTemplate('<p>[[name|compa&#241;ero &amp; amiga]] [[organisation]] [[city]] [[email]]</p>'
                       '<a href="[[view_url]]">view</a><a href="[[unsubscribe_url]]">[[token]]</a>', markup=True),
    text=MergeTemplate("[[name|colleague]] [[organisation|you]] [[city]]\n[[view_url]]\n[[unsubscribe_url]]\n"),
    preheader="",
)


@pytest.mark.parametrize("mailto", ["", "mailto:unsubscribe@wego.example.org"])
def test_random_recipients_get_exactly_what_json_dumps_makes_of_their_personalization(tmp_path, mailto):
    """Every placeholder in every place (subject, HTML, text, with and without fallbacks), the view link,
    and random awkward recipients built by envelope_for as a send builds them."""
    settings = provider_settings(tmp_path)
    settings = replace(settings, links=replace(settings.links, unsubscribe_mailto=mailto))
    people = [envelope_for(recipient, settings, 30, f"d{number:x}" if number % 5 else "")
              for number, recipient in enumerate(random_recipients(400, seed=len(mailto)))]
    payload = Payload(Batch(issue=EVERY_PLACE, envelopes=people, batch_id="b-1"), settings)
    for person in people:
        assert payload._json_of(person) == json.dumps(payload.personalization(person)), person
    assert payload.body_json(people) == json.dumps(payload.body(people))
    assert payload.size(people) == len(payload.body_json(people))


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_body_of_none_one_or_two_personalizations_is_what_json_dumps_writes(tmp_path, count):
    settings = provider_settings(tmp_path)
    people = awkward_envelopes()[:count]
    payload = Payload(Batch(issue=rendered_issue(), envelopes=people, batch_id="b-1"), settings)
    assert payload.body_json(people) == json.dumps(payload.body(people))
    assert payload.size(people) == len(payload.body_json(people))


def over_a_limit(payload: Payload, person: Envelope) -> bool:
    """The reference: each of SendGrid's limits measured on the personalization dict."""
    personalization = payload.personalization(person)
    return (len(json.dumps(personalization["custom_args"])) > sendgrid_payload.MAX_CUSTOM_ARGS_BYTES
            or len(json.dumps(personalization.get("substitutions", {}))) > sendgrid_payload.MAX_SUBSTITUTIONS_BYTES
            or payload.size([person]) > sendgrid_payload.MAX_REQUEST_BYTES)


@pytest.mark.parametrize("request_limit", [None, 12_000])
def test_a_personalization_is_refused_exactly_when_it_is_over_a_limit(tmp_path, monkeypatch, request_limit):
    """The quick check (the whole personalization under every limit) says "fits" for no one the
    reference refuses, on either side of each limit, byte by byte."""
    settings = provider_settings(tmp_path)
    if request_limit:
        monkeypatch.setattr(sendgrid_payload, "MAX_REQUEST_BYTES", request_limit)
    people = [replace(envelope(f"c{size}@example.org", "Ana"), lists=("l" * size,)) for size in range(9_900, 10_100, 3)]
    for size in range(3_000, 5_200, 7):
        person = envelope(f"s{size}@example.org", "Ana")
        people.append(replace(person, fields={**person.fields, "city": "x" * size}))
    payload = Payload(Batch(issue=rendered_issue(), envelopes=people, batch_id="b-1"), settings)
    verdicts = [(bool(payload.over_limit(person)), over_a_limit(payload, person)) for person in people]
    assert all(said == reference for said, reference in verdicts)
    assert {said for said, _ in verdicts} == {True, False}
