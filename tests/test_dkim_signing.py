"""DKIM: every message the SMTP provider hands over is signed, and dkimpy's verifier agrees.

The test makes its own RSA key and answers the verifier's DNS lookup itself
(dkim.verify's `dnsfunc`), so nothing leaves the machine.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from typer.testing import CliRunner

from campaign.checks import check_signing
from campaign.cli import app
from campaign.config import load_settings
from campaign.dkim_signing import signer_from
from campaign.errors import ConfigError
from campaign.ledger import open_ledger
from campaign.providers import Batch, Status
from campaign.providers.smtp import SmtpProvider
from campaign.send import SendOptions, send_issue
from provider_support import TRICKY_NAME, envelope, envelopes, rendered_issue
from send_support import people, small_issue

SELECTOR, DOMAIN = "news2026", "wego.example.org"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def key() -> tuple[str, bytes]:
    """(private key PEM text, the TXT record that publishes its public half)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_for(record: bytes):
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None
    return lookup


def settings_with(tmp_path, server, extra: str, **environ: str):
    config = tmp_path / "campaign.toml"
    config.write_text(f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\n{extra}\n',
                      encoding="utf-8")
    return load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": "test-secret", **environ})


def send(settings, recipients):
    provider = SmtpProvider(settings)
    try:
        return provider.send(Batch(issue=rendered_issue(), envelopes=recipients, batch_id="b-1", lists=("members",)))
    finally:
        provider.close()


def signed_headers(data: bytes) -> list[str]:
    signature = data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("DKIM-Signature:", 1)[1]
    unfolded = re.sub(r"\s+", "", signature.split("bh=", 1)[0])
    return unfolded.split("h=", 1)[1].rstrip(";").split(":")


def test_every_message_is_signed_and_verifies_with_both_unsubscribe_headers_covered(tmp_path, smtp_server, key):
    pem, record = key
    settings = settings_with(tmp_path, smtp_server, f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"',
                             SMTP_DKIM_PRIVATE_KEY=pem)
    recipients = [envelope("ana@example.org", TRICKY_NAME), *envelopes(4)]
    results = send(settings, recipients)
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert len(smtp_server.messages) == 5
    for stored in smtp_server.messages:
        assert dkim.verify(stored.data, dnsfunc=dns_for(record)), stored.rcpt_tos
        covered = signed_headers(stored.data)
        for header in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                       "list-unsubscribe-post", "mime-version", "content-type"):
            assert header in covered, (header, covered)
        assert f"d={DOMAIN}" in stored.data.decode("ascii") and f"s={SELECTOR}" in stored.data.decode("ascii")


def test_a_message_altered_after_signing_fails_verification(tmp_path, smtp_server, key):
    pem, record = key
    settings = settings_with(tmp_path, smtp_server, f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"',
                             SMTP_DKIM_PRIVATE_KEY=pem)
    send(settings, envelopes(1))
    data = smtp_server.messages[0].data
    assert dkim.verify(data, dnsfunc=dns_for(record))
    swapped = re.sub(rb"List-Unsubscribe: <[^>]+>", b"List-Unsubscribe: <https://evil.example.com/u>", data)
    assert swapped != data
    assert not dkim.verify(swapped, dnsfunc=dns_for(record))
    header, body = data.split(b"\r\n\r\n", 1)
    assert not dkim.verify(header + b"\r\n\r\n" + body.replace(b"Dear", b"Hear", 1), dnsfunc=dns_for(record))


def test_the_key_can_come_from_a_file_relative_to_the_configuration(tmp_path, smtp_server, key):
    pem, record = key
    (tmp_path / "dkim.pem").write_text(pem, encoding="ascii")
    settings = settings_with(tmp_path, smtp_server, f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"\n'
                                                    'dkim_key_file = "dkim.pem"')
    send(settings, envelopes(2))
    assert all(dkim.verify(stored.data, dnsfunc=dns_for(record)) for stored in smtp_server.messages)


