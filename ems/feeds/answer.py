"""A network answer read with a bound: a feed's body (and what a zip of it unpacks to) is
refused past a size no real answer reaches, before it is held whole in memory.

Our own requests read their body with `bounded_body`; the clients that make their own
(entsoe-py, nordpool) are given `bounded_session`, whose adapter reads every answer the same way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import zipfile
from typing import TYPE_CHECKING, Any

from ems.feeds.series import FeedMalformed, FeedUnavailable

if TYPE_CHECKING:
    from requests import PreparedRequest, Response, Session

MAX_ANSWER_BYTES = 8 << 20  # the largest real answer (ten weeks of Open-Meteo hours) is ~100 kB
MAX_UNZIPPED_BYTES = 32 << 20  # OASIS's zipped CSV of three days at one node unpacks to ~100 kB


def bounded_body(r: Response, source: str, limit: int | None = None, timeout_s: float | None = None) -> bytes:
    """The whole body of an answer asked for with stream=True; FeedMalformed past `limit` bytes,
    FeedUnavailable still coming after `timeout_s` in all, read no further (a byte dripped under
    each read's timeout would hold the fetch's thread for as long as the server likes)."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    declared = r.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:  # said up front: not a byte of it read
        r.close()
        raise FeedMalformed(f"{source}: the answer is larger than {limit} bytes ({declared} declared)")
    expired = threading.Event()

    def hang_up() -> None:  # closing the response alone does not wake a read blocked in this thread
        expired.set()
        sock = getattr(getattr(r.raw, "_connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    late = None if timeout_s is None else threading.Timer(timeout_s, hang_up)
    parts: list[bytes] = []
    size = 0
    try:
        if late is not None:
            late.daemon = True  # never what a stopping process waits for
            late.start()
        for chunk in r.iter_content(64 << 10):  # decoded: a gzip bomb is bounded too
            size += len(chunk)
            if size > limit:
                raise FeedMalformed(f"{source}: the answer is larger than {limit} bytes")
            if expired.is_set():  # where there was no socket to shut down: at the next chunk
                break
            parts.append(chunk)
    except Exception:
        if not expired.is_set():
            raise
    finally:
        if late is not None:
            late.cancel()
        r.close()
    if expired.is_set():
        raise FeedUnavailable(f"{source}: the answer did not end within {timeout_s:g} s")
    return b"".join(parts)


def bounded_session(source: str, limit: int | None = None) -> Session:
    """A requests.Session whose adapter reads every answer (a redirect's too) through
    `bounded_body` before the client sees it: FeedMalformed past the limit, out of the client's
    own `session.get`. For a client that takes a session (entsoe-py) or an HTTP client of ours
    (nordpool's AioPrices)."""
    from requests import Session
    from requests.adapters import HTTPAdapter  # requests only when a feed fetches, as everywhere here

    class BoundedAdapter(HTTPAdapter):
        def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
            r = super().send(request, *args, **kwargs)  # an adapter always streams: nothing read yet
            # held as the body the session (or a caller that streams) reads from here on; the
            # client's timeout (connect, read) bounds the whole body too
            timeout = kwargs.get("timeout")
            r._content = bounded_body(r, source, limit, timeout if isinstance(timeout, (int, float)) else None)
            return r

    s = Session()
    adapter = BoundedAdapter(max_retries=0)  # one try: the feed source retries at its next refresh
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def checked_zip(z: zipfile.ZipFile, source: str, limit: int | None = None) -> list[str]:
    """The members' names; FeedMalformed when they would unpack past `limit` bytes (zipfile
    never gives more than a member's declared size, so the declared sizes bound it)."""
    limit = MAX_UNZIPPED_BYTES if limit is None else limit
    total = sum(i.file_size for i in z.infolist())
    if total > limit:
        raise FeedMalformed(f"{source}: the zip would unpack to {total} bytes, more than {limit}")
    return z.namelist()
