"""A network answer read with a bound: a feed's body (and what a zip of it unpacks to) is
refused past a size no real answer reaches, before it is held whole in memory."""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING

from ems.feeds.series import FeedMalformed

if TYPE_CHECKING:
    from requests import Response

MAX_ANSWER_BYTES = 8 << 20  # the largest real answer (ten weeks of Open-Meteo hours) is ~100 kB
MAX_UNZIPPED_BYTES = 32 << 20  # OASIS's zipped CSV of three days at one node unpacks to ~100 kB


def bounded_body(r: Response, source: str, limit: int | None = None) -> bytes:
    """The whole body of an answer asked for with stream=True; FeedMalformed past `limit` bytes, read no further."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in r.iter_content(64 << 10):  # decoded: a gzip bomb is bounded too
            size += len(chunk)
            if size > limit:
                raise FeedMalformed(f"{source}: the answer is larger than {limit} bytes")
            parts.append(chunk)
    finally:
        r.close()
    return b"".join(parts)


def checked_zip(z: zipfile.ZipFile, source: str, limit: int | None = None) -> list[str]:
    """The members' names; FeedMalformed when they would unpack past `limit` bytes (zipfile
    never gives more than a member's declared size, so the declared sizes bound it)."""
    limit = MAX_UNZIPPED_BYTES if limit is None else limit
    total = sum(i.file_size for i in z.infolist())
    if total > limit:
        raise FeedMalformed(f"{source}: the zip would unpack to {total} bytes, more than {limit}")
    return z.namelist()
