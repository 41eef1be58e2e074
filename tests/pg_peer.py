"""A private PostgreSQL database per test on the machine's server (127.0.0.1:5432), dropped after."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

ADMIN_DSN = os.environ.get("EMS_TEST_PG_DSN", "postgresql://127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def private_database() -> AsyncIterator[str]:
    name = f"ems_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {ADMIN_DSN} (.ci/run starts it): {exc}")
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
