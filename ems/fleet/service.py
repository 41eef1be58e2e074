"""`ems fleet`: one replica of the consumer group and the fleet page/API, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import ipaddress
import signal

import nats.errors
import structlog
from aiohttp import web

from ems.fleet.api import app
from ems.fleet.consumer import FleetConsumer
from ems.fleet.settings import FleetServiceConfig
from ems.fleet.store import FleetStore, FleetStoreError
from ems.model.errors import EmsError
from ems.operator.auth import TokenError, Tokens, tokens_from

log = structlog.get_logger("ems.fleet")


class FleetServiceError(EmsError):
    """`ems fleet` cannot start: NATS or PostgreSQL unreachable, or the HTTP port taken."""


def api_tokens(cfg: FleetServiceConfig) -> Tokens:
    """The fleet API's tokens; none is allowed only on loopback (FleetServiceError otherwise)."""
    try:
        tokens = tokens_from(cfg.http.token_env, cfg.http.token_file)
    except TokenError as exc:
        raise FleetServiceError(f"http: {exc}") from None
    if not tokens.configured and not _loopback(cfg.http.host):
        raise FleetServiceError(f"http.host {cfg.http.host}: the fleet API would be open to the network; set a "
                                f"token (${cfg.http.token_env} or http.token_file) or bind to 127.0.0.1")
    return tokens


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def serve(cfg: FleetServiceConfig) -> None:
    tokens = api_tokens(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        store = await FleetStore.connect(cfg.postgres_dsn)
    except FleetStoreError as exc:
        raise FleetServiceError(str(exc)) from None
    consumer = FleetConsumer(cfg, store)
    try:
        await consumer.connect()
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        await store.close()
        raise FleetServiceError(f"NATS {cfg.nats_url}: {exc}") from None
    runner = web.AppRunner(app(cfg.postgres_dsn, cfg.stale_after_s, tokens))
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.http.host, cfg.http.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise FleetServiceError(f"cannot serve on {cfg.http.host}:{cfg.http.port}: {exc}") from None
    log.info("fleet service started", stream=cfg.stream, consumer=cfg.consumer, http=f"{cfg.http.host}:{cfg.http.port}")
    try:
        await consumer.run(stop)
    finally:
        await runner.cleanup()
        await consumer.close()
        await consumer.store.close()
        log.info("fleet service stopped", stored=consumer.stats.stored, duplicates=consumer.stats.duplicates,
                 rejected=consumer.stats.rejected)
