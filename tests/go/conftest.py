"""The ingest fixtures serve the Go client's live test too."""

from tests.ingest.conftest import ingest_url, start_ingest

__all__ = ["ingest_url", "start_ingest"]
