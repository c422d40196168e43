"""[serve] settings and `newsletter serve` start-up errors (no server is started here)."""

from __future__ import annotations

import ipaddress

import pytest
from click.testing import CliRunner

import newsletter.cli_serve  # noqa: F401 - registers the commands, as cli.py will
from newsletter.cli import cli
from newsletter.errors import ConfigError
from newsletter.serve.settings import Limit, ServeSettings, load_settings
from tests.conftest import BASE_CONFIG, MakeProject


def test_defaults_bind_loopback(make_project: MakeProject):
    settings = load_settings(make_project(), environ={})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.ip_limit == Limit(30, 3600) and settings.address_limit == Limit(3, 86400)
    assert settings.trusted_proxies == ()


def test_file_then_environment_then_flags(make_project: MakeProject):
    config = make_project(
        extra_config='\n[serve]\nhost = "0.0.0.0"\nport = 9000\nrate_limit = "5/min"\n'
    )
    settings = load_settings(
        config, environ={"NEWSLETTER_SERVE__PORT": "9100"}, trusted_proxies=["10.0.0.0/8", "::1"]
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 9100)
    assert settings.ip_limit == Limit(5, 60)
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    flags = load_settings(config, environ={}, host="127.0.0.2", port=9200)
    assert (flags.host, flags.port) == ("127.0.0.2", 9200)


@pytest.mark.parametrize(
    "table, key",
    [
        ('rate_limit = "lots"', "rate_limit"),
        ('rate_limit = "0/h"', "rate_limit"),
        ('port = "http"', "port"),
    ],
)
def test_bad_values_name_their_key(make_project: MakeProject, table: str, key: str):
    config = make_project(extra_config=f"\n[serve]\n{table}\n")
    with pytest.raises(ConfigError, match=rf"\[serve\] {key}"):
        load_settings(config, environ={})


def test_bad_proxy_is_refused(make_project: MakeProject):
    with pytest.raises(ConfigError, match="not an IP address"):
        load_settings(make_project(), environ={}, trusted_proxies=["proxy.local"])


def test_service_url_for_confirmation_links(make_project: MakeProject):
    config = make_project()
    assert ServeSettings().service_url(config) == "https://digest.example.org/"
    assert (
        ServeSettings(public_url="https://news.example.org").service_url(config)
        == "https://news.example.org/"
    )
    elsewhere = make_project(
        config=BASE_CONFIG + 'unsubscribe_url = "https://lists.example.net/nl/unsubscribe/"\n'
    )
    assert ServeSettings().service_url(elsewhere) == "https://lists.example.net/nl/"


def test_serve_without_the_secret_fails_cleanly(make_project: MakeProject):
    config = make_project()
    result = CliRunner().invoke(
        cli, ["-C", str(config.root), "serve"], env={"NEWSLETTER_SECRET": ""}
    )
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_bad_limit_fails_cleanly(make_project: MakeProject):
    config = make_project()
    result = CliRunner().invoke(
        cli,
        ["-C", str(config.root), "serve"],
        env={"NEWSLETTER_SECRET": "x" * 32, "NEWSLETTER_SERVE__RATE_LIMIT": '"lots"'},
    )
    assert result.exit_code == 1 and "[serve] rate_limit" in result.stderr


def test_help_texts(make_project: MakeProject):
    for command in ("serve", "unsubscribe"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output
