"""Handler capacity: how many more entries a consumer may claim. One per consumer, or one shared
by the consumers of a task's priority streams (one gang runs one job, whichever stream it came from)."""

from __future__ import annotations

import anyio


class Slots:
    def __init__(self, size: int) -> None:
        self.free = size
        self._freed = anyio.Event()

    def take(self, count: int) -> None:
        self.free -= count

    def give(self, count: int) -> None:
        self.free += count
        if count:
            self._freed.set()

    async def wait(self) -> None:
        """Until a slot is free (any number of waiters)."""
        while self.free <= 0:
            if self._freed.is_set():
                self._freed = anyio.Event()
            await self._freed.wait()
