"""config.toml validation: every problem at once, each naming its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_minimal_config_gets_defaults(tmp_path: Path):
    config = load_config(
        _write(tmp_path, '[newsletter]\ntitle = "T"\nbase_url = "https://x.org"\n'), environ={}
    )
    assert config.base_url == "https://x.org/"
    assert config.editions.group_by == "week"
    assert config.sender.kind == "outbox"
    assert config.database_url == f"sqlite:///{tmp_path.resolve()}/.newsletter/state.db"
    assert config.list_id == "T <newsletter.x.org>"


def test_every_problem_is_reported_with_its_line(tmp_path: Path):
    text = """[newsletter]
title = "T"
base_url = "ftp://nope"
timezone = "Mars/Olympus"
language = "xx-QQ-zz"

[editions]
group_by = "fortnight"
gruop_by = "week"
title = "{numbr}"

[sender]
kind = "pigeon"
rate = "fast"

[bogus]
"""
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), environ={})
    lines = err.value.lines()
    expected = [
        "config.toml:3: [newsletter] base_url: must be an absolute http(s) URL",
        "config.toml:4: [newsletter] timezone: unknown IANA time zone 'Mars/Olympus'",
        "config.toml:5: [newsletter] language: unknown language tag",
        "config.toml:8: [editions] group_by: must be one of week, month, issue, explicit",
        "config.toml:9: [editions] gruop_by: unknown key (did you mean 'group_by'?)",
        "config.toml:10: [editions] title: bad pattern",
        "config.toml:13: [sender] kind: must be one of",
        "config.toml:14: [sender] rate: must be a rate",
        "config.toml:16: [bogus]: unknown section",
    ]
    for prefix in expected:
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)


def test_invalid_toml_points_at_the_line(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, '[newsletter]\ntitle = "T"\nbase_url = \n'), environ={})
    assert err.value.lines()[0].startswith("config.toml:3: invalid TOML")


def test_missing_config_has_a_hint(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, environ={})
    assert "newsletter init" in (err.value.hint or "")


def test_environment_overrides(tmp_path: Path):
    root = _write(
        tmp_path,
        '[newsletter]\ntitle = "T"\nbase_url = "https://x.org"\n[sender]\nkind = "outbox"\n',
    )
    config = load_config(
        root,
        environ={
            "NEWSLETTER_SENDER__KIND": "smtp",
            "NEWSLETTER_SENDER__CONCURRENCY": "8",
            "NEWSLETTER_SENDER__SMTP__HOST": "mail.internal",
            "NEWSLETTER_NEWSLETTER__BASE_URL": "https://y.org/",
        },
    )
    assert config.sender.kind == "smtp" and config.sender.concurrency == 8
    assert config.sender.options["smtp"]["host"] == "mail.internal"
    assert config.base_url == "https://y.org/"


def test_line_breaks_in_header_strings_are_refused(tmp_path: Path):
    root = _write(
        tmp_path, '[newsletter]\ntitle = "T\\r\\nBcc: x@y.org"\nbase_url = "https://x.org"\n'
    )
    with pytest.raises(ConfigError, match="line breaks"):
        load_config(root, environ={})


def test_a_bad_cron_line_is_one_located_problem_among_the_others(tmp_path: Path):
    # A ScheduleError once escaped validation here: the other problems were lost, with no line.
    text = """[newsletter]
title = "T"
base_url = "https://x.org"
timezone = "Mars/Olympus"

[editions]
group_by = "fortnight"

[schedule]
cron = "0 8 * * 9"
misfire_grace = "soon"
"""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), environ={})
    assert [str(p) for p in info.value.problems] == [
        "config.toml:4: [newsletter] timezone: unknown IANA time zone 'Mars/Olympus'",
        "config.toml:7: [editions] group_by: must be one of week, month, issue, explicit; "
        "got 'fortnight'",
        "config.toml:10: [schedule] cron: weekday '9' in '0 8 * * 9' is out of range",
        'config.toml:11: [schedule] misfire_grace: must be a duration such as "30m", "6h" or "1d"',
    ]


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 8 * *", "'0 8 * *' must have 5 fields"),
        ("61 8 * * mon", "invalid expression '61 8 * * mon'"),
        ("0 8 * * 3-1", "weekday '3-1' in '0 8 * * 3-1' is out of range"),
    ],
)
def test_cron_problems_name_the_key_and_the_line(tmp_path: Path, cron: str, reason: str):
    text = f'[newsletter]\ntitle = "T"\nbase_url = "https://x.org"\n[schedule]\ncron = "{cron}"\n'
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), environ={})
    [problem] = info.value.problems
    assert str(problem).startswith(f"config.toml:5: [schedule] cron: {reason}")


def test_the_developers_environment_never_reaches_a_test() -> None:
    # tests/conftest.py's autouse clean_environ: run the suite with NEWSLETTER_SENDER__KIND=smtp
    # exported and this still holds.
    import os

    assert [k for k in os.environ if k.startswith("NEWSLETTER_")] == []
