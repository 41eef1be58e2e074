"""Operator tokens: sources, format checks, and the bearer check."""

from __future__ import annotations

import pytest

from ems.config import HttpConfig
from ems.operator.auth import TokenError, Tokens, load_tokens, parse_token_file

TOKEN = "s3cret-token-0123456789"


def test_env_token_authenticates_as_operator() -> None:
    tokens = load_tokens(HttpConfig(), {"EMS_HTTP_TOKEN": TOKEN})
    assert tokens.operator(f"Bearer {TOKEN}") == "operator"
    assert tokens.operator(f"bearer {TOKEN}") == "operator"  # the scheme is case-insensitive
    assert tokens.operator(f"Bearer {TOKEN}x") is None
    assert tokens.operator(TOKEN) is None  # no scheme
    assert tokens.operator(f"Basic {TOKEN}") is None
    assert tokens.operator(None) is None


def test_token_file_names_operators(tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# operators\nalice:{TOKEN}\nbob:{TOKEN[::-1]}\n")
    tokens = load_tokens(HttpConfig(token_file=path), {})
    assert tokens.operator(f"Bearer {TOKEN}") == "alice"
    assert tokens.operator(f"Bearer {TOKEN[::-1]}") == "bob"


def test_no_token_leaves_actions_disabled() -> None:
    tokens = load_tokens(HttpConfig(), {})
    assert not tokens.configured
    assert tokens.operator(f"Bearer {TOKEN}") is None


@pytest.mark.parametrize(("text", "problem"), [
    ("short", "shorter than 16"),
    (f"alice:{TOKEN}\nalice:{TOKEN}x", "appears twice"),
    (f":{TOKEN}", "empty operator name"),
])
def test_bad_token_files_are_refused(text, problem) -> None:
    with pytest.raises(TokenError, match=problem):
        parse_token_file(text, "tokens")


def test_unreadable_token_file(tmp_path) -> None:
    with pytest.raises(TokenError, match="cannot read"):
        load_tokens(HttpConfig(token_file=tmp_path / "missing"), {})


def test_tokens_only_from_env_or_file_never_from_the_site_file() -> None:
    # the http section has no field that could hold a token
    assert not any("token" in name and not name.endswith(("_env", "_file")) for name in HttpConfig.model_fields)
    assert Tokens({}).configured is False


def test_a_malformed_action_is_answered_in_the_operators_terms() -> None:
    from pydantic import TypeAdapter, ValidationError

    from ems.operator import requests as rq
    from ems.operator.problems import problems

    def said(adapter: TypeAdapter, body: bytes, tagged: bool = False) -> list[str]:
        try:
            adapter.validate_json(body)
        except ValidationError as exc:
            return problems(exc, tagged)
        raise AssertionError("accepted")

    set_param, force = TypeAdapter(rq.SetParam), TypeAdapter(rq.ForceMode)
    assert said(set_param, b'{"param": "x", "value": "abc", "reason": "why not"}') == [
        "value: expected true/false or a number (got 'abc')"]  # not "value.bool: ..., value.float: ..."
    assert said(force, b'{"mode": "setpoint", "setpoint_w": "5", "timeout_s": 60, "reason": "abc"}', True) == [
        "setpoint_w: expected a number (got '5')"]
    assert said(force, b'{"mode": "turbo", "reason": "abc"}', True) == [
        "mode: expected one of 'zero', 'setpoint', 'auto' (got 'turbo')"]
    assert said(force, b'{"reason": "abc"}', True) == ["mode: missing"]
    assert said(set_param, b'{"param": "x", "value": 1, "reason": "abc", "extra": 2}') == [
        "extra: not a field of this action (got 2)"]
