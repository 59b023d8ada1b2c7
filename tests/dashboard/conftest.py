"""The dashboard test runs a real ingest and a real generator."""

from tests.generator.conftest import start_generator
from tests.ingest.conftest import start_ingest

__all__ = ["start_generator", "start_ingest"]
