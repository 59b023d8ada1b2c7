"""The operator dashboard at /ui, mounted by ingest next to its API."""
