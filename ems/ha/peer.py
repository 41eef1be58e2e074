"""The second witness for a NATS outage (Patroni's failsafe mode, in small).

When the active cannot renew its lease because NATS does not answer, it asks the standby
directly, over a TCP link of their own, one JSON line each way. The standby grants only if
it cannot reach NATS either and is not active; granting, it promises not to promote for one
lease TTL from the moment it answered. The active then writes on, under the same fence
arithmetic as a renewal: `sent + ttl - guard`, with the standby's promise starting no
earlier than `sent`. A standby that does see NATS refuses (the active is the one cut off:
it must stop, the standby takes the lease after expiry); a standby that cannot be reached
is a refusal too. So a NATS outage keeps the site under control, and a partition still
fences the active first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog

from ems.model import bounded_json

log = structlog.get_logger("ems.ha")

MAX_LINE = 4096


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


async def ask(addr: str, request: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    """The peer's answer, or None (unreachable, too slow, or an answer that is not one)."""
    host, port = split_addr(addr)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        answer = bounded_json.loads(line[:MAX_LINE])  # nesting bounded: it goes into an event
        return answer if isinstance(answer, dict) else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def serve(addr: str, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(2.0):
                line = await reader.readline()
            request = bounded_json.loads(line[:MAX_LINE])
            reply = answer(request) if isinstance(request, dict) else {"granted": False}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            log.debug("ha peer: a request that could not be answered")
        finally:
            writer.close()

    host, port = split_addr(addr)
    return await asyncio.start_server(client, host, port)
