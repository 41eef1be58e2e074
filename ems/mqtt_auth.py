"""Connection arguments for every MQTT client of ems: TLS, user name and password.

The controller, its failover connection and the simulator's clients all build their
`aiomqtt.Client` from `client_kwargs`, so TLS and credentials are handled in one place.
Passwords are read from the environment or a file named in the site file, never from
the site file itself. A secret that cannot be found is a `MqttAuthError` (a
`ConfigError`: `ems run` reports it and exits 2 before connecting). Each reconnect reads
the password and TLS files again (`refreshed`), so credentials and certificates rotate
without a restart.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from ems.model.errors import ConfigError
from ems.secret_source import why_unreadable
from ems.topology import MqttConfig, MqttTlsConfig

log = structlog.get_logger("ems.mqtt")


class MqttAuthError(ConfigError):
    """A password or TLS file named in the site file cannot be used; the message says which."""


def _read_secret_file(path: Path, what: str) -> str:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MqttAuthError(f"{what}: cannot read {path}: {why_unreadable(exc)}") from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise MqttAuthError(f"{what}: {path} is empty")
    return secret


def password(cfg: MqttConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The password `cfg` refers to (None when it names none)."""
    env = os.environ if environ is None else environ
    if cfg.password_env is not None:
        value = env.get(cfg.password_env, "")
        if not value:
            raise MqttAuthError(f"mqtt.password_env: environment variable {cfg.password_env} is not set or empty")
        return value
    if cfg.password_file is not None:
        return _read_secret_file(cfg.password_file, "mqtt.password_file")
    return None


def passwords_file(path: Path, what: str) -> dict[str, str]:
    """`user:password` lines (`#` comments) -> {user: password}."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MqttAuthError(f"{what}: cannot read {path}: {why_unreadable(exc)}") from None
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user.strip() or not secret.strip():
            raise MqttAuthError(f"{what}: {path}:{n}: expected `user:password`")
        out[user.strip()] = secret.strip()
    return out


def tls_context(tls: MqttTlsConfig | None) -> ssl.SSLContext:
    """A client context that verifies the broker (TLS 1.2 or newer)."""
    t = tls or MqttTlsConfig()
    try:
        ctx = ssl.create_default_context(cafile=None if t.ca_file is None else str(t.ca_file))
        if t.cert_file is not None and t.key_file is not None:
            ctx.load_cert_chain(str(t.cert_file), str(t.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise MqttAuthError(f"mqtt.tls: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if t.insecure:  # chain still verified; only the name check is off (like paho's tls_insecure)
        ctx.check_hostname = False
    return ctx


def client_kwargs(cfg: MqttConfig, *, identifier: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client(**kwargs)` as the site's user (`mqtt.username`)."""
    return client_kwargs_as(cfg, identifier=identifier, username=cfg.username,
                            password_value=password(cfg, environ))


def refreshed(cfg: MqttConfig, previous: dict[str, Any]) -> dict[str, Any]:
    """The connection arguments again, just before a (re)connect: a password file or a TLS
    certificate rotated on disk is used without a restart. Where the files cannot be read now
    (half-way through a rotation), the previous arguments stay, and the next attempt reads again."""
    try:
        fresh = client_kwargs(cfg, identifier=str(previous["identifier"]))
    except MqttAuthError as exc:
        log.warning("mqtt: credentials or certificates unreadable; trying with the previous ones", error=str(exc))
        return previous
    return fresh


def client_kwargs_as(cfg: MqttConfig, *, identifier: str, username: str | None,
                     password_value: str | None) -> dict[str, Any]:
    """The same for another user of the same broker (a simulator row agent, say); None: anonymous."""
    return {
        "hostname": cfg.host, "port": cfg.port, "identifier": identifier, "keepalive": cfg.keepalive_s,
        "username": username, "password": password_value,
        "tls_context": tls_context(cfg.tls) if cfg.url.startswith("mqtts://") else None,
    }
