"""The few exceptions `campaign` raises. Each message is what the user should read."""


class CampaignError(Exception):
    """Root of every error the CLI turns into a one-line message."""

    exit_code = 1


class UsageError(CampaignError):
    """The command was asked for something that does not exist or makes no sense."""

    exit_code = 2


class ConfigError(CampaignError):
    """campaign.toml or the environment is missing or wrong."""

    exit_code = 2


class ContentError(CampaignError):
    """An issue's content files are malformed or incomplete."""


class LayoutError(CampaignError):
    """A layout is missing, or Jinja2 or MJML could not compile it."""


class RecipientsError(CampaignError):
    """The recipients file cannot be used."""


class OutputError(CampaignError):
    """A file or folder the tool writes (build_dir, the ledger's folder, an export) cannot be written."""


class LedgerError(CampaignError):
    """The SQLite ledger cannot be opened or disagrees with the request."""


class ProviderError(CampaignError):
    """The email provider refused or failed in a way that stops the send."""


class ProviderConfigError(ProviderError):
    """The provider cannot be used as configured: the send stops at once, nothing more is tried.

    SMTP: STARTTLS not offered, a certificate that does not verify, login refused,
    no connection after the retries, a 5xx to EHLO or MAIL FROM. The message names
    the host, the setting to check and the server's reply; the same fields are kept
    as attributes for callers that want them.
    """

    exit_code = 5

    def __init__(self, message: str, *, host: str = "", setting: str = "", reply: str = ""):
        super().__init__(message)
        self.host, self.setting, self.reply = host, setting, reply


class ProviderAuthError(ProviderConfigError):
    """The provider rejected the credentials (401/403, SMTP AUTH): nothing more is sent."""


class ChecksFailed(CampaignError):
    """Preflight checks found errors and the send was not forced."""


class TransientProviderError(ProviderError):
    """The batch certainly did not go out, and trying again later may work (429, 5xx, refused)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
