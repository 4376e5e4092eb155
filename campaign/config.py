"""campaign.toml plus the environment, read once into frozen Settings.

Secrets (API keys, SMTP passwords, the token secret) come only from the
environment. Every path in campaign.toml is relative to the file itself. Every
value is checked here, at load, before anything is sent or marked: an unknown
key, a wrong type or a bad value is a ConfigError naming the file (or the
environment variable), the setting and what to write instead.

Adding a setting is one line in its section, e.g.

    list_id: str = setting("", check=optional(text))
    timeout: float = setting(30.0, check=seconds, env="SMTP_TIMEOUT")

and a new section is a frozen dataclass of such fields plus one line in
Settings (`dkim: DkimSettings = setting()`). Unknown keys, types, ranges and
environment variables are then handled by config_schema.load_section.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from .config_schema import (Source, address, at_least, between, derived, host_name, https_or_loopback, load_section,
                            mailto, one_of, optional, secret, seconds, setting, text, url_template)
from .errors import ConfigError
from .token_secret import SECRET_FILE, project_secret

CONFIG_FILE = "campaign.toml"
PROVIDERS = ("outbox", "smtp", "sendgrid")
SMTP_SECURITY = ("starttls", "tls", "none")
__all__ = ["CONFIG_FILE", "SECRET_FILE", "PROVIDERS", "Settings", "load_settings"]


@dataclass(frozen=True)
class MailingList:
    name: str = setting()
    description: str = setting(check=text)


def list_identifier(value: str) -> str:
    """RFC 2919's list id: a dotted name under the sender's domain, without <> or @."""
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", value):
        raise ValueError('is not a list id; write a dotted name under your domain, e.g. "newsletter.example.org"')
    return value


def header_phrase(value: str) -> str:
    """Plain ASCII text without quotes or backslashes: it is quoted into a header as it is."""
    if not re.fullmatch(r"[ !#-\[\]-~]+", value):
        raise ValueError("must be plain ASCII text without quotes or backslashes (it goes into the List-Id header)")
    return value


@dataclass(frozen=True)
class Sender:
    from_name: str = setting("WeGO Secretariat", check=text)
    from_email: str = setting("newsletter@wego.example.org", check=address)
    reply_to: str = setting("secretariat@wego.example.org", check=optional(address))
    organisation: str = setting("World Smart Sustainable Cities Organization (WeGO)", check=text)
    postal_address: str = setting("WeGO Secretariat, Seoul Global Center 5F, 38 Jong-ro, Jongno-gu, Seoul 03188, "
                                  "Republic of Korea", check=text)
    # The List-Id header (RFC 2919), the same for every issue: "list_name" <list_id>.
    list_id: str = setting("", check=optional(list_identifier))  # "": "newsletter." + the From domain
    list_name: str = setting("", check=optional(header_phrase))  # "": newsletter_name


@dataclass(frozen=True)
class WebLinks:
    """URL patterns. `{issue}` is the issue number, `{token}` an opaque per-recipient token."""

    unsubscribe_url: str = setting("https://wego.example.org/newsletter/unsubscribe?t={token}",
                                   check=url_template("issue", "token"))
    unsubscribe_mailto: str = setting("unsubscribe@wego.example.org", check=optional(mailto))
    view_url: str = setting("https://wego.example.org/newsletter/issue-{issue}/",
                            check=url_template("issue", "token"))
    images_url: str = setting("https://wego.example.org/newsletter/issue-{issue}/images/",
                              check=url_template("issue"))


@dataclass(frozen=True)
class SmtpSettings:
    host: str = setting("localhost", check=host_name, env="SMTP_HOST")
    port: int = setting(587, check=between(1, 65535), env="SMTP_PORT")
    security: str = setting("starttls", check=one_of(*SMTP_SECURITY), env="SMTP_SECURITY")
    username: str = setting("", env="SMTP_USERNAME")
    password: str = secret("SMTP_PASSWORD")
    timeout: float = setting(30.0, check=seconds)             # connecting, and each command's reply
    data_timeout: float = setting(600.0, check=seconds)       # the reply after the body (RFC 5321 4.5.3.2.6)
    connections: int = setting(1, check=between(1, 16))       # connections sending at once (each message written ahead)
    max_per_connection: int = setting(0, check=at_least(0))   # messages per connection, then reconnect (0: no limit)
    max_per_minute: int = setting(0, check=at_least(0))       # messages per minute (0: no limit)
    envelope_from: str = setting("", check=optional(address))  # MAIL FROM, where bounces go ("": from_email)
    verp: bool = setting(False)                               # MAIL FROM local+TOKEN@domain, TOKEN naming the recipient
    dkim_domain: str = setting("", check=optional(host_name))      # d= of the DKIM signature ("": no signing)
    dkim_selector: str = setting("", check=optional(text))    # s=: the key's DNS name is SELECTOR._domainkey.DOMAIN
    dkim_key_file: str = setting("", check=optional(text))    # PEM private key file, relative to campaign.toml
    dkim_private_key: str = secret("SMTP_DKIM_PRIVATE_KEY")   # PEM text
    relay_signs: bool = setting(False)                        # the relay DKIM-signs for us: `check` does not ask


@dataclass(frozen=True)
class SendGridSettings:
    api_url: str = setting("https://api.sendgrid.com", check=https_or_loopback, env="SENDGRID_API_URL")
    api_key: str = secret("SENDGRID_API_KEY")
    timeout: float = setting(30.0, check=seconds)
    track_clicks: bool = setting(False)  # SendGrid rewrites links to count clicks (click_tracking)
    track_opens: bool = setting(False)   # SendGrid adds a tracking pixel (open_tracking)
    # The Event Webhook's verification key (base64, as SendGrid shows it): POST /webhooks/sendgrid is
    # answered only when it is set.
    webhook_public_key: str = secret("SENDGRID_WEBHOOK_PUBLIC_KEY")
    unsubscribe_group: int = setting(0, check=at_least(0))  # `suppress sync` also reads this group (0: none)
    concurrency: int = setting(4, check=between(1, 16))  # batches in flight at once (each written ahead first)


DEFAULT_LISTS = (MailingList("members", "Member cities of WeGO"),
                 MailingList("embassies", "Embassy contacts in Seoul"))


@dataclass(frozen=True, kw_only=True)
class Settings:
    root: Path = derived()
    content_dir: Path = setting("content")
    layouts_dir: Path = setting("layouts")
    build_dir: Path = setting("output")
    recipients: Path = setting("recipients.example.csv")
    database: Path = setting("campaign.db", env="CAMPAIGN_DATABASE")
    provider: str = setting("outbox", check=one_of(*PROVIDERS), env="CAMPAIGN_PROVIDER")
    newsletter_name: str = setting("WeGO e-Newsletter", check=text)  # the readers' service's pages
    sender: Sender = setting()
    links: WebLinks = setting()
    lists: tuple[MailingList, ...] = setting(DEFAULT_LISTS, table_of=MailingList)
    smtp: SmtpSettings = setting()
    sendgrid: SendGridSettings = setting()
    # CAMPAIGN_TOKEN_SECRET, else .campaign-secret; "" when neither can be had (making a token then fails).
    token_secret: str = derived("")

    def list_names(self) -> tuple[str, ...]:
        return tuple(mailing_list.name for mailing_list in self.lists)

    def issue_build_dir(self, number: int) -> Path:
        return self.build_dir / f"issue-{number}"


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None, *, recipients: Path | None = None
) -> Settings:
    """Read campaign.toml (or embedded defaults when there is none) and the environment.

    `recipients` (the --recipients option) takes the place of the recipients file campaign.toml names.
    """
    environ = os.environ if environ is None else environ
    path, raw = _read_config_file(config_path)
    root = path.parent if path else Path.cwd()
    source = Source(path or root / CONFIG_FILE, root, environ)
    settings: Settings = load_section(Settings, raw, source, root=root)
    if not settings.sender.list_name:  # the List-Id is named after the newsletter unless [sender] says otherwise
        settings = replace(settings, sender=replace(settings.sender, list_name=settings.newsletter_name))
    settings = _with_token_secret(settings, environ)
    return settings if recipients is None else replace(settings, recipients=Path(recipients).resolve())


def _with_token_secret(settings: Settings, environ: Mapping[str, str]) -> Settings:
    given = environ.get("CAMPAIGN_TOKEN_SECRET")
    if given is not None and given != "" and not given.strip():
        raise ConfigError("environment variable CAMPAIGN_TOKEN_SECRET is blank; set it to a long random "
                          "string, or unset it to use .campaign-secret")
    return replace(settings, token_secret=given or project_secret(settings.root))


def _read_config_file(config_path: Path | None) -> tuple[Path | None, dict]:
    if config_path is None:
        default = Path.cwd() / CONFIG_FILE
        if not default.exists():
            return None, {}
        config_path = default
    if not config_path.exists():
        raise ConfigError(f"{config_path}: no such configuration file; check --config")
    try:
        return config_path.resolve(), tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_path}: not valid TOML ({error}); fix the file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot be read ({error.strerror}); check its permissions") from None
