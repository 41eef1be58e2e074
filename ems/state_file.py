"""A small JSON state file ems writes and reads back (the operator's overrides, a feed's cache):
written whole and renamed into place, read only where it is a regular file of a bounded size."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnusableFile(ValueError):
    """The path holds something other than a file ems could have written (a FIFO, a device, too large)."""


def read_text(path: Path, max_bytes: int) -> str:
    """The file's text. FileNotFoundError where there is none; UnusableFile where it is not a
    regular file (a FIFO would hang the read, /dev/zero never end it) or is over `max_bytes`;
    OSError or UnicodeDecodeError where it cannot be read as text."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise UnusableFile("not a regular file")
    if st.st_size > max_bytes:
        raise UnusableFile(f"larger than {max_bytes} bytes")
    return path.read_text(encoding="utf-8")


def temporary(path: Path) -> Path:
    """Where `write_atomically` writes `path` before the rename."""
    return path.with_name(path.name + ".tmp")


def write_atomically(path: Path, text: str) -> None:
    """Written to `<name>.tmp`, fsync'd and renamed over `path`: a crash leaves the old file or the
    new one, never half. A link planted as the temporary is removed, not written through ("x": a
    new file or an error): ems would write through it (as root) and rename the link into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    tmp.unlink(missing_ok=True)
    with tmp.open("x", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
