"""One error type for every mistake a user can make, with a message meant for them."""


class FrameStreamError(ValueError):
    """Bad input: says what was wrong and what is expected. Nothing has been written."""


def plural(count: int, noun: str) -> str:
    """``1 frame``, ``2 frames``: counts in messages read as sentences."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
