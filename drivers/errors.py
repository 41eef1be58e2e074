"""Typed errors of the telemetry plane. Library exceptions are translated at the driver edge.

"Not supported" and "failed" are different types; callers never match on strings.
"""

from __future__ import annotations

from ems.model.errors import EmsError


class DriverError(EmsError):
    """Root of every error raised by ems drivers."""


class ProfileError(DriverError):
    """A device profile is missing, malformed or lacks a register."""


class NotSupported(DriverError):
    """The device (or its profile) does not offer this capability."""


class DeviceUnavailable(DriverError):
    """The device cannot be reached now (connect failed, connection lost, timeout)."""

    def __init__(self, device: str, detail: str = "") -> None:
        super().__init__(f"{device}: {detail}" if detail else device)
        self.device = device


class DeviceTimeout(DeviceUnavailable):
    """A request got no answer within its timeout."""


class DeviceRejected(DriverError):
    """The device answered with an exception response (e.g. illegal address or value)."""

    def __init__(self, device: str, detail: str) -> None:
        super().__init__(f"{device}: {detail}")
        self.device = device


class MalformedData(DriverError):
    """A register block or message could not be decoded into plausible values."""


class RegisterWriteForbidden(DriverError):
    """A write to a register the profile does not mark writable; refused before sending."""

    def __init__(self, register: str) -> None:
        super().__init__(f"register {register!r} is not writable")
        self.register = register


class RegisterRangeError(DriverError):
    """A value outside the register's declared range; refused before sending."""

    def __init__(self, register: str, value: float, why: str) -> None:
        super().__init__(f"register {register!r}: value {value!r} {why}")
        self.register = register
        self.value = value
