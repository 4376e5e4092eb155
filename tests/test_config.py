"""campaign.toml and the environment, read into Settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from campaign.config import load_settings
from campaign.errors import ConfigError


def test_environment_overrides_do_not_leak_into_later_settings(tmp_path):
    (tmp_path / "campaign.toml").write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    first = load_settings(tmp_path / "campaign.toml", environ={"SMTP_USERNAME": "alice", "SMTP_HOST": "mx"})
    second = load_settings(tmp_path / "campaign.toml", environ={})
    assert (first.smtp.username, first.smtp.host) == ("alice", "mx")
    assert (second.smtp.username, second.smtp.host) == ("", "localhost")


def test_secrets_come_only_from_the_environment_and_never_show_in_repr(tmp_path):
    (tmp_path / "campaign.toml").write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    settings = load_settings(tmp_path / "campaign.toml",
                             environ={"SENDGRID_API_KEY": "SG.secret", "SMTP_PASSWORD": "hunter2"})
    assert settings.sendgrid.api_key == "SG.secret" and settings.smtp.password == "hunter2"
    assert "SG.secret" not in repr(settings) and "hunter2" not in repr(settings)


def test_an_api_key_written_in_the_config_file_is_refused(tmp_path):
    (tmp_path / "campaign.toml").write_text('[sendgrid]\napi_key = "SG.x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="api_key"):
        load_settings(tmp_path / "campaign.toml", environ={})


def test_link_token_secret_is_made_once_per_project_and_kept_private(tmp_path):
    (tmp_path / "campaign.toml").write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    first = load_settings(tmp_path / "campaign.toml", environ={})
    second = load_settings(tmp_path / "campaign.toml", environ={})
    assert first.token_secret and first.token_secret == second.token_secret
    assert (tmp_path / ".campaign-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("text, fragment", [
    ('provider = "mailgun"\n', "provider 'mailgun' is unknown"),
    ('[smtp]\nport = "x"\n', "[smtp] port 'x' is not a whole number"),
    ('[smtp]\nsecurity = "ssl3"\n', "security 'ssl3' is unknown"),
    ("provider = \n", "not valid TOML"),
])
def test_bad_configuration_names_the_file_and_the_setting(tmp_path, text, fragment):
    path = tmp_path / "campaign.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert fragment in str(error.value) and str(path) in str(error.value)


def test_a_missing_config_file_named_on_the_command_line_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_sendgrid_tracking_is_off_unless_turned_on(tmp_path):
    path = tmp_path / "campaign.toml"
    path.write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    default = load_settings(path, environ={}).sendgrid
    assert (default.track_clicks, default.track_opens) == (False, False)
    path.write_text('[sendgrid]\ntrack_clicks = true\ntrack_opens = true\n', encoding="utf-8")
    turned_on = load_settings(path, environ={}).sendgrid
    assert (turned_on.track_clicks, turned_on.track_opens) == (True, True)


@pytest.mark.parametrize("url", ["http://api.sendgrid.com", "ftp://127.0.0.1", "api.sendgrid.com",
                                 "http://127.0.0.1.example.org:8080"])
def test_the_sendgrid_api_url_must_be_https_unless_it_is_this_machine(tmp_path, url):
    path = tmp_path / "campaign.toml"
    path.write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"environment variable SENDGRID_API_URL .* must start with https://"):
        load_settings(path, environ={"SENDGRID_API_URL": url})


@pytest.mark.parametrize("url", ["https://api.eu.sendgrid.com", "http://127.0.0.1:8025", "http://[::1]:80",
                                 "http://localhost:9000/prefix"])
def test_https_and_loopback_sendgrid_urls_are_accepted(tmp_path, url):
    path = tmp_path / "campaign.toml"
    path.write_text('[lists.members]\ndescription = "m"\n', encoding="utf-8")
    assert load_settings(path, environ={"SENDGRID_API_URL": url}).sendgrid.api_url == url


def test_a_tracking_setting_that_is_not_true_or_false_is_refused(tmp_path):
    path = tmp_path / "campaign.toml"
    path.write_text('[sendgrid]\ntrack_clicks = "yes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[sendgrid\] track_clicks 'yes' is not true or false"):
        load_settings(path, environ={})

# -- issue 11 items 3, 6, 13, 17, 19 and issue 10 bugs 1, 3, 4: everything checked at load ---------

LISTS = '[lists.members]\ndescription = "m"\n'


def _error(tmp_path, text: str, environ: dict | None = None) -> str:
    path = tmp_path / "campaign.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={"CAMPAIGN_TOKEN_SECRET": "s" * 40, **(environ or {})})
    return str(error.value)


@pytest.mark.parametrize("text, named, nearest", [
    ('recipient = "other.csv"\n', "'recipient'", "'recipients'"),
    ('databse = "other.db"\n', "'databse'", "'database'"),
    ('[sendr]\nfrom_email = "a@example.org"\n', "[sendr]", "[sender]"),
    ('[smtp]\ntimout = 5\n', "[smtp] 'timout'", "'timeout'"),
    ('[lists.members]\ndescription = "m"\ndescripton = "x"\n', "[lists.members] 'descripton'", "'description'"),
])
def test_an_unknown_key_or_section_is_an_error_naming_it_and_the_nearest_known_one(tmp_path, text, named, nearest):
    message = _error(tmp_path, text)
    assert named in message and f"did you mean {nearest}?" in message and "campaign.toml" in message


@pytest.mark.parametrize("text, fragment", [
    ("content_dir = 5\n", "content_dir 5 is not a path"),
    ('lists = "members"\n', "[lists] must be one or more tables [lists.NAME]"),
    ('[smtp]\ntimeout = "30s"\n', "[smtp] timeout '30s' is not a number"),
    ('[smtp]\ntimeout = "abc"\n', "[smtp] timeout 'abc' is not a number"),
    ("[smtp]\ntimeout = -5\n", "[smtp] timeout -5 is out of range"),
    ("[sendgrid]\ntimeout = 0\n", "[sendgrid] timeout 0 is out of range"),
    ("[smtp]\nport = 70000\n", "[smtp] port 70000 is out of range"),
    ("[smtp]\nport = true\n", "[smtp] port True is not a whole number"),
    ("[smtp]\nconnections = 0\n", "[smtp] connections 0 is out of range"),
    ("[smtp]\nconnections = 17\n", "[smtp] connections 17 is out of range"),
    ('[sendgrid]\napi_url = "api.sendgrid.com"\n', "[sendgrid] api_url 'api.sendgrid.com' must start with https://"),
    ('[sendgrid]\napi_url = "ftp://api.sendgrid.com"\n', "must start with https://"),
    ('[links]\nview_url = "ftp://x.example.org/"\n', "is not a web address"),
    ('[links]\nview_url = "https://x.example.org/{lang}/"\n', "[links] view_url 'https://x.example.org/{lang}/' uses {lang}"),
    ('[links]\nunsubscribe_url = "https://x.example.org/u?t={token"\n', "has a lone '{' or '}'"),
    ('[links]\nimages_url = "https://x.example.org/{token}/"\n', "uses {token}; only {issue} can be filled in"),
    ('[sender]\nfrom_email = "not an address"\n', "[sender] from_email 'not an address' is not an email address"),
    ('[sender]\nreply_to = "x@"\n', "[sender] reply_to 'x@' is not an email address"),
    ('[sender]\nfrom_name = "A\\r\\nBcc: x@example.org"\n', "holds a line break"),
    ('[lists.members]\n', "[lists.members] has no description"),
    ('[lists.members]\ndescription = 3\n', "[lists.members] description 3 is not text"),
])
def test_every_setting_is_checked_when_the_configuration_is_loaded(tmp_path, text, fragment):
    message = _error(tmp_path, text)
    assert fragment in message and str(tmp_path / "campaign.toml") in message


@pytest.mark.parametrize("variable, value, fragment", [
    ("SMTP_PORT", "abc", "environment variable SMTP_PORT 'abc' is not a whole number"),
    ("CAMPAIGN_PROVIDER", "mailgun", "environment variable CAMPAIGN_PROVIDER 'mailgun' is unknown"),
    ("SENDGRID_API_URL", "api.sendgrid.com", "environment variable SENDGRID_API_URL 'api.sendgrid.com' "
                                             "must start with https://"),
    ("SMTP_SECURITY", "ssl", "environment variable SMTP_SECURITY 'ssl' is unknown"),
])
def test_a_wrong_environment_variable_is_named_not_blamed_on_the_file(tmp_path, variable, value, fragment):
    message = _error(tmp_path, LISTS, {variable: value})
    assert fragment in message and "campaign.toml" not in message


def test_environment_values_are_typed_like_the_file(tmp_path):
    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    settings = load_settings(tmp_path / "campaign.toml",
                             environ={"SMTP_PORT": "2525", "CAMPAIGN_TOKEN_SECRET": "s" * 40})
    assert settings.smtp.port == 2525


def test_a_missing_sender_uses_the_documented_built_in_one(tmp_path):
    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    settings = load_settings(tmp_path / "campaign.toml", environ={"CAMPAIGN_TOKEN_SECRET": "s" * 40})
    assert settings.sender.from_email == "newsletter@wego.example.org"  # `check` warns it is a placeholder


# -- the link-token secret ------------------------------------------------------------------

def test_an_empty_secret_file_is_an_error_never_an_empty_key(tmp_path):
    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    (tmp_path / ".campaign-secret").write_text("", encoding="ascii")
    with pytest.raises(ConfigError, match="not a usable secret"):
        load_settings(tmp_path / "campaign.toml", environ={})


def test_a_short_secret_file_is_an_error(tmp_path):
    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    (tmp_path / ".campaign-secret").write_text("abc\n", encoding="ascii")
    with pytest.raises(ConfigError, match="delete it so a new one is made"):
        load_settings(tmp_path / "campaign.toml", environ={})


def test_an_empty_key_never_makes_a_token_or_a_bounce_address():
    from campaign.personalize import bounce_token, recipient_token

    with pytest.raises(ConfigError, match="CAMPAIGN_TOKEN_SECRET"):
        recipient_token("a@example.org", "")
    with pytest.raises(ConfigError, match="CAMPAIGN_TOKEN_SECRET"):
        bounce_token("a@example.org", "")


def test_the_secret_file_is_made_whole_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    settings = load_settings(tmp_path / "campaign.toml", environ={})
    assert (tmp_path / ".campaign-secret").read_text(encoding="ascii").strip() == settings.token_secret
    assert len(settings.token_secret) >= 32
    assert sorted(path.name for path in tmp_path.iterdir()) == [".campaign-secret", "campaign.toml"]


def _load_secret(root: str) -> str:
    from pathlib import Path

    return load_settings(Path(root) / "campaign.toml", environ={}).token_secret


def test_processes_making_the_secret_at_once_all_get_the_same_one(tmp_path):
    import multiprocessing

    (tmp_path / "campaign.toml").write_text(LISTS, encoding="utf-8")
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        secrets_seen = pool.map(_load_secret, [str(tmp_path)] * 12)
    assert len(set(secrets_seen)) == 1 and len(secrets_seen[0]) >= 32
    assert (tmp_path / ".campaign-secret").read_text(encoding="ascii").strip() == secrets_seen[0]


PROJECT = Path(__file__).resolve().parents[1]


def _without_write_permission(tmp_path) -> list[str]:
    """A command prefix under which tmp_path (mode 0555) cannot be written, even by root."""
    tmp_path.chmod(0o555)
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def read_only_project(tmp_path):
    """A project folder nobody can write in: campaign.toml only, content and layouts from the repository."""
    project = tmp_path / "project"
    project.mkdir()
    build = tmp_path / "build"
    build.mkdir()
    (project / "campaign.toml").write_text(
        f'content_dir = "{PROJECT / "content"}"\nlayouts_dir = "{PROJECT / "layouts"}"\n'
        f'recipients = "{PROJECT / "recipients.example.csv"}"\nbuild_dir = "{build}"\n'
        f'database = "{tmp_path / "campaign.db"}"\n' + LISTS, encoding="utf-8")
    prefix = _without_write_permission(project)
    yield project, prefix
    project.chmod(0o755)


def _run(prefix: list[str], *args: str, environ: dict | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CAMPAIGN_TOKEN_SECRET"}
    return subprocess.run([*prefix, sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**env, **(environ or {})})


def test_a_read_only_project_without_a_secret_refuses_to_make_tokens(read_only_project):
    project, prefix = read_only_project
    result = _run(prefix, "-m", "campaign", "preview", "--issue", "30", "--config", str(project / "campaign.toml"))
    assert result.returncode == 2, result.stderr
    assert "CAMPAIGN_TOKEN_SECRET" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / ".campaign-secret").exists()


def test_a_read_only_project_with_the_secret_in_the_environment_makes_stable_tokens(read_only_project):
    project, prefix = read_only_project
    script = ("import sys; from pathlib import Path; from campaign.config import load_settings; "
              "from campaign.personalize import recipient_token; "
              "print(recipient_token('a@example.org', load_settings(Path(sys.argv[1])).token_secret))")
    runs = [_run(prefix, "-c", script, str(project / "campaign.toml"), environ={"CAMPAIGN_TOKEN_SECRET": "k" * 40})
            for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_a_read_only_project_can_still_run_commands_that_make_no_tokens(read_only_project):
    project, prefix = read_only_project
    result = _run(prefix, "-m", "campaign", "lists", "--config", str(project / "campaign.toml"))
    assert result.returncode == 0, result.stderr

@pytest.mark.parametrize("setting, fragment", [
    ('list_id = "<newsletter.example.org>"', "list_id '<newsletter.example.org>' is not a list id"),
    ('list_id = "newsletter"', "list_id 'newsletter' is not a list id"),
    ('list_name = "Say \\"hi\\""', "list_name"),
    ('list_name = "Café"', "must be plain ASCII"),
])
def test_a_list_id_that_cannot_go_into_the_header_is_refused(tmp_path, setting, fragment):
    path = tmp_path / "campaign.toml"
    path.write_text(f"[sender]\n{setting}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert fragment in str(error.value) and str(path) in str(error.value) and "[sender]" in str(error.value)
