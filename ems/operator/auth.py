"""Operator tokens: where they come from and how a request's token is checked.

Tokens come from the environment (one token, operator name "operator") and/or a token
file (one `token` or `name:token` per line, `#` comments), never from the site file. The
check compares against every known token in constant time, so neither timing nor an
early exit tells a caller how close a guess was or which operator it matched.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ems.config import HttpConfig
from ems.model.errors import EmsError
from ems.secret_source import why_unreadable

MIN_TOKEN_CHARS = 16  # a short token can be guessed over the network


class TokenError(EmsError):
    """The operator tokens cannot be loaded; the message says from where and why."""


@dataclass(frozen=True)
class Tokens:
    by_name: Mapping[str, str]  # operator name -> token

    @property
    def configured(self) -> bool:
        return bool(self.by_name)

    def operator(self, authorization: str | None) -> str | None:
        """The operator a `Bearer <token>` header authenticates, or None."""
        if authorization is None or not self.by_name:
            return None
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = presented.strip().encode("utf-8", "surrogateescape")  # a header that is not UTF-8 is just wrong
        found: str | None = None
        for name, token in self.by_name.items():  # no early exit: constant time in the match
            if hmac.compare_digest(given, token.encode()):
                found = name
        return found


def _checked(name: str, token: str, source: str) -> tuple[str, str]:
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"{source}: the token for {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
    if any(c.isspace() for c in token):
        raise TokenError(f"{source}: the token for {name!r} contains whitespace")
    return name, token


def parse_token_file(text: str, source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if not sep:
            name, token = "operator", line
        if not name.strip():
            raise TokenError(f"{source}:{n}: empty operator name")
        if name.strip() in out:
            raise TokenError(f"{source}:{n}: operator {name.strip()!r} appears twice")
        k, v = _checked(name.strip(), token.strip(), f"{source}:{n}")
        out[k] = v
    return out


def load_tokens(cfg: HttpConfig, environ: Mapping[str, str] | None = None) -> Tokens:
    """Tokens from `cfg.token_env` and `cfg.token_file`; none at all leaves actions disabled."""
    return tokens_from(cfg.token_env, cfg.token_file, environ)


def tokens_from(token_env: str, token_file: Path | None, environ: Mapping[str, str] | None = None) -> Tokens:
    """Tokens from an environment variable (name "operator") and a token file (the fleet API's too)."""
    env = os.environ if environ is None else environ
    by_name: dict[str, str] = {}
    if token_file is not None:
        path = Path(token_file)
        try:
            by_name.update(parse_token_file(path.read_text(), str(path)))
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"{path}: cannot read the token file: {why_unreadable(exc)}") from None
    from_env = env.get(token_env, "").strip()
    if from_env:
        name, token = _checked("operator", from_env, f"${token_env}")
        if name in by_name and by_name[name] != token:
            raise TokenError(f"${token_env} and {token_file} both define operator {name!r}")
        by_name[name] = token
    return Tokens(by_name)
