"""What a handler raises to tell the consumer how an entry failed."""

from __future__ import annotations


class Permanent(Exception):
    """Retrying cannot help (bad image, invalid job): dead-letter at once."""

    reason = "permanent"


class Undecodable(Permanent):
    """The entry's fields are not a message of the expected type."""

    reason = "undecodable"


class LeavePending(Exception):
    """Stop without acking: the entry stays pending for another consumer (e.g. on shutdown)."""
