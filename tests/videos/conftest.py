"""The /v1/videos tests run a real ingest, and for whole jobs a real generator on Ray."""

from tests.generator.conftest import start_generator
from tests.ingest.conftest import start_ingest

__all__ = ["start_generator", "start_ingest"]