def test_without_dkim_settings_nothing_is_signed(tmp_path, smtp_server):
    send(settings_with(tmp_path, smtp_server, ""), envelopes(1))
    assert b"DKIM-Signature" not in smtp_server.messages[0].data


@pytest.mark.parametrize("extra, environ, expected", [
    (f'dkim_domain = "{DOMAIN}"', {}, "dkim_selector is empty"),
    (f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"', {}, "SMTP_DKIM_PRIVATE_KEY"),
    (f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"\ndkim_key_file = "missing.pem"', {},
     "missing.pem: cannot read it"),
    (f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"', {"SMTP_DKIM_PRIVATE_KEY": "not-a-key-SECRET"},
     "SMTP_DKIM_PRIVATE_KEY is not a usable DKIM private key"),
])
def test_a_half_configured_or_unusable_key_is_one_clear_error(tmp_path, smtp_server, extra, environ, expected):
    settings = settings_with(tmp_path, smtp_server, extra, **environ)
    with pytest.raises(ConfigError, match=re.escape(expected)) as raised:
        signer_from(settings.smtp, settings.root)
    assert "SECRET" not in str(raised.value) and "\n" not in str(raised.value)


# -- `campaign check`: SMTP without DKIM ---------------------------------------------------------

def check_settings(tmp_path, provider: str, extra: str = "", **environ: str):
    config = tmp_path / "campaign.toml"
    config.write_text(f'provider = "{provider}"\n[smtp]\n{extra}\n', encoding="utf-8")
    return load_settings(config, environ={"CAMPAIGN_TOKEN_SECRET": "test-secret", **environ})


@pytest.mark.parametrize("provider, extra, with_key, expected", [
    ("smtp", "", False, ["dkim-missing"]),
    ("smtp", "relay_signs = true", False, []),
    ("smtp", f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"', True, []),
    ("smtp", f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"', False, ["dkim-key"]),
    ("sendgrid", "", False, []),
    ("outbox", "", False, []),
])
def test_check_warns_when_smtp_mail_would_go_unsigned(tmp_path, key, provider, extra, with_key, expected):
    environ = {"SMTP_DKIM_PRIVATE_KEY": key[0]} if with_key else {}
    findings = check_signing(check_settings(tmp_path, provider, extra, **environ))
    assert [finding.code for finding in findings] == expected
    assert all("campaign.toml" == finding.where and finding.fix for finding in findings)


def test_campaign_check_shows_the_dkim_warning_for_an_smtp_project(tmp_path):
    config = tmp_path / "campaign.toml"
    config.write_text((REPO / "campaign.toml").read_text(encoding="utf-8")
                      .replace('provider = "outbox"', 'provider = "smtp"')
                      .replace('content_dir = "content"', f'content_dir = "{REPO / "content"}"')
                      .replace('layouts_dir = "layouts"', f'layouts_dir = "{REPO / "layouts"}"')
                      .replace('recipients = "recipients.example.csv"',
                               f'recipients = "{REPO / "recipients.example.csv"}"'), encoding="utf-8")
    assert 'provider = "smtp"' in config.read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "--issue", "30", "--no-spam", "--config", str(config)],
                                env={"CAMPAIGN_TOKEN_SECRET": "test-secret"})
    assert "warning dkim-missing" in result.stdout, result.output
    assert "relay_signs" in result.stdout


def test_messages_sent_over_several_connections_each_verify(tmp_path, smtp_server, key):
    pem, record = key
    smtp_server.delay = 0.01
    settings = settings_with(tmp_path, smtp_server, f'dkim_domain = "{DOMAIN}"\ndkim_selector = "{SELECTOR}"\n'
                             'connections = 3', SMTP_DKIM_PRIVATE_KEY=pem)
    report = send_issue(open_ledger(settings.database), small_issue(), people(30), SmtpProvider(settings), settings,
                        SendOptions(batch_size=10))
    assert report.counts["accepted"] == 30 and len(smtp_server.peers) == 3
    assert all(dkim.verify(stored.data, dnsfunc=dns_for(record)) for stored in smtp_server.messages)
