"""The event loop the network services run on: uvloop where it is installed (Linux, macOS).

uvloop's transports and loop run in C; on the HTTP and webhook hot paths that is the difference
between the loop and the application dominating a profile. Without it asyncio's own loop serves."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    return anyio.run(main, *args, backend_options={"use_uvloop": uvloop_available()})
