"""The SMTP provider over real TLS: STARTTLS and implicit TLS, with certificates verified."""

from __future__ import annotations

import ssl
from collections import Counter

import pytest

from campaign.errors import ProviderError
from campaign.ledger import open_ledger
from campaign.providers import Batch, Status, make_provider
from campaign.providers.smtp import SmtpProvider
from campaign.send import SendOptions, send_issue
from provider_support import envelope, provider_settings, rendered_issue
from send_support import make_settings, people, small_issue
from servers.smtp_server import SmtpServer

trustme = pytest.importorskip("trustme", reason="trustme (a test CA) is a test dependency: pip install -e '.[test]'")

LOGIN = ("newsletter", "s3cret")
# implicit TLS: aiosmtpd does not count a TLS socket as TLS for AUTH, so it warns; the connection is TLS
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def authority(tmp_path, monkeypatch):
    """A throw-away certificate authority that the client trusts (through SSL_CERT_FILE)."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return ca


def server_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def send_one(tmp_path, server, security):
    settings = provider_settings(tmp_path, SMTP_HOST=server.host, SMTP_PORT=str(server.port), SMTP_SECURITY=security,
                                 SMTP_USERNAME=LOGIN[0], SMTP_PASSWORD=LOGIN[1])
    provider = make_provider("smtp", settings)
    try:
        return provider.send(Batch(issue=rendered_issue(), envelopes=[envelope("ana@example.org", "Ana")],
                                   batch_id="b-1", lists=("members",)))
    finally:
        provider.close()


@pytest.mark.parametrize("security, tls", [("starttls", "starttls"), ("tls", "implicit")])
def test_mail_goes_over_verified_tls_with_a_login(tmp_path, authority, security, tls):
    with SmtpServer(login=LOGIN, tls=tls, certificate=server_context(authority)) as server:
        results = send_one(tmp_path, server, security)
        assert [(r.email, r.status) for r in results] == [("ana@example.org", Status.ACCEPTED)]
        assert server.logins == [LOGIN[0]]
        assert server.recipients() == ["ana@example.org"]


def test_a_certificate_nobody_vouches_for_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    stranger = trustme.CA()  # the client does not trust this authority
    with SmtpServer(login=LOGIN, tls="starttls", certificate=server_context(stranger)) as server:
        with pytest.raises(ProviderError, match=r"TLS with SMTP server 127\.0\.0\.1:\d+ failed") as error:
            send_one(tmp_path, server, "starttls")
        assert LOGIN[1] not in str(error.value)
        assert server.recipients() == []


def test_each_of_several_connections_starts_tls_and_logs_in_on_its_own(tmp_path, authority):
    with SmtpServer(login=LOGIN, tls="starttls", certificate=server_context(authority)) as server:
        server.delay = 0.02
        settings = make_settings(tmp_path, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port),
                                            "SMTP_SECURITY": "starttls", "SMTP_USERNAME": LOGIN[0],
                                            "SMTP_PASSWORD": LOGIN[1]}, connections=3)
        report = send_issue(open_ledger(settings.database), small_issue(), people(30), SmtpProvider(settings),
                            settings, SendOptions(batch_size=10))
        assert report.counts["accepted"] == 30
        assert server.logins == [LOGIN[0]] * 3 and len(server.peers) == 3
        assert Counter(server.recipients()) == Counter(r.email for r in people(30))
