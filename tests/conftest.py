# --- provider test servers (owner: providers) -------------------------------------------
# sendgrid_server: a local SendGrid mail/send on 127.0.0.1 (tests/servers/sendgrid_server.py);
#   .url for SENDGRID_API_URL, .api_key for SENDGRID_API_KEY, .script(Fault...) to inject faults,
#   .mail_sends() / .delivered() to read back what arrived.
# smtp_server: aiosmtpd on 127.0.0.1 (tests/servers/smtp_server.py); .host/.port,
#   .refuse(addr, code), .drop_next("MAIL"|"RCPT"|"DATA"), .messages (parsed with .message).
# sendgrid_settings / sendgrid_provider: provider_support's settings and the real SendGrid provider,
#   pointed at sendgrid_server.
import pytest

from campaign.providers import make_provider
from provider_support import provider_settings
from servers.sendgrid_server import SendGridServer
from servers.smtp_server import SmtpServer


@pytest.fixture
def sendgrid_server():
    with SendGridServer() as server:
        yield server


@pytest.fixture
def sendgrid_settings(tmp_path, sendgrid_server):
    return provider_settings(tmp_path, SENDGRID_API_URL=sendgrid_server.url,
                             SENDGRID_API_KEY=sendgrid_server.api_key)


@pytest.fixture
def sendgrid_provider(sendgrid_settings):
    provider = make_provider("sendgrid", sendgrid_settings)
    yield provider
    provider.close()


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server
# --- end of provider test servers --------------------------------------------------------
