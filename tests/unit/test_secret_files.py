"""Secret, password and token files that are not text: a clear error naming the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.model.errors import ConfigError
from ems.mqtt_auth import MqttAuthError, _read_secret_file, passwords_file
from ems.operator.auth import TokenError, tokens_from
from ems.secret_source import read_secret

NOT_TEXT = b"\xff\xfe\x00secret"  # a binary file put where a secret belongs (UnicodeDecodeError before)


def test_a_secret_file_that_is_not_utf8_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(NOT_TEXT)
    with pytest.raises(ConfigError, match=r"^openadr3\.client_secret_file: not UTF-8 text$"):
        read_secret("openadr3", ("client_secret_env", None), ("client_secret_file", f))


def test_mqtt_password_files_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_bytes(NOT_TEXT)
    with pytest.raises(MqttAuthError, match=r"mqtt\.password_file: cannot read .*pw: not UTF-8 text"):
        _read_secret_file(f, "mqtt.password_file")
    with pytest.raises(MqttAuthError, match="not UTF-8 text"):
        passwords_file(f, "simulation.mqtt_passwords_file")


def test_a_token_file_that_is_not_utf8_is_a_token_error(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_bytes(NOT_TEXT)
    with pytest.raises(TokenError, match="cannot read the token file: not UTF-8 text"):
        tokens_from("EMS_NO_SUCH_TOKEN_VAR", f, environ={})
