"""campaign.toml plus the environment, read once into frozen Settings.

Secrets (API keys, SMTP passwords, the token secret) come only from the
environment. Every path in campaign.toml is relative to the file itself.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

CONFIG_FILE = "campaign.toml"
SECRET_FILE = ".campaign-secret"
PROVIDERS = ("outbox", "smtp", "sendgrid")
SMTP_SECURITY = ("starttls", "tls", "none")
SECRET_FIELDS = {"password", "api_key", "dkim_private_key"}   # only from the environment


@dataclass(frozen=True)
class MailingList:
    name: str
    description: str


@dataclass(frozen=True)
class Sender:
    from_name: str
    from_email: str
    reply_to: str
    organisation: str
    postal_address: str


@dataclass(frozen=True)
class WebLinks:
    """URL patterns. `{issue}` is the issue number, `{token}` an opaque per-recipient token."""

    unsubscribe_url: str
    unsubscribe_mailto: str
    view_url: str
    images_url: str


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0              # connecting, and each command's reply
    data_timeout: float = 600.0        # the reply after the message body (RFC 5321 4.5.3.2.6)
    max_per_connection: int = 0        # messages per connection, then reconnect (0: no limit)
    max_per_minute: int = 0            # messages per minute (0: no limit)
    envelope_from: str = ""            # MAIL FROM, where bounces go (empty: [sender] from_email)
    verp: bool = False                 # MAIL FROM local+TOKEN@domain, TOKEN naming the recipient
    dkim_domain: str = ""              # d= of the DKIM signature (empty: no signing)
    dkim_selector: str = ""            # s=: the key's DNS name is SELECTOR._domainkey.DOMAIN
    dkim_key_file: str = ""            # PEM private key file, relative to campaign.toml
    dkim_private_key: str = field(default="", repr=False)   # PEM text, only from SMTP_DKIM_PRIVATE_KEY
    relay_signs: bool = False          # the relay DKIM-signs for us: `check` does not ask for DKIM


@dataclass(frozen=True)
class SendGridSettings:
    api_url: str = "https://api.sendgrid.com"
    api_key: str = field(default="", repr=False)
    timeout: float = 30.0
    track_clicks: bool = False   # SendGrid rewrites links to count clicks (click_tracking)
    track_opens: bool = False    # SendGrid adds a tracking pixel (open_tracking)


@dataclass(frozen=True)
class Settings:
    root: Path
    content_dir: Path
    layouts_dir: Path
    build_dir: Path
    recipients: Path
    database: Path
    provider: str
    sender: Sender
    links: WebLinks
    lists: tuple[MailingList, ...]
    smtp: SmtpSettings
    sendgrid: SendGridSettings
    token_secret: str = field(default="", repr=False)
    newsletter_name: str = "WeGO e-Newsletter"

    def list_names(self) -> tuple[str, ...]:
        return tuple(mailing_list.name for mailing_list in self.lists)

    def issue_build_dir(self, number: int) -> Path:
        return self.build_dir / f"issue-{number}"


DEFAULTS: dict = {
    "content_dir": "content",
    "layouts_dir": "layouts",
    "build_dir": "build",
    "recipients": "recipients.example.csv",
    "database": "campaign.db",
    "provider": "outbox",
    "newsletter_name": "WeGO e-Newsletter",
    "sender": {
        "from_name": "WeGO Secretariat",
        "from_email": "newsletter@wego.example.org",
        "reply_to": "secretariat@wego.example.org",
        "organisation": "World Smart Sustainable Cities Organization (WeGO)",
        "postal_address": "WeGO Secretariat, Seoul Global Center 5F, 38 Jong-ro, Jongno-gu, Seoul 03188, Republic of Korea",
    },
    "links": {
        "unsubscribe_url": "https://wego.example.org/newsletter/unsubscribe?t={token}",
        "unsubscribe_mailto": "unsubscribe@wego.example.org",
        "view_url": "https://wego.example.org/newsletter/issue-{issue}/",
        "images_url": "https://wego.example.org/newsletter/issue-{issue}/images/",
    },
    "lists": {
        "members": {"description": "Member cities of WeGO"},
        "embassies": {"description": "Embassy contacts in Seoul"},
    },
    "smtp": {},
    "sendgrid": {},
}

# Environment variables that override campaign.toml; the README lists each.
ENVIRONMENT = {
    "CAMPAIGN_PROVIDER": ("provider",),
    "CAMPAIGN_DATABASE": ("database",),
    "SENDGRID_API_URL": ("sendgrid", "api_url"),
    "SMTP_HOST": ("smtp", "host"),
    "SMTP_PORT": ("smtp", "port"),
    "SMTP_SECURITY": ("smtp", "security"),
    "SMTP_USERNAME": ("smtp", "username"),
}


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read campaign.toml (or embedded defaults when there is none) and the environment."""
    environ = os.environ if environ is None else environ
    path, raw = _read_config_file(config_path)
    merged = _merge(copy.deepcopy(DEFAULTS), raw)  # environment overrides must not leak into DEFAULTS
    for variable, keys in ENVIRONMENT.items():
        if environ.get(variable):
            _set_nested(merged, keys, environ[variable])
    root = path.parent if path else Path.cwd()
    return _build_settings(root, path or Path(CONFIG_FILE), merged, environ)


