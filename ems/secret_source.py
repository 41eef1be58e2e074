"""A secret a site file names but never holds: a file's contents, or an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from ems.model.errors import ConfigError


def why_unreadable(exc: OSError | UnicodeDecodeError) -> str:
    """Why a secret or token file could not be read, for its error message (never its bytes)."""
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or type(exc).__name__)


def read_secret(field: str, env: tuple[str, str | None], file: tuple[str, Path | None], what: str = "") -> str | None:
    """The secret from `file` (its key in the section, its path), else from the variable `env`
    (its key, its name), read now; None where neither is set. A missing, unreadable or empty one
    is a ConfigError naming `field`.key (`what` says whose secret it is)."""
    (file_key, path), (env_key, name) = file, env
    if path is not None:
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{field}.{file_key}: {why_unreadable(exc)}") from None
        if not text:
            raise ConfigError(f"{field}.{file_key}: empty")
        return text
    if name is None:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"{field}.{env_key}: {name} is not set" + (f" ({what})" if what else ""))
    return value
