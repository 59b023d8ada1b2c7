"""Test access to the embedded redis-server (the same code `wan22 up` runs)."""

from services.stack.redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