def with_overrides(settings: Settings, **changes) -> Settings:
    return replace(settings, **changes)


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


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "lists":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_nested(tree: dict, keys: tuple[str, ...], value: str) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _build_settings(root: Path, path: Path, raw: dict, environ: Mapping[str, str]) -> Settings:
    def section(name: str, cls):
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        known = set(cls.__dataclass_fields__) - SECRET_FIELDS
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"{path}: [{name}] has unknown setting {sorted(unknown)[0]!r}; "
                              f"known: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError(f"{path}: [{name}] is incomplete ({error})") from None

    provider = str(raw.get("provider", "outbox"))
    if provider not in PROVIDERS:
        raise ConfigError(f"{path}: provider {provider!r} is unknown; use one of {', '.join(PROVIDERS)}")
    smtp = section("smtp", SmtpSettings)
    smtp = replace(smtp, port=_as_port(smtp.port, path), password=environ.get("SMTP_PASSWORD", ""),
                   dkim_private_key=environ.get("SMTP_DKIM_PRIVATE_KEY", ""))
    if smtp.security not in SMTP_SECURITY:
        raise ConfigError(f"{path}: [smtp] security {smtp.security!r} is unknown; "
                          f"use one of {', '.join(SMTP_SECURITY)}")
    sendgrid = _checked_sendgrid(replace(section("sendgrid", SendGridSettings),
                                         api_key=environ.get("SENDGRID_API_KEY", "")), path)
    return Settings(
        root=root,
        content_dir=root / raw["content_dir"],
        layouts_dir=root / raw["layouts_dir"],
        build_dir=root / raw["build_dir"],
        recipients=root / raw["recipients"],
        database=root / raw["database"],
        provider=provider,
        sender=section("sender", Sender),
        links=section("links", WebLinks),
        lists=_lists(raw.get("lists", {}), path),
        smtp=smtp,
        sendgrid=sendgrid,
        token_secret=environ.get("CAMPAIGN_TOKEN_SECRET") or _project_secret(root),
        newsletter_name=str(raw["newsletter_name"]).strip() or DEFAULTS["newsletter_name"],
    )


def _project_secret(root: Path) -> str:
    """The key that makes per-recipient link tokens unguessable, when the environment gives none.

    Made once per project and kept in .campaign-secret (not committed), so the
    same person keeps the same token from one issue to the next.
    """
    path = root / SECRET_FILE
    try:
        secret = path.read_text(encoding="ascii").strip()
        if secret:
            return secret
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    secret = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return secret  # read-only project folder: tokens stay unguessable for this run
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    return secret


def _lists(raw: dict, path: Path) -> tuple[MailingList, ...]:
    if not raw:
        raise ConfigError(f"{path}: no [lists.NAME] table; name at least one mailing list")
    lists = []
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [lists.{name}] must be a table with a description")
        lists.append(MailingList(name=name, description=str(values.get("description", ""))))
    return tuple(lists)


def _checked_sendgrid(sendgrid: SendGridSettings, path: Path) -> SendGridSettings:
    """The API key travels in every request: only over https, or plain http to this machine (tests)."""
    parts = urlsplit(sendgrid.api_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
        raise ConfigError(f"{path}: [sendgrid] api_url (SENDGRID_API_URL) {sendgrid.api_url!r} must start with "
                          "https:// (plain http:// only to a loopback host such as 127.0.0.1)")
    for name in ("track_clicks", "track_opens"):
        if not isinstance(getattr(sendgrid, name), bool):
            raise ConfigError(f"{path}: [sendgrid] {name} must be true or false")
    return sendgrid


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _as_port(value, path: Path) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: SMTP port {value!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{path}: SMTP port {port} is out of range")
    return port
