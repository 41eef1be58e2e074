"""The root of every error ems raises, and the errors that belong to no single layer.

Library exceptions are translated where they enter (drivers, MQTT, the solver) into
subclasses of `EmsError`; callers match on types, never on strings.
"""

from __future__ import annotations


class EmsError(Exception):
    """Root of every error raised by ems."""


class ConfigError(EmsError):
    """A site file (or a file it names) cannot be used; the message says which field and why."""
