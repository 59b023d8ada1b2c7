"""Garbage-collector settings for the notifier process.

A delivery allocates a few hundred short-lived containers (aiohttp's request and response,
futures, dicts), so with CPython's default threshold a young collection runs every few
deliveries, and every full collection walks all the objects that imports and startup created.
On the benchmark the collector took about a quarter of the notifier's CPU. Freezing what exists
after startup (modules, settings, clients: never garbage) and collecting the young generation
every YOUNG allocations instead of 700 takes most of that away; cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG = 5000


def tune() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
