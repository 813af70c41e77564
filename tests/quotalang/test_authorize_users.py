"""The `authorize users` setting: parsed, compiled to a flag, formatted, and given once."""

from __future__ import annotations

from quotalang.fmt import format_source
from tests.quotalang.test_checker import findings, where
from tests.server.webhook_helpers import compile_text

WITH = """\
settings {
  group label "team"
  authorize users
}

group ai {
  requests.cpu 4
}
"""


def test_the_setting_turns_the_check_on() -> None:
    assert compile_text(WITH).settings.authorize_users is True
    assert compile_text(WITH.replace("  authorize users\n", "")).settings.authorize_users is False


def test_it_formats_as_written() -> None:
    assert format_source(WITH) == WITH.replace('group label "team"', 'group label  "team"').replace(
        "requests.cpu 4", "requests.cpu  4")


def test_without_bindings_it_is_no_finding_and_twice_is_e201() -> None:
    assert findings(WITH) == []
    twice = WITH.replace("  authorize users\n", "  authorize users\n  authorize users\n")
    assert where(findings(twice)) == [("E201", "p.quota:4:3")]
