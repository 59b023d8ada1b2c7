"""Shared fixtures: one real redis-server per test session, a clean database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.keys import Keys
from services.redisconn import connect
from tests.ray_cluster import RayCluster
from tests.redis_server import RedisServer

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator:
    client = connect(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One real Ray head per test session; generators join it with RAY_ADDRESS."""
    cluster = RayCluster(num_cpus=4).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random-weight ti2v checkpoint in the real diffusers layout."""
    from wan.tiny import make_tiny

    path = tmp_path_factory.mktemp("models") / "demo"
    make_tiny(path, "ti2v-5B")
    return path
