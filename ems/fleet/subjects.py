"""Subjects and the stream, shared by the sites and `ems fleet`.

`PREFIX.SITE.status`, `PREFIX.SITE.events`, `PREFIX.SITE.history`, all in one stream
(`PREFIX.>`), file storage, a retention by age, a 2-minute duplicate window on the
message id `SITE:SOURCE:SEQ` (SOURCE: the outbox's own id, new if a site loses its disk).
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors
import nats.js.errors
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

KINDS = ("status", "events", "history")
DUPLICATE_WINDOW_S = 120.0


def subject(prefix: str, site: str, kind: str) -> str:
    return f"{prefix}.{site_token(site)}.{kind}"


def site_token(site: str) -> str:
    """A site name as one subject token (no dots, spaces or wildcards)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in site)


def msg_id(site: str, source: str, seq: int) -> str:
    return f"{site}:{source}:{seq}"


async def ensure_stream(js: JetStreamContext, name: str, prefix: str, retention_days: float,
                        timeout_s: float) -> None:
    """Create the stream if it is missing; leave one that exists as it is (ops may have tuned it)."""
    try:
        await asyncio.wait_for(js.stream_info(name), timeout_s)
        return
    except nats.js.errors.NotFoundError:
        pass
    config = StreamConfig(name=name, subjects=[f"{prefix}.>"], retention=RetentionPolicy.LIMITS,
                          storage=StorageType.FILE, max_age=retention_days * 86400.0,
                          duplicate_window=DUPLICATE_WINDOW_S)
    with contextlib.suppress(nats.js.errors.BadRequestError):  # created meanwhile by another site or replica
        await asyncio.wait_for(js.add_stream(config), timeout_s)
