"""Garbage-collector settings for the service processes, applied once start-up is done.

A webhook delivery or an HTTP request allocates hundreds of short-lived containers (requests,
responses, futures, dicts), so with CPython's default threshold a young collection runs every few
of them, and every full collection walks all the objects that imports and start-up created. The
collector took about a quarter of the notifier's CPU per delivery, and its full collections
stalled every request in flight, doubling the p99 of POST /generate. Freezing what exists after
start-up (modules, settings, clients: never garbage) and collecting the young generation every
YOUNG allocations instead of 700 takes most of that away; cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG = 5000


def tune() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
