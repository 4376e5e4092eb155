"""Each domain is validated once; every address still gets exactly email-validator's verdict."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError

from campaign.addresses import AddressBook, normalise_email

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
AWKWARD = ATEXT + '."() ,:;<>@[\\]éñ\t'
DOMAINS = ["example.org", "Example.COM", "bücher.example", "mail.example.net", "a" * 63 + ".example.org",
           "-bad.example.org", "example", "localhost", "exa_mple.org", "xn--bcher-kva.example"]


def verdict(address: str, normalise) -> str:
    try:
        return normalise(address)
    except EmailNotValidError:
        return "invalid"


def test_the_book_agrees_with_email_validator_on_every_address():
    rng = random.Random(30)
    book = AddressBook()
    for _ in range(4000):
        alphabet = ATEXT if rng.random() < 0.7 else AWKWARD
        local = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 8, 30, 64, 65])))
        if rng.random() < 0.1:
            local = rng.choice([".", "a..b", ".a", "a.", '"quoted local"', ""])
        address = f"{local}@{rng.choice(DOMAINS)}"
        assert verdict(address, book.normalise) == verdict(address, normalise_email), address


def test_an_address_too_long_in_total_is_refused_even_at_a_known_domain():
    book = AddressBook()
    long_domain = ".".join(["d" * 60] * 3) + ".example.org"
    assert book.normalise(f"first@{long_domain}")
    with pytest.raises(EmailNotValidError):
        book.normalise(f"{'x' * 64}@{long_domain}")


def test_each_domain_is_validated_once():
    book = AddressBook()
    book.normalise("Ana@Bücher.Example")
    assert book.domains == {"Bücher.Example": "xn--bcher-kva.example"}
    assert book.normalise("Jorge.Munoz@Bücher.Example") == "jorge.munoz@xn--bcher-kva.example"
