"""Handler capacity: how many more entries a consumer may claim. One per consumer, or one shared
by the consumers of a task's priority streams (one gang runs one job, whichever stream it came from).

Paused, it offers none: nothing is read or reclaimed (a generator whose gang is not ready leaves
jobs to generators that can run them), while entries already claimed go on as before."""

from __future__ import annotations

import anyio


class Slots:
    def __init__(self, size: int) -> None:
        self._free = size
        self._paused = False
        self._freed = anyio.Event()

    @property
    def free(self) -> int:
        return 0 if self._paused else self._free

    @property
    def paused(self) -> bool:
        return self._paused

    def take(self, count: int) -> None:
        self._free -= count

    def give(self, count: int) -> None:
        self._free += count
        if count:
            self._freed.set()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._freed.set()

    async def wait(self) -> None:
        """Until a slot is free and not paused (any number of waiters)."""
        while self.free <= 0:
            if self._freed.is_set():
                self._freed = anyio.Event()
            await self._freed.wait()
