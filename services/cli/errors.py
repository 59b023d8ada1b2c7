"""The one expected-failure type of the CLI."""

from __future__ import annotations


class CliError(Exception):
    """Printed as one line (no traceback); the process exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
