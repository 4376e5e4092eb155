"""campaign.toml and the environment, read into Settings."""

from __future__ import annotations

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
    ('[smtp]\nport = "x"\n', "SMTP port 'x' is not a number"),
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
    with pytest.raises(ConfigError, match=r"\[sendgrid\] api_url \(SENDGRID_API_URL\) .* must start with https://"):
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
    with pytest.raises(ConfigError, match=r"\[sendgrid\] track_clicks must be true or false"):
        load_settings(path, environ={})
